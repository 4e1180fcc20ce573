//! `errno` and the error numbers this library sets (Linux values, as std expects).

use core::ffi::c_int;
use core::sync::atomic::AtomicI32;

pub const EPERM: c_int = 1;
pub const ENOENT: c_int = 2;
pub const ESRCH: c_int = 3;
pub const EINTR: c_int = 4;
pub const EBADF: c_int = 9;
pub const ECHILD: c_int = 10;
pub const EAGAIN: c_int = 11;
pub const ENOMEM: c_int = 12;
pub const EACCES: c_int = 13;
pub const EFAULT: c_int = 14;
pub const EEXIST: c_int = 17;
pub const ENOTDIR: c_int = 20;
pub const EINVAL: c_int = 22;
pub const ENOTTY: c_int = 25;
pub const ESPIPE: c_int = 29;
pub const EROFS: c_int = 30;
pub const ERANGE: c_int = 34;
pub const EDEADLK: c_int = 35;
pub const ENOSYS: c_int = 38;
pub const EPROTONOSUPPORT: c_int = 93;
pub const ETIMEDOUT: c_int = 110;

/// `errno` before the threads are set up (each thread has its own after).
static EARLY_ERRNO: AtomicI32 = AtomicI32::new(0);

/// Sets `errno`.
pub fn set(value: c_int) {
    // SAFETY: `__errno_location` returns a valid, writable location for the running thread.
    unsafe { *__errno_location() = value };
}

/// Sets `errno` and returns -1, the usual failure result.
pub fn fail(value: c_int) -> c_int {
    set(value);
    -1
}

/// Where `errno` lives.
#[unsafe(no_mangle)]
pub extern "C" fn __errno_location() -> *mut c_int {
    match crate::sched::current() {
        Some(thread) => &raw mut thread.errno,
        None => EARLY_ERRNO.as_ptr(),
    }
}

/// The glibc message for error number `errnum` (the common ones; others get a generic text).
pub fn message(errnum: c_int) -> &'static str {
    match errnum {
        0 => "Success",
        EPERM => "Operation not permitted",
        ENOENT => "No such file or directory",
        ESRCH => "No such process",
        EINTR => "Interrupted system call",
        EBADF => "Bad file descriptor",
        ECHILD => "No child processes",
        EAGAIN => "Resource temporarily unavailable",
        ENOMEM => "Cannot allocate memory",
        EACCES => "Permission denied",
        EFAULT => "Bad address",
        EEXIST => "File exists",
        ENOTDIR => "Not a directory",
        EINVAL => "Invalid argument",
        ENOTTY => "Inappropriate ioctl for device",
        ESPIPE => "Illegal seek",
        EROFS => "Read-only file system",
        ERANGE => "Numerical result out of range",
        EDEADLK => "Resource deadlock avoided",
        ENOSYS => "Function not implemented",
        ETIMEDOUT => "Connection timed out",
        EPROTONOSUPPORT => "Protocol not supported",
        // The socket errors `net.rs` sets, with glibc's texts (a refused database connection
        // said "Unknown error (os error 111)").
        24 => "Too many open files",
        32 => "Broken pipe",
        88 => "Socket operation on non-socket",
        95 => "Operation not supported",
        97 => "Address family not supported by protocol",
        98 => "Address already in use",
        99 => "Cannot assign requested address",
        100 => "Network is down",
        104 => "Connection reset by peer",
        106 => "Transport endpoint is already connected",
        107 => "Transport endpoint is not connected",
        111 => "Connection refused",
        _ => "Unknown error",
    }
}
