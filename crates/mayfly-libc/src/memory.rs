//! The heap: the `malloc` family and anonymous `mmap`, over the library OS's allocator.
//!
//! Each block carries a 16-byte header just below the pointer handed out (its allocation's size
//! and alignment), since `free` is not told the size. `mmap` gives page-aligned zeroed memory from
//! the same heap; `mprotect` cannot change rights (the guest has no page tables of its own) and
//! succeeds without effect, which only matters for std's guard pages.

use crate::errno;
use alloc::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use core::ffi::{c_int, c_void};

const HEADER: usize = 16;
const PAGE: usize = 4096;

/// Allocates `size` bytes aligned to `align` (a power of two), zeroed if asked.
fn allocate(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    let align = align.max(HEADER);
    let Some(total) = size.checked_add(align) else { return out_of_memory() };
    let Ok(layout) = Layout::from_size_align(total, align) else { return out_of_memory() };
    // SAFETY: `layout` has a non-zero size.
    let base = unsafe { if zeroed { alloc_zeroed(layout) } else { alloc(layout) } };
    if base.is_null() {
        return out_of_memory();
    }
    // SAFETY: `base` has `align >= HEADER` bytes before the user's block; the header occupies
    // the last 16 of them and is 8-aligned.
    unsafe {
        let user = base.add(align);
        user.cast::<usize>().sub(2).write(total);
        user.cast::<usize>().sub(1).write(align);
        user.cast()
    }
}

fn out_of_memory() -> *mut c_void {
    errno::set(errno::ENOMEM);
    core::ptr::null_mut()
}

/// The layout and base of block `ptr`.
///
/// # Safety
/// `ptr` came from [`allocate`] and was not freed.
unsafe fn block(ptr: *mut c_void) -> (*mut u8, Layout) {
    // SAFETY: the caller's contract; `allocate` wrote the header.
    unsafe {
        let total = ptr.cast::<usize>().sub(2).read();
        let align = ptr.cast::<usize>().sub(1).read();
        (ptr.cast::<u8>().sub(align), Layout::from_size_align_unchecked(total, align))
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    allocate(size, HEADER, false)
}

#[unsafe(no_mangle)]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        Some(bytes) => allocate(bytes, HEADER, true),
        None => out_of_memory(),
    }
}

/// # Safety
/// `ptr` is null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if !ptr.is_null() {
        // SAFETY: C contract: a live block of ours.
        let (base, layout) = unsafe { block(ptr) };
        // SAFETY: `base` and `layout` are the ones it was allocated with.
        unsafe { dealloc(base, layout) };
    }
}

/// # Safety
/// `ptr` is null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    // SAFETY: C contract: a live block of ours.
    let (_, layout) = unsafe { block(ptr) };
    let old = layout.size() - layout.align();
    let new = allocate(size, layout.align(), false);
    if !new.is_null() {
        // SAFETY: both blocks are live and distinct; copy what both can hold.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new.cast::<u8>(), old.min(size));
            free(ptr);
        }
    }
    new
}

/// # Safety
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<usize>()) {
        return errno::EINVAL;
    }
    let ptr = allocate(size, align, false);
    if ptr.is_null() {
        return errno::ENOMEM;
    }
    // SAFETY: C contract: `out` is writable.
    unsafe { *out = ptr };
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        errno::set(errno::EINVAL);
        return core::ptr::null_mut();
    }
    allocate(size, align, false)
}

const MAP_FAILED: *mut c_void = usize::MAX as *mut c_void;
const MAP_FIXED: c_int = 0x10;
const MAP_ANONYMOUS: c_int = 0x20;

/// Anonymous private mappings only (std's thread stacks and signal stacks, allocators' arenas).
#[unsafe(no_mangle)]
pub extern "C" fn mmap64(
    _addr: *mut c_void,
    len: usize,
    _prot: c_int,
    flags: c_int,
    _fd: c_int,
    _offset: i64,
) -> *mut c_void {
    if flags & MAP_ANONYMOUS == 0 {
        return unavailable!("mmap of a file", ENOSYS, MAP_FAILED);
    }
    if flags & MAP_FIXED != 0 || len == 0 {
        errno::set(errno::EINVAL);
        return MAP_FAILED;
    }
    let Ok(layout) = Layout::from_size_align(len.next_multiple_of(PAGE), PAGE) else {
        errno::set(errno::ENOMEM);
        return MAP_FAILED;
    };
    // SAFETY: non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        errno::set(errno::ENOMEM);
        return MAP_FAILED;
    }
    ptr.cast()
}

/// Unmaps a whole mapping made by [`mmap64`] (partial unmapping is not supported).
///
/// # Safety
/// `addr`/`len` are exactly a live mapping from [`mmap64`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let Ok(layout) = Layout::from_size_align(len.next_multiple_of(PAGE), PAGE) else {
        return errno::fail(errno::EINVAL);
    };
    if len == 0 || !(addr as usize).is_multiple_of(PAGE) {
        return errno::fail(errno::EINVAL);
    }
    // SAFETY: C contract, restricted to whole mappings: the layout is the one mmap used.
    unsafe { dealloc(addr.cast(), layout) };
    0
}

/// Accepted without effect: the library OS keeps no per-page rights of its own.
#[unsafe(no_mangle)]
pub extern "C" fn mprotect(_addr: *mut c_void, _len: usize, _prot: c_int) -> c_int {
    0
}
