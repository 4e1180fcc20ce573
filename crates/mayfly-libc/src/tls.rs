//! Thread-local storage: x86-64 "variant II", local-exec. A static executable reaches its
//! thread-locals at fixed negative offsets from the thread pointer (`%fs` base), below a thread
//! control block whose first word points to itself. Each thread's block is a copy of the
//! `PT_TLS` image (`.tdata`, then zeroes for `.tbss`), whose bounds Mayfly's std linker script
//! names.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::arch::asm;

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

/// One thread's TLS block and control block.
pub struct Tls {
    /// The thread pointer (the control block's address).
    pub pointer: usize,
    base: *mut u8,
    layout: Layout,
}

impl Tls {
    /// A fresh block initialised from the TLS image, or `None` without memory.
    pub fn new() -> Option<Tls> {
        // The linker script defines these symbols; only their addresses are used.
        let (start, tdata_end, end, tls_align) = (
            &raw const __tls_start as usize,
            &raw const __tdata_end as usize,
            &raw const __tls_end as usize,
            (&raw const __tls_align as usize).max(1),
        );
        // The linker addresses a thread-local at `tp - offset + (its place in the image)`,
        // with `offset` the image size rounded up to the segment's alignment (not more).
        let offset = (end - start).next_multiple_of(tls_align);
        let align = tls_align.max(16);
        let size = offset + align + size_of::<ThreadControlBlock>();
        let layout = Layout::from_size_align(size, align).ok()?;
        // SAFETY: a non-zero-sized layout.
        let base = unsafe { alloc_zeroed(layout) };
        if base.is_null() {
            return None;
        }
        // The thread pointer: the first `align`-aligned address with `offset` bytes below it.
        let pointer = (base as usize + offset).next_multiple_of(align);
        // SAFETY: [pointer - offset, pointer + TCB) lies inside the allocation (`size` leaves
        // `align` bytes of slack for the rounding); the image is `tdata_end - start <= offset`
        // bytes of the loaded data segment; `pointer` is 16-aligned for the TCB.
        unsafe {
            core::ptr::copy_nonoverlapping(
                start as *const u8,
                (pointer - offset) as *mut u8,
                tdata_end - start,
            );
            let tcb = pointer as *mut ThreadControlBlock;
            (*tcb).this = tcb;
        }
        Some(Tls { pointer, base, layout })
    }

    /// Makes this the running thread's TLS.
    pub fn activate(&self) {
        // SAFETY: `wrfsbase` only sets the FS base (the monitor enables it in ring 3 with
        // CR4.FSGSBASE); `pointer` is a live control block with its TLS block below it.
        unsafe { asm!("wrfsbase {}", in(reg) self.pointer, options(nostack, preserves_flags)) };
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the thread is gone (never the running one).
        unsafe { dealloc(self.base, self.layout) };
    }
}
