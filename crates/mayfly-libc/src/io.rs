//! File descriptors: 0, 1 and 2 are the console (stdin reads end of file at once; stdout and
//! stderr go to the console); 3 and up are files of the in-memory file system ([`crate::fs`]).

use crate::errno;
use crate::fs;
use crate::fs::calls::{S_IFCHR, Stat};
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The last bytes written to stderr, kept so that `abort` can report std's panic message.
static STDERR_TAIL: mayfly_tail::Tail = mayfly_tail::Tail::new();

fn is_console(fd: c_int) -> bool {
    (0..=2).contains(&fd)
}

/// # Safety
/// `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: usize) -> isize {
    // SAFETY: C contract: `buf` is readable for `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    if !is_console(fd) {
        let written = if fs::fs().is_socket(fd) {
            crate::net::socket_write(fd, bytes)
        } else {
            fs::fs().write(fd, bytes, None)
        };
        return written.map_or_else(|e| errno::fail(e) as isize, |n| n as isize);
    }
    if fd == 0 {
        return errno::fail(errno::EBADF) as isize;
    }
    mayfly::libc_host::console_write(bytes);
    if fd == 2 {
        STDERR_TAIL.push(bytes);
    }
    len as isize
}

/// How many of the last bytes written to stderr are kept.
pub(crate) const TAIL_LEN: usize = mayfly_tail::LEN;

/// The last line or so that went to stderr (std's panic message, before it aborts).
pub(crate) fn stderr_tail(out: &mut [u8; mayfly_tail::LEN]) -> &[u8] {
    STDERR_TAIL.copy(out)
}

/// Standard input has no data: it reads as end of file.
///
/// # Safety
/// `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: usize) -> isize {
    match fd {
        0 => 0,
        1 | 2 => errno::fail(errno::EBADF) as isize,
        _ => {
            // SAFETY: C contract.
            let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
            let read = if fs::fs().is_socket(fd) {
                crate::net::socket_read(fd, buf, 0)
            } else {
                fs::fs().read(fd, buf, None)
            };
            read.map_or_else(|e| errno::fail(e) as isize, |n| n as isize)
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn close(fd: c_int) -> c_int {
    if is_console(fd) { 0 } else { fs::fs().close(fd).map_or_else(errno::fail, |_| 0) }
}

#[unsafe(no_mangle)]
pub extern "C" fn dup(fd: c_int) -> c_int {
    if is_console(fd) {
        return unavailable!("dup of the console", ENOSYS, -1);
    }
    fs::fs().duplicate(fd).unwrap_or_else(errno::fail)
}

const F_GETFD: c_int = 1;
const F_GETFL: c_int = 3;
const O_RDWR: c_int = 2;

const F_SETFD: c_int = 2;
const F_SETFL: c_int = 4;
const F_DUPFD: c_int = 0;
const F_DUPFD_CLOEXEC: c_int = 1030;
const O_NONBLOCK: c_int = 0o4000;

/// `fcntl(fd, cmd, arg)`: descriptor flags (close-on-exec is moot without exec).
#[unsafe(no_mangle)]
pub extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    if !is_console(fd) && fs::fs().is_socket(fd) {
        return match cmd {
            F_GETFD | F_SETFD => 0,
            F_GETFL => match crate::net::is_nonblocking(fd) {
                Ok(on) => O_RDWR | if on { O_NONBLOCK } else { 0 },
                Err(e) => errno::fail(e),
            },
            F_SETFL => crate::net::set_nonblocking(fd, arg as c_int & O_NONBLOCK != 0)
                .map_or_else(errno::fail, |_| 0),
            F_DUPFD | F_DUPFD_CLOEXEC => fs::fs().duplicate(fd).unwrap_or_else(errno::fail),
            _ => errno::fail(errno::EINVAL),
        };
    }
    if !is_console(fd) && fs::fs().descriptor(fd).is_err() {
        return errno::fail(errno::EBADF);
    }
    match cmd {
        F_GETFD | F_SETFD => 0,
        F_GETFL => O_RDWR,
        _ => errno::fail(errno::EINVAL),
    }
}

#[repr(C)]
pub struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

const POLLIN: i16 = 1;
const POLLOUT: i16 = 4;
const POLLNVAL: i16 = 0x20;

/// Readiness of descriptors: sockets as the network stack says (waiting, other threads
/// running, until one is ready or the timeout passes); the console (stdin: end of file;
/// stdout/stderr: always writable) and files are always ready (std polls fds 0-2 at start to
/// check that they are open).
///
/// # Safety
/// `fds` is valid for `n` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut PollFd, n: u64, timeout_ms: c_int) -> c_int {
    let deadline = u64::try_from(timeout_ms).ok().map(|ms| now_ns().saturating_add(ms * 1_000_000));
    let flag = alloc::sync::Arc::new(crate::sched::IoFlag::new());
    let waker = core::task::Waker::from(flag.clone());
    loop {
        let mut cx = core::task::Context::from_waker(&waker);
        let (mut ready, mut sockets) = (0, false);
        for i in 0..n as usize {
            // SAFETY: C contract: `fds` has `n` entries.
            let entry = unsafe { &mut *fds.add(i) };
            entry.revents = match entry.fd {
                fd if fd < 0 => 0,
                0 => entry.events & POLLIN,
                1 | 2 => entry.events & POLLOUT,
                fd => match crate::epoll::readiness(fd, &mut cx) {
                    Some((readable, writable)) => {
                        sockets = true;
                        (if readable { POLLIN } else { 0 } | if writable { POLLOUT } else { 0 })
                            & entry.events
                    }
                    None if fs::fs().descriptor(fd).is_ok() => entry.events & (POLLIN | POLLOUT),
                    None => POLLNVAL,
                },
            };
            if entry.revents != 0 {
                ready += 1;
            }
        }
        if ready > 0 || timeout_ms == 0 || deadline.is_some_and(|at| at <= now_ns()) {
            return ready;
        }
        if !sockets {
            // Nothing can become ready: sleep out the timeout.
            let Some(at) = deadline else {
                return unavailable!("poll without a ready descriptor or timeout", EDEADLK, -1);
            };
            crate::sched::sleep_until(at);
            return 0;
        }
        if crate::sched::current().is_none() {
            return 0;
        }
        crate::sched::park_io(&flag, deadline);
    }
}

fn now_ns() -> u64 {
    u64::try_from(mayfly::time::Instant::now().since_boot().as_nanos()).unwrap_or(u64::MAX)
}

/// The console is not a terminal (its output goes to the host's stdout, maybe a pipe): std and
/// crates such as clap then print without colours, as natively into a pipe.
#[unsafe(no_mangle)]
pub extern "C" fn isatty(fd: c_int) -> c_int {
    errno::set(if is_console(fd) || fs::fs().descriptor(fd).is_ok() {
        errno::ENOTTY
    } else {
        errno::EBADF
    });
    0
}

const SEEK_SET: c_int = 0;
const SEEK_CUR: c_int = 1;
const SEEK_END: c_int = 2;

#[unsafe(no_mangle)]
pub extern "C" fn lseek64(fd: c_int, offset: i64, whence: c_int) -> i64 {
    if is_console(fd) {
        return i64::from(errno::fail(errno::ESPIPE));
    }
    let seek = || {
        let end = fs::calls::file_len(fd)?;
        let open = fs::fs().descriptor(fd)?;
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => open.offset as i64,
            SEEK_END => end as i64,
            _ => return Err(errno::EINVAL),
        };
        let at = base.checked_add(offset).filter(|at| *at >= 0).ok_or(errno::EINVAL)?;
        open.offset = at as usize;
        Ok(at)
    };
    seek().unwrap_or_else(|e| i64::from(errno::fail(e)))
}

/// # Safety
/// `out` is valid for writing a `struct stat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat64(fd: c_int, out: *mut Stat) -> c_int {
    let stat = if is_console(fd) {
        Ok(Stat { ino: fd as u64, nlink: 1, mode: S_IFCHR | 0o620, ..Stat::default() })
    } else {
        fs::calls::fstat_file(fd)
    };
    match stat {
        Ok(stat) => {
            // SAFETY: C contract: `out` is writable.
            unsafe { out.write(stat) };
            0
        }
        Err(e) => errno::fail(e),
    }
}

/// A small ring of the last bytes written (for the abort report).
mod mayfly_tail {
    use super::{AtomicUsize, Ordering};
    use core::cell::UnsafeCell;

    pub const LEN: usize = 1024;

    pub struct Tail {
        bytes: UnsafeCell<[u8; LEN]>,
        written: AtomicUsize,
    }

    // SAFETY: the guest runs one thread of execution at a time (no preemption), so the ring is
    // never written and read concurrently.
    unsafe impl Sync for Tail {}

    impl Tail {
        pub const fn new() -> Tail {
            Tail { bytes: UnsafeCell::new([0; LEN]), written: AtomicUsize::new(0) }
        }

        pub fn push(&self, data: &[u8]) {
            let mut at = self.written.load(Ordering::Relaxed);
            // SAFETY: see `Sync` above: no concurrent access.
            let bytes = unsafe { &mut *self.bytes.get() };
            for &b in data {
                bytes[at % LEN] = b;
                at += 1;
            }
            self.written.store(at, Ordering::Relaxed);
        }

        /// The bytes in order, oldest first.
        pub fn copy<'a>(&self, out: &'a mut [u8; LEN]) -> &'a [u8] {
            let written = self.written.load(Ordering::Relaxed);
            // SAFETY: see `Sync` above.
            let bytes = unsafe { &*self.bytes.get() };
            let n = written.min(LEN);
            for (i, slot) in out.iter_mut().take(n).enumerate() {
                *slot = bytes[(written - n + i) % LEN];
            }
            &out[..n]
        }
    }
}

#[repr(C)]
pub struct IoVec {
    base: *const c_void,
    len: usize,
}

/// # Safety
/// `iov` is valid for `count` entries, each readable for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const IoVec, count: c_int) -> isize {
    let mut total = 0isize;
    for i in 0..count.max(0) as usize {
        // SAFETY: C contract: `iov` has `count` entries.
        let entry = unsafe { &*iov.add(i) };
        // SAFETY: C contract: each entry is readable for its length.
        let n = unsafe { write(fd, entry.base, entry.len) };
        if n < 0 {
            // What was written stays written: report it, the error comes again on the next call.
            return if total > 0 { total } else { n };
        }
        total += n;
        if (n as usize) < entry.len {
            break; // a short write: the later entries must not be written after a gap
        }
    }
    total
}
