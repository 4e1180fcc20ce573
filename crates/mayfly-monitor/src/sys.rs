//! The few raw system calls the monitor makes that `std` and the rust-vmm crates do not wrap:
//! the wall-clock deadline for `--timeout`, the monotonic clock, host entropy, opening a tap
//! device (`TUNSETIFF`), `poll(2)`, and finding a snapshot file's data (`lseek` `SEEK_DATA`).

use std::time::Duration;

/// Signal handler for the timeout timer: it does nothing; its only effect is to interrupt
/// `KVM_RUN` with `EINTR`, after which the run loop checks the deadline.
extern "C" fn on_alarm(_signal: libc::c_int) {}

/// Arms a timer that interrupts the vCPU (through `SIGALRM`) once `after` has passed, then
/// every 10 ms, so a signal that lands just before `KVM_RUN` is entered cannot be lost. A zero
/// `after` disarms it.
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
    // Zero disarms (both fields zero); otherwise the alarm repeats every 10 ms after the first,
    // in case the first arrives between the deadline check and KVM_RUN.
    let timer = if after.is_zero() {
        libc::itimerval {
            it_value: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
        }
    } else {
        libc::itimerval {
            it_value: value,
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 10_000 },
        }
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

/// Waits until one of `fds` is ready or `timeout` passes (`ppoll(2)`, nanosecond precision;
/// with no descriptors it is a sleep); interrupted waits return early (the caller re-checks its
/// deadline).
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> std::io::Result<usize> {
    let timeout = timeout.min(Duration::from_secs(60));
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(60),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
    // SAFETY: `fds` is a valid, writable array of `n` pollfd structs and `ts` a valid timespec
    // for the call; no signal mask is passed.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), n, &ts, std::ptr::null()) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(usize::try_from(rc).unwrap_or(0))
}

static SIGSYS_STATUS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(159);

/// SIGSYS handler: reports the forbidden system call and exits. Only async-signal-safe calls
/// (write, exit_group), no allocation.
extern "C" fn on_sigsys(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // For SIGSYS, the kernel's siginfo holds the system call number at byte 24
    // (`_sigsys._syscall`, after si_signo/si_errno/si_code and the 8-byte `_call_addr`).
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; 24..28 is inside it.
    let number = unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() };
    let prefix: &[u8] = b"mayfly: monitor stopped by its seccomp filter: system call ";
    let suffix: &[u8] =
        b" is not in its allowlist, or not with these arguments (docs/security.md)\n";
    let mut digits = [0u8; 10];
    let mut n = number.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    let number_text = digits.get(i..).unwrap_or_default();
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffers are live for the calls.
    unsafe {
        libc::write(2, prefix.as_ptr().cast(), prefix.len());
        libc::write(2, number_text.as_ptr().cast(), number_text.len());
        libc::write(2, suffix.as_ptr().cast(), suffix.len());
        libc::_exit(SIGSYS_STATUS.load(std::sync::atomic::Ordering::Relaxed));
    }
}

/// Installs the SIGSYS reporter, which exits with `status`.
pub fn report_sigsys(status: i32) -> std::io::Result<()> {
    SIGSYS_STATUS.store(status, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: a fully initialised sigaction whose handler only makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes the forbidden call `test` names, for the sandbox's self-test: once the filter is
/// installed, the SIGSYS reporter ends the process before this returns.
pub fn forbidden_call(test: crate::sandbox::SelfTest) {
    use crate::sandbox::SelfTest;
    let unix_stream = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    // SAFETY: each call gets valid arguments or none that it dereferences (a null address of
    // length 0 for connect, a live winsize for TIOCGWINSZ, a live int for FIONBIO (0: leave
    // stdout blocking), a NUL-terminated path for openat);
    // descriptors created (if the filter failed to stop the call) are closed at once.
    unsafe {
        let fd = match test {
            SelfTest::Getppid => {
                libc::getppid();
                -1
            }
            SelfTest::Ioctl => {
                let mut size: libc::winsize = std::mem::zeroed();
                libc::ioctl(1, libc::TIOCGWINSZ, &mut size);
                -1
            }
            SelfTest::IoctlFionbio => {
                let blocking: libc::c_int = 0;
                libc::ioctl(1, libc::FIONBIO, &blocking);
                -1
            }
            SelfTest::SocketTcp => libc::socket(libc::AF_INET, OUTBOUND_SOCKET_TYPE, 0),
            SelfTest::SocketUdp => {
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            }
            SelfTest::SocketUnix => libc::socket(libc::AF_UNIX, unix_stream, 0),
            SelfTest::Connect => {
                libc::connect(-1, std::ptr::null(), 0);
                -1
            }
            SelfTest::MmapExec => {
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let rx = libc::PROT_READ | libc::PROT_EXEC;
                let at = libc::mmap(std::ptr::null_mut(), 4096, rx, flags, -1, 0);
                if at != libc::MAP_FAILED {
                    libc::munmap(at, 4096);
                }
                -1
            }
            SelfTest::Fcntl => {
                libc::fcntl(1, libc::F_GETFL);
                -1
            }
            SelfTest::Open => libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC),
        };
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// The socket type of outbound connections (the only one the sandbox lets `socket` create).
pub const OUTBOUND_SOCKET_TYPE: libc::c_int =
    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;

/// Starts a TCP connection to `addr:port` on a new non-blocking socket and returns at once
/// (the connection is usually still in progress). Needs only `socket` and `connect`, which the
/// sandbox allows.
pub fn connect_nonblocking(
    addr: std::net::Ipv4Addr,
    port: u16,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, OUTBOUND_SOCKET_TYPE, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we just created and own; the TcpStream takes ownership of it
    // (closing it on drop, also on the error path below).
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let sockaddr = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(addr).to_be() },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap_or(16);
    // SAFETY: `sockaddr` is a valid sockaddr_in of `len` bytes, live for the call.
    let rc = unsafe { libc::connect(fd, (&sockaddr as *const libc::sockaddr_in).cast(), len) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
    }
    Ok(stream)
}

/// Opens directory `path` as an `O_PATH` descriptor: enough to name files relative to it
/// (`unlinkat`), nothing else.
pub fn open_dir_path(path: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(dir.into())
}

/// Removes the file `name` in directory `dir` (`unlinkat(2)`; the one form of unlink the
/// sandbox allows, and only relative to a published Unix socket's directory).
pub fn unlink_at(dir: &std::os::fd::OwnedFd, name: &std::ffi::CStr) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `dir` is an open descriptor we own and `name` a NUL-terminated string, both live
    // for the call; unlinkat reads only the string.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

static XCPU_SECONDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// SIGXCPU handler: reports the CPU-time limit and exits 152 (128 + SIGXCPU). Only
/// async-signal-safe calls.
extern "C" fn on_sigxcpu(_signal: libc::c_int) {
    let message: &[u8] = b"mayfly: guest stopped: CPU time limit reached\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(152);
    }
}

/// Limits this process (the monitor and its guest's vCPU) to `seconds` of CPU time: at the
/// limit SIGXCPU reports and exits (status 152); one second later the kernel kills it.
pub fn limit_cpu(seconds: u64) -> std::io::Result<()> {
    XCPU_SECONDS.store(seconds, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: a fully initialised sigaction whose handler makes only async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigxcpu as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGXCPU, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let limit = libc::rlimit { rlim_cur: seconds, rlim_max: seconds.saturating_add(1) };
    // SAFETY: `limit` is a valid rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor above stderr that this process inherited (a monitor keeps only what
/// it opens itself). Call it first thing, before anything is opened.
pub fn close_inherited_fds() {
    // SAFETY: close_range(2) on [3, u32::MAX] closes only descriptors; nothing in this process
    // holds one yet at the point this is called (see the doc comment).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        // Older kernels: close them one by one.
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        for fd in fds.into_iter().filter(|fd| *fd > 2) {
            // SAFETY: closing a descriptor number this process does not use (see above); the
            // directory's own descriptor is already closed when the iterator is dropped.
            unsafe { libc::close(fd) };
        }
    }
}

/// The byte ranges of `file` from `start` to `end` that hold data (not holes), as `(offset,
/// length)`, found with `lseek(SEEK_DATA/SEEK_HOLE)`.
pub fn data_ranges(file: &std::fs::File, start: u64, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let seek = |at: u64, whence: libc::c_int| -> std::io::Result<Option<u64>> {
        let at = libc::off_t::try_from(at)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: lseek only moves the file offset of a descriptor we own (borrowed from `file`).
        let r = unsafe { libc::lseek(fd, at, whence) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // ENXIO: no data (or hole) at or after `at`.
            return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
        }
        Ok(u64::try_from(r).ok())
    };
    let mut ranges = Vec::new();
    let mut at = start;
    while at < end {
        let Some(data) = seek(at, libc::SEEK_DATA)? else { break };
        if data >= end {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        ranges.push((data, hole - data));
        at = hole;
    }
    Ok(ranges)
}

/// Takes an advisory lock on `file` without blocking (`flock`): exclusive for a writer, shared
/// for a reader. `Ok(false)` when another process holds a conflicting lock. The lock goes with
/// the process (also when it is killed).
pub fn try_lock(file: &std::fs::File, exclusive: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mode = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock(2) on a descriptor we own (borrowed from a live File); no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_timer() -> libc::itimerval {
        let zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let mut timer = libc::itimerval { it_value: zero, it_interval: zero };
        // SAFETY: `timer` is a valid, writable itimerval.
        assert_eq!(unsafe { libc::getitimer(libc::ITIMER_REAL, &mut timer) }, 0);
        timer
    }

    #[test]
    fn a_zero_timeout_disarms_the_alarm() {
        arm_timeout(Duration::from_secs(30)).unwrap();
        let armed = current_timer();
        assert!(armed.it_value.tv_sec > 0 && armed.it_interval.tv_usec == 10_000);
        arm_timeout(Duration::ZERO).unwrap();
        let disarmed = current_timer();
        assert_eq!((disarmed.it_value.tv_sec, disarmed.it_value.tv_usec), (0, 0));
        assert_eq!((disarmed.it_interval.tv_sec, disarmed.it_interval.tv_usec), (0, 0));
    }
}
