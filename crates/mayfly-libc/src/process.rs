//! The process: exit and abort, signals (accepted, never delivered: the guest has no signal
//! sources but its own faults, which stop it), system configuration, and the calls a unikernel
//! cannot honour (no other processes, no users).

use crate::errno;
use core::ffi::{c_char, c_int, c_long, c_ulong, c_void};
use mayfly::abi::ExitReason;

/// How long an exiting program waits for its TCP data to be acknowledged.
const NETWORK_LINGER_NS: u64 = 2_000_000_000;

/// Ends the program with `status` (std has already flushed its buffers). What the program
/// wrote to sockets is delivered first, as a native process's kernel would (for at most
/// [`NETWORK_LINGER_NS`]).
pub(crate) fn exit(status: c_int) -> ! {
    let now =
        || u64::try_from(mayfly::time::Instant::now().since_boot().as_nanos()).unwrap_or(u64::MAX);
    let deadline = now().saturating_add(NETWORK_LINGER_NS);
    loop {
        let next = crate::net::poll();
        if !crate::net::unsent() || now() >= deadline {
            break;
        }
        let next = next.map_or(deadline, |at| at.min(deadline));
        mayfly::libc_host::wait(next.saturating_sub(now()), false);
    }
    mayfly::exit(status)
}

#[unsafe(no_mangle)]
pub extern "C" fn _exit(status: c_int) -> ! {
    exit(status)
}

/// `exit` under its C name (a Rust function named `exit` would clash inside this crate).
#[unsafe(export_name = "exit")]
pub extern "C" fn exit_export(status: c_int) -> ! {
    exit(status)
}

/// Stops the guest as a crash (`mayfly run` exits with 101, like a Rust panic), reporting the
/// panic message std printed just before, if any.
#[unsafe(no_mangle)]
pub extern "C" fn abort() -> ! {
    let mut tail = [0u8; crate::io::TAIL_LEN];
    let tail = crate::io::stderr_tail(&mut tail);
    let mut message = [0u8; 1024];
    let n = panic_summary(tail, &mut message);
    let text: &[u8] = if n == 0 { b"abort() called" } else { &message[..n] };
    mayfly::libc_host::exit(134, ExitReason::Panic, text)
}

/// std's panic report from the end of stderr (`thread 'main' panicked at file:line:col:` and
/// the message), on one line, without the backtrace note; its length in `out`.
fn panic_summary(tail: &[u8], out: &mut [u8; 1024]) -> usize {
    let needle = b"panicked at ";
    let Some(at) = tail.windows(needle.len()).rposition(|w| w == needle) else { return 0 };
    let start = tail[..at].iter().rposition(|&b| b == b'\n').map_or(0, |nl| nl + 1);
    let report = &tail[start..];
    let end = report.windows(6).position(|w| w == b"\nnote:").unwrap_or(report.len());
    let mut n = 0;
    for &b in report[..end].iter() {
        if n < out.len() {
            out[n] = if b == b'\n' { b' ' } else { b };
            n += 1;
        }
    }
    while n > 0 && out[n - 1] == b' ' {
        n -= 1;
    }
    n
}

/// Waits for a signal, which never comes: the guest sleeps until its time limit.
#[unsafe(no_mangle)]
pub extern "C" fn pause() -> c_int {
    loop {
        mayfly::libc_host::wait(mayfly::abi::hypercall::WAIT_FOREVER, true);
    }
}

/// `signal(sig, handler)`: accepted; the previous disposition is the default.
#[unsafe(no_mangle)]
pub extern "C" fn signal(_sig: c_int, _handler: usize) -> usize {
    0
}

/// # Safety
/// `old` is null or writable for a `struct sigaction` (152 bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(_sig: c_int, _new: *const c_void, old: *mut c_void) -> c_int {
    if !old.is_null() {
        // SAFETY: C contract; all zeroes is SIG_DFL with no flags.
        unsafe { core::ptr::write_bytes(old.cast::<u8>(), 0, 152) };
    }
    0
}

#[repr(C)]
pub struct StackT {
    sp: *mut c_void,
    flags: c_int,
    size: usize,
}

const SS_DISABLE: c_int = 2;

/// # Safety
/// `old` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaltstack(_new: *const StackT, old: *mut StackT) -> c_int {
    if !old.is_null() {
        // SAFETY: C contract.
        unsafe { old.write(StackT { sp: core::ptr::null_mut(), flags: SS_DISABLE, size: 0 }) };
    }
    0
}

const _SC_PAGESIZE: c_int = 30;
const _SC_NPROCESSORS_CONF: c_int = 83;
const _SC_NPROCESSORS_ONLN: c_int = 84;

#[unsafe(no_mangle)]
pub extern "C" fn sysconf(name: c_int) -> c_long {
    match name {
        _SC_PAGESIZE => 4096,
        _SC_NPROCESSORS_CONF | _SC_NPROCESSORS_ONLN => 1,
        _ => c_long::from(errno::fail(errno::EINVAL)),
    }
}

const AT_PAGESZ: c_ulong = 6;

#[unsafe(no_mangle)]
pub extern "C" fn getauxval(kind: c_ulong) -> c_ulong {
    if kind == AT_PAGESZ {
        return 4096;
    }
    errno::set(errno::ENOENT);
    0
}

/// No program headers are reachable at run time (std uses this only for backtraces).
#[unsafe(no_mangle)]
pub extern "C" fn dl_iterate_phdr(_callback: usize, _data: *mut c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn getpid() -> c_int {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn getppid() -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn getuid() -> u32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn geteuid() -> u32 {
    0
}

/// There is no user database: every uid is "not found" (`*result = NULL`, status 0), as glibc
/// answers for a uid without an entry. whoami (which tokio-postgres links for its default
/// user name) then reports an error instead of a name.
///
/// # Safety
/// `result` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwuid_r(
    _uid: u32,
    _pwd: *mut c_void,
    _buf: *mut c_char,
    _len: usize,
    result: *mut *mut c_void,
) -> c_int {
    // SAFETY: C contract: `result` is writable.
    unsafe { result.write(core::ptr::null_mut()) };
    0
}

/// The optional functions `dlsym` finds: those mayfly-libc implements that programs look up
/// at run time instead of linking. The getrandom crate (0.4, behind rand's `ThreadRng` and so
/// tokio-postgres's SCRAM) looks `getrandom` up this way and, finding none, opens
/// `/dev/urandom`, which does not exist here.
fn found(name: &[u8]) -> *mut c_void {
    match name {
        b"getrandom" => crate::syscall::getrandom as *mut c_void,
        _ => core::ptr::null_mut(),
    }
}

/// No dynamic objects: a name is found only among the few in [`found`]; std looks up other
/// optional glibc functions this way and does without them.
///
/// # Safety
/// `name` is NUL-terminated (or null).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, name: *const c_char) -> *mut c_void {
    if name.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: C contract: a NUL-terminated name.
    found(unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes())
}
