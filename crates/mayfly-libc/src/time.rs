//! Clocks and sleeping, over the library OS's TSC clocks and its `Wait` hypercall.

use crate::errno;
use core::ffi::c_int;
use core::time::Duration;
use mayfly::time::{Instant, wall_clock};

#[repr(C)]
pub struct Timespec {
    sec: i64,
    nsec: i64,
}

const CLOCK_REALTIME: c_int = 0;
const CLOCK_MONOTONIC: c_int = 1;
const CLOCK_PROCESS_CPUTIME_ID: c_int = 2;
const CLOCK_THREAD_CPUTIME_ID: c_int = 3;
const CLOCK_MONOTONIC_RAW: c_int = 4;
const CLOCK_REALTIME_COARSE: c_int = 5;
const CLOCK_MONOTONIC_COARSE: c_int = 6;
const CLOCK_BOOTTIME: c_int = 7;
const TIMER_ABSTIME: c_int = 1;

/// The reading of `clock`, or `None` for an unknown clock.
fn now(clock: c_int) -> Option<Duration> {
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Some(wall_clock()),
        // The guest is the whole machine: its CPU time is the time since boot.
        CLOCK_MONOTONIC
        | CLOCK_MONOTONIC_RAW
        | CLOCK_MONOTONIC_COARSE
        | CLOCK_BOOTTIME
        | CLOCK_PROCESS_CPUTIME_ID
        | CLOCK_THREAD_CPUTIME_ID => Some(Instant::now().since_boot()),
        _ => None,
    }
}

/// # Safety
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_gettime(clock: c_int, out: *mut Timespec) -> c_int {
    let Some(t) = now(clock) else { return errno::fail(errno::EINVAL) };
    // SAFETY: C contract.
    unsafe { out.write(Timespec { sec: t.as_secs() as i64, nsec: i64::from(t.subsec_nanos()) }) };
    0
}

/// The monotonic time (ns since boot) at which timeout `t` ends: `t` is relative, or absolute
/// on the monotonic clock, or absolute on the wall clock. `None` if `t` is malformed.
pub(crate) fn deadline_ns(t: &Timespec, absolute: bool, realtime: bool) -> Option<u64> {
    let t = duration(t)?;
    let now = Instant::now().since_boot();
    let at = match (absolute, realtime) {
        (false, _) => now.saturating_add(t),
        (true, false) => t,
        (true, true) => now.saturating_add(t.saturating_sub(wall_clock())),
    };
    Some(u64::try_from(at.as_nanos()).unwrap_or(u64::MAX))
}

fn duration(t: &Timespec) -> Option<Duration> {
    let nsec = u32::try_from(t.nsec).ok().filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(u64::try_from(t.sec).ok()?, nsec))
}

/// Sleeps (the vCPU halts in the monitor) for `req` or until it on `clock`; returns an error
/// number, as `clock_nanosleep` does.
///
/// # Safety
/// `req` is readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: c_int,
    flags: c_int,
    req: *const Timespec,
    _rem: *mut Timespec,
) -> c_int {
    // SAFETY: C contract.
    let Some(req) = duration(unsafe { &*req }) else { return errno::EINVAL };
    let Some(now) = now(clock) else { return errno::EINVAL };
    let length = if flags & TIMER_ABSTIME != 0 { req.saturating_sub(now) } else { req };
    crate::sched::sleep_ns(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX));
    0
}

/// # Safety
/// `req` is readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const Timespec, rem: *mut Timespec) -> c_int {
    // SAFETY: C contract, passed on.
    match unsafe { clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem) } {
        0 => 0,
        err => errno::fail(err),
    }
}

/// Lets the other ready threads run.
#[unsafe(no_mangle)]
pub extern "C" fn sched_yield() -> c_int {
    crate::sched::yield_now();
    0
}
