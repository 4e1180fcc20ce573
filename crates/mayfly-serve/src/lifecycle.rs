//! A started instance and its lifecycle: the states it goes through and the one table of
//! transitions between them.

use crate::instance::Running;
use std::time::{Duration, Instant};

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
pub const FAILED_GRACE: Duration = Duration::from_secs(2);

/// What can happen to a started instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Take no new requests and finish those in flight (an update, a removal, its lifetime).
    Drain,
    /// It failed a request, or was seen to stop: no more requests, destroyed soon.
    Fail,
}

impl State {
    /// The one place where an instance's state changes: the state after `event` at `now`. A
    /// failed instance stays failed (its grace period is not restarted); a draining one never
    /// takes requests again.
    pub fn after(self, event: Event, now: Instant) -> State {
        match (self, event) {
            (State::Failed(since), _) => State::Failed(since),
            (_, Event::Fail) => State::Failed(now),
            (State::Ready | State::Draining, Event::Drain) => State::Draining,
        }
    }

    /// Whether it takes new requests.
    pub fn takes_requests(self) -> bool {
        self == State::Ready
    }

    /// Whether an instance in this state with `in_flight` requests is done with at `now`:
    /// drained, or failed for longer than [`FAILED_GRACE`].
    pub fn finished(self, in_flight: u32, now: Instant) -> bool {
        match self {
            State::Ready => false,
            State::Draining => in_flight == 0,
            State::Failed(since) => now.duration_since(since) >= FAILED_GRACE,
        }
    }

    /// Its name in listings and metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Draining => "draining",
            State::Failed(_) => "failed",
        }
    }
}

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
    /// Its crash was counted already (seen by the gateway before its exit was reaped).
    pub crash_counted: bool,
}
