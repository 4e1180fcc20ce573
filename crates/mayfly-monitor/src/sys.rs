//! The few raw system calls the monitor makes that `std` and the rust-vmm crates do not wrap:
//! the wall-clock deadline for `--timeout`, the monotonic clock, host entropy, opening a tap
//! device (`TUNSETIFF`), and `poll(2)`.

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

/// Opens (creating it if needed) the tap device `name` in non-blocking mode, returning the file
/// and the device's actual name. Needs CAP_NET_ADMIN unless the tap is persistent and ours.
pub fn open_tap(name: &str) -> std::io::Result<(std::fs::File, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `request` is, for the duration of
    // the call; the descriptor is the tun device we just opened.
    let rc = unsafe {
        libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), TUNSETIFF as _, &mut request)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let actual: Vec<u8> =
        request.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    Ok((file, String::from_utf8_lossy(&actual).into_owned()))
}

/// Waits until one of `fds` is ready or `timeout` passes (`poll(2)`); interrupted waits return
/// early (the caller re-checks its deadline).
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> std::io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis().min(60_000)).unwrap_or(60_000);
    // Round a sub-millisecond wait up so that it does not spin.
    let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
    // SAFETY: `fds` is a valid, writable array of `n` pollfd structs for the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(usize::try_from(rc).unwrap_or(0))
}
