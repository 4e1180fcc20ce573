//! The right to send one request to one instance, given back by its `Drop`.

use crate::lifecycle::Instance;
use crate::upstream::InstanceAddr;
use std::sync::Weak;
use std::time::Instant;

/// The right to send one request to one instance. It gives itself back when dropped, however
/// the request ends (answered, failed, or abandoned by a client that went away), so no exit
/// path can leak an instance's capacity: see [`Lease::fail`] for an instance that misbehaved.
#[derive(Debug)]
pub struct Lease {
    /// The service.
    pub service: String,
    /// The instance.
    pub id: u64,
    /// Where to send the request.
    pub addr: InstanceAddr,
    /// Set when the request waited for this instance to start: when it started waiting.
    pub cold_since: Option<Instant>,
    /// When the instance's guest was started.
    pub started: Instant,
    /// The gateway's connections to the instance.
    pub pool: std::sync::Arc<crate::upstream::ConnPool>,
    /// Where the lease goes back to when dropped (`None`: nowhere, e.g. in unit tests, or
    /// after it was undone by the service itself).
    home: Option<Weak<crate::orchestrator::Orchestrator>>,
    /// The instance's monitor process.
    pub pid: Option<u32>,
    /// Why the instance failed this request, if it did: it is taken out of rotation.
    failure: Option<Failure>,
}

/// How an instance failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Its monitor process exited (seen by the gateway before the exit is reaped): a crash.
    Crashed,
    /// It misbehaved (`why`) but its process lives: destroyed, not counted as a crash.
    Unhealthy(&'static str),
}

impl Lease {
    /// Marks the instance as having failed this request (`why`): when the lease goes back, the
    /// instance takes no more requests and is destroyed. Not a crash: a crash is counted when
    /// its monitor process exits on its own.
    pub fn fail(&mut self, why: &'static str) {
        self.failure = Some(Failure::Unhealthy(why));
    }

    /// Marks the instance as crashed: its monitor process was seen to exit during the request.
    /// The crash is counted at once (a crash loop is seen before the exit is reaped), once.
    pub fn crashed(&mut self) {
        self.failure = Some(Failure::Crashed);
    }

    /// A lease on instance `instance` of `service`, going back to `home` when dropped.
    pub(crate) fn new(
        service: String,
        instance: &Instance,
        cold_since: Option<Instant>,
        home: Option<Weak<crate::orchestrator::Orchestrator>>,
    ) -> Lease {
        Lease {
            service,
            id: instance.run.id,
            addr: instance.run.addr.clone(),
            cold_since,
            started: instance.started,
            pool: instance.pool.clone(),
            pid: instance.run.pid,
            home,
            failure: None,
        }
    }

    /// Forgets where the lease goes back to (the service already took its count back).
    pub(crate) fn disarm(mut self) {
        self.home = None;
    }
}

#[cfg(test)]
impl Lease {
    /// A lease on the instance at `addr` that goes back nowhere (for tests of the request path).
    pub(crate) fn detached(
        addr: InstanceAddr,
        pool: std::sync::Arc<crate::upstream::ConnPool>,
    ) -> Lease {
        Lease {
            service: "test".into(),
            id: 0,
            addr,
            cold_since: None,
            started: Instant::now(),
            pool,
            pid: None,
            home: None,
            failure: None,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(orch) = self.home.take().and_then(|home| home.upgrade()) else { return };
        orch.give_back(self, self.failure);
    }
}
