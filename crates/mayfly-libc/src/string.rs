//! C strings: `strlen`, `strerror_r` (the memory functions come from the library OS).

use crate::errno;
use core::ffi::{c_char, c_int};

/// # Safety
/// `s` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: C contract: `s` is NUL-terminated, so every byte up to the NUL is readable.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

/// The XSI `strerror_r`: copies the message for `errnum` into `buf` (truncated, NUL-terminated).
///
/// # Safety
/// `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xpg_strerror_r(errnum: c_int, buf: *mut c_char, len: usize) -> c_int {
    if buf.is_null() || len == 0 {
        return errno::ERANGE;
    }
    let text = errno::message(errnum).as_bytes();
    let n = text.len().min(len - 1);
    // SAFETY: C contract: `buf` is valid for `len > n` bytes; the source is a static string.
    unsafe {
        core::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    if n < text.len() { errno::ERANGE } else { 0 }
}

/// Whether C string `entry` starts with `name` followed by `=`; returns the value's address.
///
/// # Safety
/// `entry` is NUL-terminated.
pub(crate) unsafe fn env_value(entry: *const c_char, name: &[u8]) -> Option<*mut c_char> {
    for (i, &b) in name.iter().enumerate() {
        // SAFETY: we stop at the first mismatch, which includes `entry`'s NUL.
        if unsafe { *entry.add(i) } as u8 != b {
            return None;
        }
    }
    // SAFETY: all of `name` matched, so `entry` has at least `name.len() + 1` readable bytes.
    (unsafe { *entry.add(name.len()) } == b'=' as c_char)
        // SAFETY: the byte after `=` is readable (at worst the NUL).
        .then(|| unsafe { entry.add(name.len() + 1) }.cast_mut())
}
