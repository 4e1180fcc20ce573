//! Starting other programs, which a unikernel cannot do: `posix_spawn`/`posix_spawnp` (and the
//! fork/exec path) fail with ENOSYS and say so once. The helpers std calls to prepare a spawn
//! (file actions, attributes, signal sets) work, so that the failure is reported by the spawn
//! itself, with its name; what a child would do after a fork (setsid, dup2...) fails.

use crate::errno;
use core::ffi::{c_char, c_int, c_void};

/// The glibc version std checks before it uses posix_spawn (it needs 2.24 or later): the C
/// ABI this library follows.
#[unsafe(no_mangle)]
pub extern "C" fn gnu_get_libc_version() -> *const c_char {
    c"2.36".as_ptr()
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn_file_actions_init(_actions: *mut c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn_file_actions_destroy(_actions: *mut c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn_file_actions_adddup2(
    _actions: *mut c_void,
    _fd: c_int,
    _new_fd: c_int,
) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn_file_actions_addchdir_np(
    _actions: *mut c_void,
    _path: *const c_char,
) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnattr_init(_attr: *mut c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnattr_destroy(_attr: *mut c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnattr_setflags(_attr: *mut c_void, _flags: i16) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnattr_setsigdefault(_attr: *mut c_void, _set: *const c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnattr_setsigmask(_attr: *mut c_void, _set: *const c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnattr_setpgroup(_attr: *mut c_void, _group: c_int) -> c_int {
    0
}

/// A `sigset_t`: 1024 bits.
#[repr(C)]
pub struct SigSet {
    bits: [u64; 16],
}

/// # Safety
/// `set` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigemptyset(set: *mut SigSet) -> c_int {
    // SAFETY: C contract.
    unsafe { (*set).bits = [0; 16] };
    0
}

/// # Safety
/// `set` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaddset(set: *mut SigSet, signal: c_int) -> c_int {
    let Some(bit) = usize::try_from(signal - 1).ok().filter(|b| *b < 1024) else {
        return errno::fail(errno::EINVAL);
    };
    // SAFETY: C contract.
    unsafe { (*set).bits[bit / 64] |= 1 << (bit % 64) };
    0
}

/// Returns its error number, as `posix_spawn` does.
#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn(
    _pid: *mut c_int,
    _path: *const c_char,
    _actions: *const c_void,
    _attr: *const c_void,
    _argv: *const *const c_char,
    _envp: *const *const c_char,
) -> c_int {
    unavailable!("posix_spawn", ENOSYS, errno::ENOSYS)
}

/// Returns its error number, as `posix_spawnp` does.
#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnp(
    _pid: *mut c_int,
    _file: *const c_char,
    _actions: *const c_void,
    _attr: *const c_void,
    _argv: *const *const c_char,
    _envp: *const *const c_char,
) -> c_int {
    unavailable!("posix_spawnp", ENOSYS, errno::ENOSYS)
}

#[unsafe(no_mangle)]
pub extern "C" fn fork() -> c_int {
    unavailable!("fork", ENOSYS, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn execve(_path: *const c_char, _argv: usize, _envp: usize) -> c_int {
    unavailable!("execve", ENOSYS, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn execvp(_file: *const c_char, _argv: usize) -> c_int {
    unavailable!("execvp", ENOSYS, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn waitpid(_pid: c_int, _status: *mut c_int, _options: c_int) -> c_int {
    unavailable!("waitpid", ECHILD, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn waitid(_kind: c_int, _id: u32, _info: *mut c_void, _options: c_int) -> c_int {
    unavailable!("waitid", ECHILD, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn kill(pid: c_int, _sig: c_int) -> c_int {
    if pid == 1 {
        return unavailable!("kill of itself", ENOSYS, -1);
    }
    unavailable!("kill", ESRCH, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn setuid(_uid: u32) -> c_int {
    unavailable!("setuid", EPERM, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn setgid(_gid: u32) -> c_int {
    unavailable!("setgid", EPERM, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn setgroups(_count: usize, _groups: *const u32) -> c_int {
    unavailable!("setgroups", EPERM, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn setsid() -> c_int {
    unavailable!("setsid", EPERM, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn setpgid(_pid: c_int, _group: c_int) -> c_int {
    unavailable!("setpgid", EPERM, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn chroot(_path: *const c_char) -> c_int {
    unavailable!("chroot", EPERM, -1)
}

#[unsafe(no_mangle)]
pub extern "C" fn dup2(fd: c_int, new_fd: c_int) -> c_int {
    if fd == new_fd && (0..=2).contains(&fd) {
        return fd;
    }
    unavailable!("dup2", ENOSYS, -1)
}

/// No terminal and no devices; FIONBIO on a socket sets non-blocking mode.
#[unsafe(no_mangle)]
pub extern "C" fn ioctl(fd: c_int, request: u64, arg: *const c_int) -> c_int {
    const FIONBIO: u64 = 0x5421;
    if request == FIONBIO && crate::fs::fs().is_socket(fd) && !arg.is_null() {
        // SAFETY: FIONBIO's argument is a readable int (C contract).
        let on = unsafe { *arg } != 0;
        return crate::net::set_nonblocking(fd, on).map_or_else(errno::fail, |_| 0);
    }
    errno::fail(if (0..=2).contains(&fd) { errno::ENOTTY } else { errno::EBADF })
}

#[unsafe(no_mangle)]
pub extern "C" fn socketpair(
    _domain: c_int,
    _kind: c_int,
    _protocol: c_int,
    _fds: *mut c_int,
) -> c_int {
    unavailable!("socketpair", ENOSYS, -1)
}

/// Pipes (std makes them for a child's captured output) are not implemented yet.
#[unsafe(no_mangle)]
pub extern "C" fn pipe2(_fds: *mut c_int, _flags: c_int) -> c_int {
    unavailable!("pipe2", ENOSYS, -1)
}
