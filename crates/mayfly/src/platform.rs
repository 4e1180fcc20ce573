//! Everything in the library OS that needs `unsafe`, in one place: the entry point, the
//! hypercall instruction, reads of the boot info and the console page, the time-stamp counter,
//! the heap's memory, the manifest note, and the `mem*` functions the compiler calls.
//!
//! These are primitives only: what happens at startup, and in which order, is the safe
//! `startup` module's. The rest of the crate is safe code on top of the functions below; this
//! module depends on no other module of the crate but `startup` (the entry point hands over to
//! it) and the `DEVICES` of the manifest.
#![allow(unsafe_code)]

use core::arch::asm;
use core::mem::size_of;
use core::sync::atomic::{AtomicUsize, Ordering};
use mayfly_abi::console::{CONSOLE_CAPACITY, CONSOLE_DATA_OFFSET};
use mayfly_abi::manifest::{self, Manifest};
use mayfly_abi::{ABI_VERSION, BootInfo, ExitArgs, Hypercall, WaitArgs};
use spinning_top::RawSpinlock;
use talc::TalcLock;
use talc::source::Manual;

/// The manifest note: ABI version and the devices this image needs.
#[repr(C, align(4))]
struct ManifestNote {
    name_len: u32,
    desc_len: u32,
    kind: u32,
    name: [u8; 8],
    desc: Manifest,
}

#[used]
#[unsafe(link_section = ".note.mayfly")]
static MANIFEST_NOTE: ManifestNote = ManifestNote {
    name_len: manifest::NOTE_NAME_LEN,
    desc_len: manifest::MANIFEST_SIZE,
    kind: manifest::NOTE_TYPE,
    name: *manifest::NOTE_NAME,
    desc: Manifest { abi_version: ABI_VERSION, devices: crate::DEVICES },
};

#[global_allocator]
static HEAP: TalcLock<RawSpinlock, Manual> = TalcLock::new(Manual);

/// The boot info, copied once at entry (the monitor's page is read-only for us anyway).
static BOOT: spinning_top::Spinlock<Option<BootInfo>> = spinning_top::Spinlock::new(None);
/// Address of the console page (kept apart from `BOOT` so a panic can always print).
static CONSOLE: AtomicUsize = AtomicUsize::new(0);
/// The heap was handed to the allocator (it must be claimed once only).
/// The boot info's `generation` this guest last took (see [`after_wait`]).
static GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static HEAP_CLAIMED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The exit status of a panic (Rust's convention), also used when unwinding is attempted.
pub(crate) const PANIC_STATUS: i32 = 101;

#[cfg(not(feature = "libc-host"))]
unsafe extern "Rust" {
    /// The application's main, defined by [`crate::main!`].
    safe fn __mayfly_main() -> i32;
}

/// The entry point. The monitor jumps here in ring 3 with `rdi` = the boot info and `rsp` just
/// below the top of the stack (aligned as after a `call`).
#[cfg(not(feature = "libc-host"))]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.mayfly_start")]
extern "C" fn _start(boot: *const BootInfo) -> ! {
    // SAFETY: the monitor passes the address of an initialised, readable BootInfo.
    unsafe { init(boot) };
    let status = __mayfly_main();
    crate::process::exit(status)
}

/// Sets up the library OS from the boot info: clocks, heap, console, NIC rings, logger. Called
/// once, first thing, by `_start` (Mayfly's own, or mayfly-libc's for std programs).
///
/// # Safety
/// `boot` is the address of the initialised boot info the monitor passed to the entry point.
pub unsafe fn init(boot: *const BootInfo) {
    // SAFETY: the monitor passes the address of an initialised, readable BootInfo (ABI contract,
    // `mayfly_abi::boot`); it is read once, by value.
    let info = unsafe { core::ptr::read_volatile(boot) };
    crate::startup::bring_up(info)
}

/// Keeps the boot info (for [`boot_info`]) and the console page's address.
pub(crate) fn keep_boot_info(info: BootInfo) {
    *BOOT.lock() = Some(info);
    GENERATION.store(info.generation, Ordering::Relaxed);
    CONSOLE.store(info.console as usize, Ordering::Relaxed);
}

/// Hands the heap the boot info names to the allocator (once; later calls do nothing).
pub(crate) fn claim_heap() {
    let info = boot_info();
    let heap_len = info.heap_end.saturating_sub(info.heap_start) as usize;
    if heap_len == 0 || HEAP_CLAIMED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: [heap_start, heap_end) is the boot info's heap: guest memory that the monitor
    // maps read-write for the guest and that nothing else uses (it lies between the image and
    // the stack guard); `HEAP_CLAIMED` makes sure it is claimed once.
    unsafe {
        HEAP.lock().claim(info.heap_start as *mut u8, heap_len);
    }
}

/// A copy of the boot info.
pub fn boot_info() -> BootInfo {
    BOOT.lock().unwrap_or_default()
}

/// The argument block (arguments then environment, NUL-terminated each).
pub fn args_block() -> &'static [u8] {
    let info = boot_info();
    if info.args == 0 || info.args_len as usize > mayfly_abi::boot::ARGS_MAX {
        return &[];
    }
    // SAFETY: the monitor placed `args_len` bytes at `args` in the read-only boot-info region,
    // which stays mapped and unchanged for the guest's whole life; the length was bounded above.
    unsafe { core::slice::from_raw_parts(info.args as *const u8, info.args_len as usize) }
}

/// Reads the time-stamp counter (native at ring 3).
pub fn read_tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the counter into eax/edx; it touches no memory.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Makes hypercall `call` with its argument structure at `args` (or none).
///
/// # Safety
/// `args` is 0 or the address of the argument structure of `call`, valid for reads and writes.
unsafe fn hypercall(call: Hypercall, args: usize) {
    // SAFETY: the caller guarantees `args`. The doorbell is mapped but backed by no memory: the
    // store exits to the monitor, which reads and writes only that structure (no `nomem`: the
    // compiler must assume the asm reads and writes memory). One plain `mov` so that the
    // hypervisor's instruction decoder sees the simplest form.
    unsafe {
        asm!(
            "mov dword ptr [{bell}], {args:e}",
            bell = in(reg) call.doorbell(),
            args = in(reg) args as u32,
            options(nostack),
        )
    };
}

/// Serves a batch of volume requests in one exit; returns the batch's status (each request's
/// own is written into it).
#[cfg(feature = "block")]
pub fn block(requests: &mut [mayfly_abi::block::BlockRequest]) -> i32 {
    let mut args = mayfly_abi::block::BlockArgs {
        requests: requests.as_mut_ptr() as u64,
        count: u32::try_from(requests.len()).unwrap_or(u32::MAX),
        status: 0,
    };
    // SAFETY: `args` is a live BlockArgs on our stack naming `requests`, a live array the
    // monitor writes only the `status` fields of; each request's buffer is the caller's live
    // slice of the length it names (see `crate::block`), written by the monitor only for reads.
    unsafe { hypercall(Hypercall::Block, &mut args as *mut mayfly_abi::block::BlockArgs as usize) };
    // SAFETY: the monitor wrote the OUT field during the hypercall; read it afresh.
    unsafe { core::ptr::read_volatile(&args.status) }
}

/// Stops the guest for good.
pub fn exit(status: i32, reason: mayfly_abi::ExitReason, message: &[u8]) -> ! {
    let args = ExitArgs {
        status,
        reason: reason as u32,
        message: message.as_ptr() as u64,
        message_len: message.len().min(u32::MAX as usize) as u32,
        reserved: 0,
    };
    // SAFETY: `args` is a live ExitArgs on our stack.
    unsafe { hypercall(Hypercall::Exit, &args as *const ExitArgs as usize) };
    // The monitor never resumes a guest after Exit; if it did, spin rather than return.
    loop {
        core::hint::spin_loop();
    }
}

/// Blocks until I/O is ready (unless `timer_only`) or `timeout_ns` has passed; returns the
/// ready-device mask.
pub fn wait(timeout_ns: u64, timer_only: bool) -> u64 {
    let flags = if timer_only { mayfly_abi::hypercall::WAIT_TIMER_ONLY } else { 0 };
    let mut args = WaitArgs { timeout_ns, flags, ..WaitArgs::default() };
    // SAFETY: `args` is a live WaitArgs on our stack.
    unsafe { hypercall(Hypercall::Wait, &mut args as *mut WaitArgs as usize) };
    after_wait();
    // SAFETY: the monitor wrote the OUT fields during the hypercall; read them afresh.
    unsafe { core::ptr::read_volatile(&args.ready) }
}

/// After every `Wait`: if this guest is now a clone resumed from a snapshot (the boot info's
/// `generation` changed under it), take the clone's own entropy and wall clock before anything
/// else runs (see `docs/design.md`, "Snapshots and clones").
fn after_wait() {
    let addr =
        mayfly_abi::layout::BOOT_INFO_ADDR as usize + core::mem::offset_of!(BootInfo, generation);
    // SAFETY: the boot-info page is mapped readable for the guest's whole life (ABI contract,
    // `mayfly_abi::boot`) and `generation` is an aligned u64 in it; the monitor rewrites it only
    // while the guest is stopped, so a volatile read sees a whole value.
    let generation = unsafe { core::ptr::read_volatile(addr as *const u64) };
    if generation == GENERATION.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: as above, for the whole (plain-data, any bit pattern valid) BootInfo.
    let info =
        unsafe { core::ptr::read_volatile(mayfly_abi::layout::BOOT_INFO_ADDR as *const BootInfo) };
    crate::startup::wake_as_clone(info);
}

/// Appends `bytes` to the console buffer, asking the monitor to drain it whenever it is full.
pub fn console_write(mut bytes: &[u8]) {
    let base = CONSOLE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    let len_ptr = base as *mut u32;
    let data = (base + CONSOLE_DATA_OFFSET as usize) as *mut u8;
    while !bytes.is_empty() {
        // SAFETY: `base` is the console page the monitor maps read-write for the guest; the
        // monitor only touches it while the guest is stopped in an exit.
        let used = (unsafe { core::ptr::read_volatile(len_ptr) } as usize).min(CONSOLE_CAPACITY);
        let room = CONSOLE_CAPACITY - used;
        if room == 0 {
            // SAFETY: ConsoleFlush takes no argument.
            unsafe { hypercall(Hypercall::ConsoleFlush, 0) };
            continue;
        }
        let n = room.min(bytes.len());
        // SAFETY: `used + n <= CONSOLE_CAPACITY`, so the copy stays inside the data array; the
        // source is a live slice that cannot overlap the console page.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), data.add(used), n);
            core::ptr::write_volatile(len_ptr, (used + n) as u32);
        }
        bytes = bytes.get(n..).unwrap_or_default();
    }
}

const _: () = assert!(size_of::<ManifestNote>() == 12 + 8 + 8);

/// Unwinding is never used (`panic = "abort"`), but the precompiled `alloc` refers to this.
/// (A std program has std's own.)
#[cfg(not(feature = "libc-host"))]
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// Landing pads inlined from the precompiled `alloc` refer to this; with `panic = "abort"` no
/// unwinding ever starts, so it is never reached.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    exit(PANIC_STATUS, mayfly_abi::ExitReason::Panic, b"unwinding is not supported")
}

// The memory functions the compiler emits calls to. Written with string instructions so that
// the compiler cannot turn them back into calls to themselves.

/// # Safety
/// Standard C `memcpy` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: C contract: `dst` and `src` are valid for `n` bytes and do not overlap.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C `memmove` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // Forward copy is safe: dst is below src or past the end of the source.
        // SAFETY: C contract: both valid for `n` bytes.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // Overlap with dst above src: copy backwards from the last byte.
        // SAFETY: C contract: both valid for `n` bytes (n > 0 here); the direction flag is
        // restored before returning.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _,
                 inout("rsi") src.add(n - 1) => _, options(nostack));
        }
    }
    dst
}

/// # Safety
/// Standard C `memset` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: C contract: `dst` is valid for `n` bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") value as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C `memcmp` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: C contract: both valid for `n` bytes. Volatile reads keep the compiler from
        // turning this loop into a call to `memcmp`.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard C `bcmp` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// The NIC's rings (see `mayfly_abi::net`): the guest produces on TX and consumes on RX. The
/// monitor touches them only while the guest is stopped in an exit, so plain volatile accesses
/// suffice.
#[cfg(feature = "net")]
pub mod nic {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use mayfly_abi::net::{
        FRAME_MAX, RING_BYTES, RING_SLOTS, SLOT_LEN_OFFSET, frame_addr, head_addr, slot_addr,
        tail_addr,
    };

    /// Address of the RX ring (TX follows), or 0 without a NIC.
    static RINGS: AtomicUsize = AtomicUsize::new(0);

    /// Takes the rings the boot info names, if the monitor attached a NIC.
    pub(crate) fn attach() {
        let info = super::boot_info();
        if info.devices & (1 << mayfly_abi::manifest::Device::Net as u64) != 0 {
            RINGS.store(info.net.rings as usize, Ordering::Relaxed);
        }
    }

    fn ring(tx: bool) -> Option<u64> {
        let base = RINGS.load(Ordering::Relaxed) as u64;
        (base != 0).then(|| if tx { base + RING_BYTES } else { base })
    }

    fn load(addr: u64) -> u32 {
        // SAFETY: `addr` is a counter or length word inside the rings, which the monitor maps
        // read-write for the guest for its whole life (BootInfo.net).
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    fn store(addr: u64, value: u32) {
        // SAFETY: as in `load`.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
    }

    /// Whether a NIC is attached.
    pub fn attached() -> bool {
        ring(false).is_some()
    }

    /// Frames waiting in RX.
    pub fn rx_pending() -> u32 {
        ring(false)
            .map_or(0, |rx| load(head_addr(rx)).wrapping_sub(load(tail_addr(rx))).min(RING_SLOTS))
    }

    /// Frames queued on TX that the monitor has not taken yet.
    pub fn tx_pending() -> u32 {
        ring(true)
            .map_or(0, |tx| load(head_addr(tx)).wrapping_sub(load(tail_addr(tx))).min(RING_SLOTS))
    }

    /// Hands the next received frame to `f` (an empty frame if none is waiting, which the
    /// network stack drops).
    pub fn rx_consume<R>(f: impl FnOnce(&[u8]) -> R) -> R {
        let Some(rx) = ring(false).filter(|_| rx_pending() > 0) else { return f(&[]) };
        let tail = load(tail_addr(rx));
        let slot = slot_addr(rx, tail);
        let len = (load(slot + SLOT_LEN_OFFSET) as usize).min(FRAME_MAX);
        // SAFETY: the slot's frame area is `FRAME_MAX` bytes inside the RX ring and `len` is
        // clamped to it; the monitor does not write it while the guest runs, and the slice does
        // not outlive `f`.
        let frame = unsafe { core::slice::from_raw_parts(frame_addr(slot) as *const u8, len) };
        let result = f(frame);
        store(tail_addr(rx), tail.wrapping_add(1));
        result
    }

    /// Whether TX has a free slot.
    pub fn tx_has_room() -> bool {
        ring(true).is_some() && tx_pending() < RING_SLOTS
    }

    /// Lets `f` fill a `len`-byte frame in the next TX slot and queues it. If TX is full or
    /// `len` too large (callers check [`tx_has_room`] first), `f` fills scratch space and the
    /// frame is dropped, as on a congested wire.
    pub fn tx_produce<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let Some(tx) = ring(true).filter(|_| tx_has_room() && len <= FRAME_MAX) else {
            return f(&mut alloc::vec![0; len]);
        };
        let head = load(head_addr(tx));
        let slot = slot_addr(tx, head);
        // SAFETY: the slot's frame area is `FRAME_MAX >= len` bytes inside the TX ring, which
        // the monitor reads only during exits; the slice does not outlive `f`.
        let frame = unsafe { core::slice::from_raw_parts_mut(frame_addr(slot) as *mut u8, len) };
        let result = f(frame);
        // `len <= FRAME_MAX` fits a u32.
        store(slot + SLOT_LEN_OFFSET, len as u32);
        store(head_addr(tx), head.wrapping_add(1));
        result
    }
}

/// A global for the guest's single thread of execution: interior mutability without locks.
pub(crate) struct Global<T>(core::cell::RefCell<T>);

// SAFETY: a Mayfly guest has exactly one thread of execution and no interrupt or signal
// handlers (exceptions stop the guest), so a `Global` is never accessed concurrently; the
// `RefCell` still catches re-entrant access within that one thread.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// A global holding `value`.
    pub(crate) const fn new(value: T) -> Global<T> {
        Global(core::cell::RefCell::new(value))
    }

    /// Runs `f` with the value. Must not be re-entered from within `f`.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}
