//! The environment: `environ`, `getenv`, `setenv`, `unsetenv`. It starts as the entries
//! `mayfly run --env` passed; the first change copies the pointer array to the heap. Strings
//! replaced or removed are not freed (a caller may still hold what `getenv` returned, as glibc
//! allows).

use crate::errno;
use crate::string::{env_value, strlen};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int};

/// The process environment (`NAME=value` C strings, null-terminated), as in C.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut environ: *mut *mut c_char = core::ptr::null_mut();

/// The heap copy of the pointer array once the environment has changed (null-terminated).
struct Owned(UnsafeCell<Option<Vec<*mut c_char>>>);

// SAFETY: one thread runs at a time and these functions do not yield.
unsafe impl Sync for Owned {}

static OWNED: Owned = Owned(UnsafeCell::new(None));

/// Sets the initial environment (at start, before any code reads it).
pub fn init(envp: *mut *mut c_char) {
    // SAFETY: single-threaded start.
    unsafe { environ = envp };
}

/// The entries, as pointers (without the terminating null).
fn entries() -> Vec<*mut c_char> {
    let mut out = Vec::new();
    // SAFETY: `environ` is null or a null-terminated array of NUL-terminated strings.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            out.push(*entry);
            entry = entry.add(1);
        }
    }
    out
}

/// Makes `list` (plus a null) the environment.
fn install(mut list: Vec<*mut c_char>) {
    list.push(core::ptr::null_mut());
    // SAFETY: see `Owned`; the old array is dropped only after `environ` points to the new one.
    unsafe {
        let owned = &mut *OWNED.0.get();
        let new = owned.insert(list);
        environ = new.as_mut_ptr();
    }
}

/// The bytes of C string `s`.
///
/// # Safety
/// `s` is NUL-terminated.
unsafe fn bytes<'a>(s: *const c_char) -> &'a [u8] {
    // SAFETY: C contract.
    unsafe { core::slice::from_raw_parts(s.cast::<u8>(), strlen(s)) }
}

/// The value of environment variable `name`, or null.
///
/// # Safety
/// `name` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getenv(name: *const c_char) -> *mut c_char {
    // SAFETY: C contract.
    let name = unsafe { bytes(name) };
    for entry in entries() {
        // SAFETY: the entries are NUL-terminated.
        if let Some(value) = unsafe { env_value(entry, name) } {
            return value;
        }
    }
    core::ptr::null_mut()
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'=')
}

/// # Safety
/// `name` and `value` are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setenv(
    name: *const c_char,
    value: *const c_char,
    overwrite: c_int,
) -> c_int {
    // SAFETY: C contract.
    let (name, value) = unsafe { (bytes(name), bytes(value)) };
    if !valid_name(name) {
        return errno::fail(errno::EINVAL);
    }
    let mut list = entries();
    // SAFETY: the entries are NUL-terminated.
    let at = list.iter().position(|e| unsafe { env_value(*e, name) }.is_some());
    if at.is_some() && overwrite == 0 {
        return 0;
    }
    let mut text: Vec<u8> = Vec::with_capacity(name.len() + value.len() + 2);
    text.extend_from_slice(name);
    text.push(b'=');
    text.extend_from_slice(value);
    text.push(0);
    let text = text.leak().as_mut_ptr().cast::<c_char>();
    match at {
        Some(i) => list[i] = text,
        None => list.push(text),
    }
    install(list);
    0
}

/// # Safety
/// `name` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unsetenv(name: *const c_char) -> c_int {
    // SAFETY: C contract.
    let name = unsafe { bytes(name) };
    if !valid_name(name) {
        return errno::fail(errno::EINVAL);
    }
    let mut list = entries();
    // SAFETY: the entries are NUL-terminated.
    list.retain(|e| unsafe { env_value(*e, name) }.is_none());
    install(list);
    0
}
