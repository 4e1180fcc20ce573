//! The `pthread` API std uses, over the cooperative scheduler ([`crate::sched`]). A `pthread_t`
//! is the thread's id (the main thread is 1).

use crate::errno;
use crate::sched::{self, KeyDestructor, StartFn};
use core::ffi::{c_char, c_int, c_void};

/// A pthread_attr_t as this library fills it (opaque to std; 56 bytes in the C ABI).
#[repr(C)]
pub struct Attr {
    stack_addr: *mut c_void,
    stack_size: usize,
}

const _: () = assert!(size_of::<Attr>() <= 56);

/// glibc's PTHREAD_STACK_MIN.
const STACK_MIN: usize = 16 * 1024;
/// The stack size of a thread created without attributes.
const DEFAULT_STACK: usize = 2 * 1024 * 1024;

/// Sets up the main thread (TLS, scheduler entry); first thing at start.
pub(crate) fn init_main_thread() {
    sched::init();
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_self() -> usize {
    sched::current().map_or(1, |t| t.id)
}

#[unsafe(no_mangle)]
pub extern "C" fn gettid() -> c_int {
    pthread_self() as c_int
}

/// # Safety
/// `attr` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_attr_init(attr: *mut Attr) -> c_int {
    // SAFETY: C contract.
    unsafe { attr.write(Attr { stack_addr: core::ptr::null_mut(), stack_size: DEFAULT_STACK }) };
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_attr_destroy(_attr: *mut Attr) -> c_int {
    0
}

/// # Safety
/// `attr` was initialised by this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_attr_setstacksize(attr: *mut Attr, size: usize) -> c_int {
    if size < STACK_MIN {
        return errno::EINVAL;
    }
    // SAFETY: C contract.
    unsafe { (*attr).stack_size = size };
    0
}

/// # Safety
/// `attr` was initialised by this library; `size` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_attr_getstacksize(attr: *const Attr, size: *mut usize) -> c_int {
    // SAFETY: C contract.
    unsafe { *size = (*attr).stack_size };
    0
}

/// One page, as glibc's default (std refuses to start a thread whose guard size is 0; it uses
/// the range only to recognise a stack overflow in its SIGSEGV handler). NOTE: threads other
/// than the main one have no real guard page: the guest cannot unmap a page of its heap.
///
/// # Safety
/// `size` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_attr_getguardsize(_attr: *const Attr, size: *mut usize) -> c_int {
    // SAFETY: C contract.
    unsafe { *size = 4096 };
    0
}

/// # Safety
/// `attr` was filled by [`pthread_getattr_np`]; the out pointers are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_attr_getstack(
    attr: *const Attr,
    addr: *mut *mut c_void,
    size: *mut usize,
) -> c_int {
    // SAFETY: C contract.
    unsafe {
        *addr = (*attr).stack_addr;
        *size = (*attr).stack_size;
    }
    0
}

/// The attributes of `thread`: its stack.
///
/// # Safety
/// `attr` is valid for writing a pthread_attr_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getattr_np(thread: usize, attr: *mut Attr) -> c_int {
    let Some((addr, size)) = sched::stack_of(thread) else { return errno::ESRCH };
    // SAFETY: C contract: `attr` is writable.
    unsafe { attr.write(Attr { stack_addr: addr as *mut c_void, stack_size: size }) };
    0
}

/// # Safety
/// `out` is writable; `attr` is null or initialised by this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    out: *mut usize,
    attr: *const Attr,
    start: StartFn,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: C contract: `attr` is null or initialised.
    let size = unsafe { attr.as_ref() }.map_or(DEFAULT_STACK, |a| a.stack_size);
    match sched::spawn(start, arg, size) {
        Ok(id) => {
            // SAFETY: C contract.
            unsafe { *out = id };
            0
        }
        Err(err) => err,
    }
}

/// # Safety
/// `result` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_join(thread: usize, result: *mut *mut c_void) -> c_int {
    match sched::join(thread) {
        Ok(value) => {
            if !result.is_null() {
                // SAFETY: C contract.
                unsafe { *result = value };
            }
            0
        }
        Err(err) => err,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_detach(thread: usize) -> c_int {
    sched::detach(thread).err().unwrap_or(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_exit(result: *mut c_void) -> ! {
    sched::exit_current(result)
}

/// Thread names are not kept (nothing in a unikernel shows them).
#[unsafe(no_mangle)]
pub extern "C" fn pthread_setname_np(_thread: usize, _name: *const c_char) -> c_int {
    0
}

/// One CPU.
///
/// # Safety
/// `mask` is writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sched_getaffinity(_pid: c_int, size: usize, mask: *mut u8) -> c_int {
    if size == 0 {
        return errno::fail(errno::EINVAL);
    }
    // SAFETY: C contract.
    unsafe {
        core::ptr::write_bytes(mask, 0, size);
        *mask = 1;
    }
    0
}

/// # Safety
/// `key` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_key_create(
    key: *mut u32,
    destructor: Option<KeyDestructor>,
) -> c_int {
    match sched::key_create(destructor) {
        // Keys are numbered from 1: std takes 0 for "not created yet".
        Ok(index) => {
            // SAFETY: C contract.
            unsafe { *key = index as u32 + 1 };
            0
        }
        Err(err) => err,
    }
}

/// The slot of `key`, if allocated.
fn key_index(key: u32) -> Option<usize> {
    (key as usize).checked_sub(1).filter(|index| sched::key_valid(*index))
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_key_delete(key: u32) -> c_int {
    match key_index(key) {
        Some(index) => sched::key_delete(index).err().unwrap_or(0),
        None => errno::EINVAL,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_setspecific(key: u32, value: *mut c_void) -> c_int {
    match (key_index(key), sched::current()) {
        (Some(index), Some(thread)) => {
            thread.keys[index] = value;
            0
        }
        _ => errno::EINVAL,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_getspecific(key: u32) -> *mut c_void {
    match (key_index(key), sched::current()) {
        (Some(index), Some(thread)) => thread.keys[index],
        _ => core::ptr::null_mut(),
    }
}
