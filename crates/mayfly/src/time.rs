//! Clocks and blocking: a monotonic clock and the wall clock from the time-stamp counter, and
//! the one way a unikernel idles, [`wait`].

use crate::platform;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(1);
static WALL_AT_BOOT_NS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn init(tsc: u64, hz: u64, wall_ns: u64) {
    TSC_AT_BOOT.store(tsc, Ordering::Relaxed);
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    WALL_AT_BOOT_NS.store(wall_ns, Ordering::Relaxed);
}

/// A clone's wall clock: `wall_ns` held when the TSC read `tsc`.
pub(crate) fn rebase(wall_ns: u64, tsc: u64) {
    WALL_AT_BOOT_NS.store(wall_ns.saturating_sub(ns_at(tsc)), Ordering::Relaxed);
}

fn ns_since_boot() -> u64 {
    ns_at(platform::read_tsc())
}

/// Nanoseconds from boot to the moment the TSC read `tsc`.
fn ns_at(tsc: u64) -> u64 {
    let ticks = tsc.wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    let hz = TSC_HZ.load(Ordering::Relaxed);
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64
}

/// A point on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// Now.
    pub fn now() -> Instant {
        Instant(ns_since_boot())
    }

    /// Time since the guest started.
    pub fn since_boot(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time passed since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }
}

/// Wall-clock time: the time since the Unix epoch (UTC), from the host's clock at boot plus the
/// monotonic time since.
pub fn wall_clock() -> Duration {
    Duration::from_nanos(WALL_AT_BOOT_NS.load(Ordering::Relaxed).saturating_add(ns_since_boot()))
}

/// The set of devices with I/O ready, as returned by [`wait`] (bit `n` = device `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready(pub u64);

/// Blocks until I/O is ready on an attached device or `deadline` passes (`None`: no deadline).
/// This is the only way a unikernel idles: the vCPU sleeps in the monitor.
pub fn wait(deadline: Option<Instant>) -> Ready {
    let timeout = match deadline {
        None => mayfly_abi::hypercall::WAIT_FOREVER,
        Some(at) => u64::try_from(at.saturating_duration_since(Instant::now()).as_nanos())
            .unwrap_or(u64::MAX - 1),
    };
    Ready(platform::wait(timeout, false))
}

/// Sleeps for `d`, blocking everything (in async code use [`crate::task::sleep`], which lets
/// other tasks run).
pub fn sleep(d: Duration) {
    let until = Instant::now().saturating_add(d);
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        platform::wait(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX - 1), true);
    }
}
