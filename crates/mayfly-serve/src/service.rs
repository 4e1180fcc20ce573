//! One service's state: its instances, its warm shells, the requests waiting for capacity, and
//! the decisions that follow (lease, scale out, scale in, back off).
//!
//! Everything here runs under the orchestrator's lock and never awaits: starting or killing a
//! process is handed to tasks by returning [`Action`]s.

use crate::config::{Mode, ServiceSpec};
use crate::instance::{Launch, Running, Shell};
pub use crate::lease::{Failure, Lease};
#[cfg(test)]
use crate::lifecycle::FAILED_GRACE;
pub use crate::lifecycle::{Event, Instance, State};
use crate::logs::LogBuffer;
use std::collections::VecDeque;
use std::sync::Weak;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Crashes within [`CRASH_WINDOW`] that make a crash loop.
const CRASH_LOOP: usize = 3;
const CRASH_WINDOW: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    spec: ServiceSpec,
    /// How to start its processes.
    launch: Launch,
    /// Its instances' console output.
    logs: LogBuffer,
    /// Started instances.
    instances: Vec<Instance>,
    /// Prepared shells.
    shells: Vec<Shell>,
    /// Shells being prepared (for warm shells).
    preparing: u32,
    /// Instances being started (a shell going, or a process being prepared to go).
    starting: u32,
    /// Requests waiting for capacity.
    waiters: VecDeque<Waiter>,
    /// Recent crashes.
    crashes: VecDeque<Instant>,
    /// No instance is started before this (crash-loop back-off).
    backoff_until: Option<Instant>,
    /// The last crash's diagnosis.
    last_crash: Option<String>,
    /// Cold starts so far.
    cold_starts: u64,
    /// Removed: takes no requests, goes when its instances are gone.
    removed: bool,
    /// The orchestrator its leases go back to.
    home: Option<Weak<crate::orchestrator::Orchestrator>>,
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
            home: None,
        }
    }

    /// Its spec.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// How its processes are started.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Its instances' console output.
    pub fn logs(&self) -> &LogBuffer {
        &self.logs
    }

    /// Its started instances.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Its prepared shells.
    pub fn shells(&self) -> &[Shell] {
        &self.shells
    }

    /// Requests waiting for capacity.
    pub fn queued(&self) -> usize {
        self.waiters.len()
    }

    /// Cold starts so far.
    pub fn cold_starts(&self) -> u64 {
        self.cold_starts
    }

    /// The last crash's diagnosis.
    pub fn last_crash(&self) -> Option<&str> {
        self.last_crash.as_deref()
    }

    /// Whether it was removed (it takes no requests and goes when its instances are gone).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Whether it was removed and nothing of it is left.
    pub fn is_gone(&self) -> bool {
        self.removed && self.instances.is_empty() && self.starting == 0
    }

    /// Whether some instance takes requests.
    pub fn serving(&self) -> bool {
        self.instances.iter().any(|i| i.state.takes_requests())
    }

    /// Requests in flight on all its instances.
    pub fn in_flight(&self) -> u32 {
        self.instances.iter().map(|i| i.in_flight).sum()
    }

    /// The process ids of its instances and shells.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        let instances = self.instances.iter().filter_map(|i| i.run.pid);
        instances.chain(self.shells.iter().filter_map(|s| s.pid))
    }

    /// Takes over `old`'s instances (drained: they finish their requests) and waiting requests,
    /// when `old` is replaced by this new version.
    pub fn take_over(&mut self, mut old: Service) {
        old.drain_all();
        self.instances = std::mem::take(&mut old.instances);
        self.waiters = std::mem::take(&mut old.waiters);
    }

    /// Takes it out of service: no new requests, its instances finish theirs and go.
    pub fn remove(&mut self) {
        self.removed = true;
        self.drain_all();
        self.waiters.clear();
    }

    /// Answers every waiting request at once (with an error: they are dropped).
    pub fn clear_waiters(&mut self) {
        self.waiters.clear();
    }

    /// Queues a request for capacity, unless `queue_limit` requests already wait (requests
    /// whose clients went away give their places back first). Returns how long it may wait.
    pub fn enqueue(&mut self, tx: oneshot::Sender<Lease>, now: Instant) -> Option<Duration> {
        let limit = self.spec.queue_limit as usize;
        if self.waiters.len() >= limit {
            self.waiters.retain(|w| !w.tx.is_closed());
        }
        if self.waiters.len() >= limit {
            return None;
        }
        self.waiters.push_back(Waiter { tx, since: now });
        Some(Duration::from_millis(self.spec.queue_timeout_ms))
    }

    /// A shell being started (for a request) became an instance.
    pub fn started(&mut self, run: Running, now: Instant) {
        self.starting = self.starting.saturating_sub(1);
        self.add_instance(run, now);
    }

    /// A shell was prepared: for a start it is returned (to go, still counted as starting);
    /// else it is kept warm, or killed if the service was removed meanwhile.
    pub fn prepared(&mut self, shell: Shell, start: bool) -> Option<Shell> {
        if start {
            return Some(shell);
        }
        self.preparing = self.preparing.saturating_sub(1);
        if self.removed {
            shell.kill();
        } else {
            self.shells.push(shell);
        }
        None
    }

    /// Preparing a process failed (`why`): counted as a crash; if nothing else is coming for
    /// the waiting requests, they are answered now.
    pub fn prepare_failed(&mut self, start: bool, why: &str, now: Instant) {
        if start {
            self.starting = self.starting.saturating_sub(1);
        } else {
            self.preparing = self.preparing.saturating_sub(1);
        }
        self.crashed(why, now);
        if self.starting == 0 && !self.serving() {
            self.waiters.clear();
        }
    }

    /// Destroys every instance and shell (shutdown).
    pub fn destroy_all(&mut self) {
        self.instances.clear();
        for shell in self.shells.drain(..) {
            shell.kill();
        }
    }

    /// Makes its leases go back to `orch` when dropped.
    pub fn home(&mut self, orch: Weak<crate::orchestrator::Orchestrator>) {
        self.home = Some(orch);
    }

    fn lease(&mut self, index: usize, cold_since: Option<Instant>) -> Option<Lease> {
        let instance = self.instances.get_mut(index)?;
        instance.in_flight += 1;
        Some(Lease::new(self.spec.name.clone(), instance, cold_since, self.home.clone()))
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
            .filter(|(_, i)| i.state.takes_requests() && i.in_flight < limit)
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
            crash_counted: false,
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
                    self.undo(lease);
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
                self.undo(lease);
            }
        }
    }

    /// Takes back a lease nobody received (its waiter went away meanwhile). The lease must not
    /// go back on its own: that would lock the orchestrator, which the caller holds.
    fn undo(&mut self, lease: Lease) {
        if let Some(instance) = self.instances.iter_mut().find(|i| i.run.id == lease.id) {
            instance.in_flight = instance.in_flight.saturating_sub(1);
        }
        lease.disarm();
    }

    /// Gives a lease back. Per-request instances and drained ones are destroyed.
    pub fn release(&mut self, lease: &Lease, now: Instant) {
        let Some(index) = self.instances.iter().position(|i| i.run.id == lease.id) else { return };
        let Some(instance) = self.instances.get_mut(index) else { return };
        instance.in_flight = instance.in_flight.saturating_sub(1);
        instance.served += 1;
        instance.last_active = now;
        if instance.exclusive || instance.state.finished(instance.in_flight, now) {
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
                instance.state = instance.state.after(Event::Drain, now);
            }
        }
        let min = if self.removed { 0 } else { self.spec.min_instances as usize };
        // Instances that take requests count towards the minimum (a failed or draining one
        // going away must not take an idle ready one with it).
        let mut keep = self.instances.iter().filter(|i| i.state.takes_requests()).count();
        self.instances.retain(|i| {
            if i.state.finished(i.in_flight, now) {
                return false;
            }
            let idle_out = i.in_flight == 0 && now.duration_since(i.last_active) >= idle;
            if idle_out && i.state.takes_requests() && keep > min {
                keep -= 1;
                return false;
            }
            true
        });
        if self.removed {
            self.shells.clear();
        }
    }

    /// An instance or shell process ended. Returns true if it was a crash: the process ended
    /// and we did not kill it (a failed request alone is never counted as one).
    pub fn exited(&mut self, id: u64, killed: bool, last_words: &str, now: Instant) -> bool {
        let mut counted = false;
        if let Some(index) = self.instances.iter().position(|i| i.run.id == id) {
            counted = self.instances.swap_remove(index).crash_counted;
        }
        self.shells.retain(|s| s.id != id);
        if killed {
            return false;
        }
        if counted {
            // Already counted when the gateway saw it go; keep the better diagnosis.
            if !last_words.is_empty() {
                self.last_crash = Some(last_words.to_owned());
            }
            return true;
        }
        self.crashed(last_words, now);
        true
    }

    /// Instance `id`'s process was seen to exit while it served a request: out of rotation, and
    /// the crash counted now, once.
    pub fn crash_seen(&mut self, id: u64, now: Instant) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.run.id == id) else { return };
        if instance.crash_counted {
            return;
        }
        instance.crash_counted = true;
        instance.state = instance.state.after(Event::Fail, now);
        self.crashed("the instance stopped while answering a request", now);
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

    /// Takes instance `id` out of rotation (it failed a request: unreachable, or its response
    /// broke a limit); it is destroyed after [`FAILED_GRACE`] unless its process ends first. Not
    /// counted as a crash: only a monitor that exits on its own is one ([`Service::exited`]).
    pub fn fail(&mut self, id: u64, now: Instant) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.run.id == id) else { return };
        instance.state = instance.state.after(Event::Fail, now);
    }

    /// Marks every instance draining and drops the shells (the spec changed or the service goes).
    pub fn drain_all(&mut self) {
        let now = Instant::now();
        for instance in &mut self.instances {
            instance.state = instance.state.after(Event::Drain, now);
        }
        self.shells.clear();
    }

    /// Instances by state, for metrics and listings.
    pub fn counts(&self) -> [(&'static str, usize); 5] {
        let ready = self.instances.iter().filter(|i| i.state.takes_requests()).count();
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

#[cfg(test)]
mod tests;
