//! One service's state: its instances, its warm shells, the requests waiting for capacity, and
//! the decisions that follow (lease, scale out, scale in, back off).
//!
//! Everything here runs under the orchestrator's lock and never awaits: starting or killing a
//! process is handed to tasks by returning [`Action`]s.

use crate::config::{Mode, ServiceSpec};
use crate::instance::{Launch, Running, Shell};
use crate::logs::LogBuffer;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Crashes within [`CRASH_WINDOW`] that make a crash loop.
const CRASH_LOOP: usize = 3;
const CRASH_WINDOW: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The right to send one request to one instance. Give it back with `Orchestrator::release`.
#[derive(Debug)]
pub struct Lease {
    /// The service.
    pub service: String,
    /// The instance.
    pub id: u64,
    /// Where to send the request.
    pub addr: crate::upstream::InstanceAddr,
    /// Set when the request waited for this instance to start: when it started waiting.
    pub cold_since: Option<Instant>,
    /// When the instance's guest was started.
    pub started: Instant,
    /// The gateway's connections to the instance.
    pub pool: std::sync::Arc<crate::upstream::ConnPool>,
}

/// Lifecycle of a started instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Taking requests.
    Ready,
    /// Finishing its requests; destroyed when it has none (update, lifetime, removal).
    Draining,
    /// Failed to answer at this moment: takes no requests; its exit is awaited (a crash is
    /// recorded when the process ends on its own), and if it lingers it is destroyed.
    Failed(Instant),
}

/// How long a failed instance may linger before it is destroyed.
const FAILED_GRACE: Duration = Duration::from_secs(2);

/// A started instance.
pub struct Instance {
    /// The process.
    pub run: Running,
    /// Lifecycle state.
    pub state: State,
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests answered.
    pub served: u64,
    /// When the guest was started.
    pub started: Instant,
    /// When it last finished a request (or started).
    pub last_active: Instant,
    /// Reserved for one request (per-request mode).
    pub exclusive: bool,
    /// The gateway's idle connections to it (closed when it goes).
    pub pool: std::sync::Arc<crate::upstream::ConnPool>,
}

/// A request waiting for capacity.
pub struct Waiter {
    /// Where to send the lease.
    pub tx: oneshot::Sender<Lease>,
    /// When it started waiting.
    pub since: Instant,
}

/// Something to do outside the lock.
pub enum Action {
    /// Start a guest in this shell and add it as an instance.
    Go(Shell),
    /// Prepare a shell; `start` makes it an instance at once (a request waits for it).
    Prepare { start: bool },
}

/// One service.
pub struct Service {
    /// Its spec.
    pub spec: ServiceSpec,
    /// How to start its processes.
    pub launch: Launch,
    /// Its instances' console output.
    pub logs: LogBuffer,
    /// Started instances.
    pub instances: Vec<Instance>,
    /// Prepared shells.
    pub shells: Vec<Shell>,
    /// Shells being prepared (for warm shells).
    pub preparing: u32,
    /// Instances being started (a shell going, or a process being prepared to go).
    pub starting: u32,
    /// Requests waiting for capacity.
    pub waiters: VecDeque<Waiter>,
    /// Recent crashes.
    pub crashes: VecDeque<Instant>,
    /// No instance is started before this (crash-loop back-off).
    pub backoff_until: Option<Instant>,
    /// The last crash's diagnosis.
    pub last_crash: Option<String>,
    /// Cold starts so far.
    pub cold_starts: u64,
    /// Removed: takes no requests, goes when its instances are gone.
    pub removed: bool,
}

impl Service {
    /// A service with nothing running.
    pub fn new(spec: ServiceSpec, launch: Launch, logs: LogBuffer) -> Service {
        Service {
            spec,
            launch,
            logs,
            instances: Vec::new(),
            shells: Vec::new(),
            preparing: 0,
            starting: 0,
            waiters: VecDeque::new(),
            crashes: VecDeque::new(),
            backoff_until: None,
            last_crash: None,
            cold_starts: 0,
            removed: false,
        }
    }

    fn lease(&mut self, index: usize, cold_since: Option<Instant>) -> Option<Lease> {
        let instance = self.instances.get_mut(index)?;
        instance.in_flight += 1;
        Some(Lease {
            service: self.spec.name.clone(),
            id: instance.run.id,
            addr: instance.run.addr.clone(),
            cold_since,
            started: instance.started,
            pool: instance.pool.clone(),
        })
    }

    /// A lease on the least busy ready instance with room, if any (shared mode).
    pub fn try_lease(&mut self) -> Option<Lease> {
        if self.spec.mode == Mode::PerRequest {
            return None;
        }
        let limit = self.spec.concurrency;
        let index = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.state == State::Ready && i.in_flight < limit)
            .min_by_key(|(_, i)| i.in_flight)
            .map(|(index, _)| index)?;
        self.lease(index, None)
    }

    /// Whether the crash-loop back-off forbids starting now; how long is left.
    pub fn backoff_left(&self, now: Instant) -> Option<Duration> {
        self.backoff_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// Requests that capacity being started will absorb.
    fn capacity_coming(&self) -> usize {
        let per_start = match self.spec.mode {
            Mode::Shared => self.spec.concurrency as usize,
            Mode::PerRequest => 1,
        };
        self.starting as usize * per_start
    }

    /// Starts instances for the waiting requests, within `max_instances`.
    pub fn scale_up(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.removed || self.backoff_left(now).is_some() {
            return;
        }
        while self.waiters.len() > self.capacity_coming()
            && (self.instances.len() + self.starting as usize) < self.spec.max_instances as usize
        {
            self.starting += 1;
            self.cold_starts += 1;
            match self.shells.pop() {
                Some(shell) => actions.push(Action::Go(shell)),
                None => actions.push(Action::Prepare { start: true }),
            }
        }
        // Keep at least `min_instances` running.
        while (self.instances.len() + self.starting as usize) < self.spec.min_instances as usize {
            self.starting += 1;
            match self.shells.pop() {
                Some(shell) => actions.push(Action::Go(shell)),
                None => actions.push(Action::Prepare { start: true }),
            }
        }
    }

    /// Prepares shells up to `warm_shells`.
    pub fn refill_shells(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.removed || self.backoff_left(now).is_some() {
            return;
        }
        while self.shells.len() + (self.preparing as usize) < self.spec.warm_shells as usize {
            self.preparing += 1;
            actions.push(Action::Prepare { start: false });
        }
    }

    /// Adds a started instance and hands it to waiting requests.
    pub fn add_instance(&mut self, run: Running, now: Instant) {
        let exclusive = self.spec.mode == Mode::PerRequest;
        self.instances.push(Instance {
            run,
            state: State::Ready,
            in_flight: 0,
            served: 0,
            started: now,
            last_active: now,
            exclusive,
            pool: std::sync::Arc::default(),
        });
        if exclusive {
            // One instance, one request: the oldest waiter that still waits.
            let index = self.instances.len() - 1;
            while let Some(waiter) = self.waiters.pop_front() {
                if waiter.tx.is_closed() {
                    continue;
                }
                if let Some(lease) = self.lease(index, Some(waiter.since))
                    && let Err(lease) = waiter.tx.send(lease)
                {
                    self.undo(&lease);
                    continue;
                }
                return;
            }
            // Nobody wants it any more.
            self.instances.pop();
            return;
        }
        self.dispatch(now);
    }

    /// Hands capacity to waiting requests, oldest first.
    pub fn dispatch(&mut self, _now: Instant) {
        while let Some(waiter) = self.waiters.front() {
            if waiter.tx.is_closed() {
                self.waiters.pop_front();
                continue;
            }
            let since = waiter.since;
            let Some(mut lease) = self.try_lease() else { break };
            lease.cold_since = Some(since);
            if let Some(waiter) = self.waiters.pop_front()
                && let Err(lease) = waiter.tx.send(lease)
            {
                self.undo(&lease);
            }
        }
    }

    fn undo(&mut self, lease: &Lease) {
        if let Some(instance) = self.instances.iter_mut().find(|i| i.run.id == lease.id) {
            instance.in_flight = instance.in_flight.saturating_sub(1);
        }
    }

    /// Gives a lease back. Per-request instances and drained ones are destroyed.
    pub fn release(&mut self, lease: &Lease, now: Instant) {
        let Some(index) = self.instances.iter().position(|i| i.run.id == lease.id) else { return };
        let Some(instance) = self.instances.get_mut(index) else { return };
        instance.in_flight = instance.in_flight.saturating_sub(1);
        instance.served += 1;
        instance.last_active = now;
        if instance.exclusive || (instance.state == State::Draining && instance.in_flight == 0) {
            // Dropping the handle kills the process.
            self.instances.swap_remove(index);
        }
        self.dispatch(now);
    }

    /// Destroys idle instances above `min_instances`, retires old ones, drops dead waiters.
    pub fn reap(&mut self, now: Instant) {
        self.waiters.retain(|w| !w.tx.is_closed());
        let idle = Duration::from_millis(self.spec.idle_timeout_ms);
        let lifetime = (self.spec.max_lifetime_ms > 0)
            .then(|| Duration::from_millis(self.spec.max_lifetime_ms));
        for instance in &mut self.instances {
            if lifetime.is_some_and(|l| now.duration_since(instance.started) >= l) {
                instance.state = State::Draining;
            }
        }
        let min = if self.removed { 0 } else { self.spec.min_instances as usize };
        let mut keep = self.instances.len();
        self.instances.retain(|i| {
            let idle_out = i.in_flight == 0 && now.duration_since(i.last_active) >= idle;
            let drained = match i.state {
                State::Draining => i.in_flight == 0,
                State::Failed(since) => now.duration_since(since) >= FAILED_GRACE,
                State::Ready => false,
            };
            if drained || (idle_out && keep > min) {
                keep -= 1;
                false
            } else {
                true
            }
        });
        if self.removed {
            self.shells.clear();
        }
    }

    /// An instance or shell process ended. Returns true if it was a crash.
    pub fn exited(&mut self, id: u64, killed: bool, last_words: &str, now: Instant) -> bool {
        let mut counted = false;
        if let Some(index) = self.instances.iter().position(|i| i.run.id == id) {
            counted = matches!(self.instances.swap_remove(index).state, State::Failed(_));
        }
        self.shells.retain(|s| s.id != id);
        if killed {
            return false;
        }
        if counted {
            // Already counted when it failed a request; keep the better diagnosis.
            if !last_words.is_empty() {
                self.last_crash = Some(last_words.to_owned());
            }
            return true;
        }
        self.crashed(last_words, now);
        true
    }

    /// Records a crash (or a failure to start) and backs off if it is a loop.
    pub fn crashed(&mut self, what: &str, now: Instant) {
        self.last_crash = Some(what.to_owned());
        self.crashes.push_back(now);
        while self.crashes.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            self.crashes.pop_front();
        }
        if self.crashes.len() >= CRASH_LOOP {
            let exponent = u32::try_from(self.crashes.len() - CRASH_LOOP).unwrap_or(5).min(5);
            let backoff = (Duration::from_secs(1) * 2u32.pow(exponent)).min(MAX_BACKOFF);
            self.backoff_until = Some(now + backoff);
            tracing::warn!(service = %self.spec.name, ?backoff, "crash loop: {what}");
        }
    }

    /// Takes instance `id` out of rotation (it failed to answer) and counts that as a crash at
    /// once, so that a crash loop is seen before the process's exit is reaped.
    pub fn fail(&mut self, id: u64, now: Instant) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.run.id == id) else { return };
        if matches!(instance.state, State::Failed(_)) {
            return;
        }
        instance.state = State::Failed(now);
        self.crashed("the instance failed to answer a request", now);
    }

    /// Marks every instance draining and drops the shells (the spec changed or the service goes).
    pub fn drain_all(&mut self) {
        for instance in &mut self.instances {
            if instance.state == State::Ready {
                instance.state = State::Draining;
            }
        }
        self.shells.clear();
    }

    /// Instances by state, for metrics and listings.
    pub fn counts(&self) -> [(&'static str, usize); 5] {
        let ready = self.instances.iter().filter(|i| i.state == State::Ready).count();
        let failed = self.instances.iter().filter(|i| matches!(i.state, State::Failed(_))).count();
        [
            ("ready", ready),
            ("draining", self.instances.len() - ready - failed),
            ("failed", failed),
            ("starting", self.starting as usize),
            ("standby", self.shells.len()),
        ]
    }
}
