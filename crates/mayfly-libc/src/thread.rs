//! Threads: for now only the main thread, with its thread-local storage, and the `pthread`
//! queries std makes about it.
//!
//! Thread-local storage is x86-64 "variant II", local-exec: a static executable reaches its
//! thread-locals at fixed negative offsets from the thread pointer (`%fs` base), below a thread
//! control block whose first word points to itself. The initial image is the `PT_TLS` segment,
//! whose bounds Mayfly's std linker script names.

use crate::errno;
use alloc::alloc::{Layout, alloc_zeroed};
use core::arch::asm;
use core::ffi::{c_int, c_void};

unsafe extern "C" {
    // From the linker script: the TLS image (.tdata then .tbss) and its alignment (the value
    // of `__tls_align` is its address).
    static __tls_start: u8;
    static __tdata_end: u8;
    static __tls_end: u8;
    static __tls_align: u8;
}

/// The thread control block: what `%fs:0` points to.
#[repr(C)]
struct ThreadControlBlock {
    /// Itself (the ABI requires `%fs:0` to hold the thread pointer).
    this: *mut ThreadControlBlock,
}

/// A pthread_attr_t as this library fills it (opaque to std; 56 bytes in the C ABI).
#[repr(C)]
pub struct Attr {
    stack_addr: *mut c_void,
    stack_size: usize,
}

const _: () = assert!(size_of::<Attr>() <= 56);

/// The main thread's id for `pthread_self` (one thread).
const MAIN_THREAD: usize = 1;

/// Builds the main thread's TLS block and points `%fs` at it.
pub(crate) fn init_main_thread() {
    // The linker script defines these symbols; only their addresses are used.
    let (start, tdata_end, end, align) = (
        &raw const __tls_start as usize,
        &raw const __tdata_end as usize,
        &raw const __tls_end as usize,
        (&raw const __tls_align as usize).max(16),
    );
    let memsz = end - start;
    let block = memsz.next_multiple_of(align);
    let Ok(layout) = Layout::from_size_align(block + size_of::<ThreadControlBlock>(), align) else {
        mayfly::libc_host::exit(134, mayfly::abi::ExitReason::Panic, b"bad TLS segment");
    };
    // SAFETY: a non-zero-sized layout.
    let base = unsafe { alloc_zeroed(layout) };
    if base.is_null() {
        mayfly::libc_host::exit(134, mayfly::abi::ExitReason::Panic, b"no memory for TLS");
    }
    // SAFETY: `base` has `block + TCB` bytes; the TLS image goes at its start (the thread
    // pointer minus `block`, where the linker placed offsets), the TCB right after.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, base, tdata_end - start);
        let tcb = base.add(block).cast::<ThreadControlBlock>();
        (*tcb).this = tcb;
        set_thread_pointer(tcb as usize);
    }
}

/// Points `%fs` at `tp` (the monitor enables `wrfsbase` in ring 3: CR4.FSGSBASE).
///
/// # Safety
/// `tp` is a thread control block with its TLS block below it.
unsafe fn set_thread_pointer(tp: usize) {
    // SAFETY: `wrfsbase` only sets the FS base; the caller vouches for what is there.
    unsafe { asm!("wrfsbase {}", in(reg) tp, options(nostack, preserves_flags)) };
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_self() -> usize {
    MAIN_THREAD
}

#[unsafe(no_mangle)]
pub extern "C" fn gettid() -> c_int {
    MAIN_THREAD as c_int
}

/// The attributes of `thread`: its stack (the main thread's is where the monitor put it).
///
/// # Safety
/// `attr` is valid for writing a pthread_attr_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getattr_np(thread: usize, attr: *mut Attr) -> c_int {
    if thread != MAIN_THREAD {
        return errno::ESRCH;
    }
    let info = mayfly::libc_host::boot_info();
    let size = mayfly::abi::layout::STACK_SIZE as usize;
    let top = info.stack_top as usize;
    // SAFETY: C contract: `attr` is writable.
    unsafe {
        attr.write(Attr { stack_addr: top.saturating_sub(size) as *mut c_void, stack_size: size })
    };
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

#[unsafe(no_mangle)]
pub extern "C" fn pthread_attr_destroy(_attr: *mut Attr) -> c_int {
    0
}

/// Most thread-specific keys (glibc's PTHREAD_KEYS_MAX is 1024; std needs a handful).
const KEYS_MAX: usize = 128;

/// Thread-specific data of the one thread: per key, whether it is allocated, its destructor
/// and its value. Keys are numbered from 1 (std treats key 0 as "not yet created").
struct Keys {
    used: [bool; KEYS_MAX],
    values: [*mut c_void; KEYS_MAX],
}

struct KeyTable(core::cell::UnsafeCell<Keys>);

// SAFETY: one thread of execution and no preemption: the table is never accessed concurrently.
unsafe impl Sync for KeyTable {}

static KEYS: KeyTable = KeyTable(core::cell::UnsafeCell::new(Keys {
    used: [false; KEYS_MAX],
    values: [core::ptr::null_mut(); KEYS_MAX],
}));

fn keys() -> &'static mut Keys {
    // SAFETY: see `Sync` above; no caller holds the reference across another call.
    unsafe { &mut *KEYS.0.get() }
}

/// The slot of `key`, if allocated.
fn slot(key: u32) -> Option<usize> {
    let index = (key as usize).checked_sub(1)?;
    keys().used.get(index).copied().unwrap_or(false).then_some(index)
}

/// # Safety
/// `key` is writable. (Destructors are not run: the one thread ends only when the program
/// does, as glibc's keys for the main thread.)
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_key_create(key: *mut u32, _destructor: usize) -> c_int {
    let table = keys();
    let Some(index) = table.used.iter().position(|used| !used) else { return errno::EAGAIN };
    table.used[index] = true;
    table.values[index] = core::ptr::null_mut();
    // SAFETY: C contract: `key` is writable.
    unsafe { *key = index as u32 + 1 };
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_key_delete(key: u32) -> c_int {
    match slot(key) {
        Some(index) => {
            keys().used[index] = false;
            0
        }
        None => errno::EINVAL,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_setspecific(key: u32, value: *mut c_void) -> c_int {
    match slot(key) {
        Some(index) => {
            keys().values[index] = value;
            0
        }
        None => errno::EINVAL,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_getspecific(key: u32) -> *mut c_void {
    slot(key).map_or(core::ptr::null_mut(), |index| keys().values[index])
}
