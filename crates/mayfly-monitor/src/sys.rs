//! The few raw system calls the monitor makes that `std` and the rust-vmm crates do not wrap:
//! the wall-clock deadline for `--timeout`, the monotonic clock, and host entropy.

use std::time::Duration;

/// Signal handler for the timeout timer: it does nothing; its only effect is to interrupt
/// `KVM_RUN` with `EINTR`, after which the run loop checks the deadline.
extern "C" fn on_alarm(_signal: libc::c_int) {}

/// Arms a timer that interrupts the vCPU (through `SIGALRM`) once `after` has passed, then
/// every 10 ms, so a signal that lands just before `KVM_RUN` is entered cannot be lost.
pub fn arm_timeout(after: Duration) -> std::io::Result<()> {
    // SAFETY: `sigaction` is given a fully initialised struct whose handler is an
    // async-signal-safe function (it does nothing); no SA_RESTART, so KVM_RUN returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let value = libc::timeval {
        tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(after.subsec_micros().max(1)),
    };
    let timer = libc::itimerval {
        it_value: value,
        it_interval: libc::timeval { tv_sec: 0, tv_usec: 10_000 },
    };
    // SAFETY: `timer` is a valid itimerval; the old value is not requested.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `CLOCK_MONOTONIC` in nanoseconds (comparable across processes on this host).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Fills `buf` from the host's entropy source.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(())
}
