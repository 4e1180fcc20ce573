//! Where things live in guest-physical memory (identity-mapped, so also guest-virtual).
//!
//! ```text
//! 0x0000_0000  null guard page: never mapped, so a null dereference faults
//! 0x0000_1000  GDT, TSS, IDT                  (monitor-owned, not accessible from ring 3)
//! 0x0000_2000  exception stubs                (monitor-owned, not accessible from ring 3)
//! 0x0000_3000  exception stack                (monitor-owned, not accessible from ring 3)
//! 0x0000_4000  BootInfo + argument block      (read-only for the guest)
//! 0x0000_6000  console buffer                 (read-write, not executable)
//! 0x0000_7000  hypercall doorbell             (mapped, write-only in effect: no memory behind it)
//! 0x0000_8000  page tables                    (monitor-owned, not accessible from ring 3)
//! 0x0010_0000  the image (IMAGE_BASE): text r-x, rodata r--, data/bss rw-
//! ...          heap: from the page after the image to the stack guard (rw-)
//! top - stack  guard page (never mapped), then the stack (rw-) up to the end of memory
//! ```

/// Size of a small page.
pub const PAGE_SIZE: u64 = 0x1000;
/// Address of the Global Descriptor Table (then the TSS, then the IDT, in the same page).
pub const GDT_ADDR: u64 = 0x1000;
/// Address of the 64-bit Task State Segment (holds the exception stack pointer).
pub const TSS_ADDR: u64 = 0x1080;
/// Address of the Interrupt Descriptor Table (32 exception vectors).
pub const IDT_ADDR: u64 = 0x1800;
/// Address of the exception stubs, [`FAULT_STUB_SIZE`] bytes per vector.
pub const FAULT_STUBS_ADDR: u64 = 0x2000;
/// Size of one exception stub.
pub const FAULT_STUB_SIZE: u64 = 32;
/// Top of the stack the CPU switches to on an exception (IST 1).
pub const FAULT_STACK_TOP: u64 = 0x4000;
/// Address of [`crate::BootInfo`]; the argument block follows it.
pub const BOOT_INFO_ADDR: u64 = 0x4000;
/// End of the boot-info region (BootInfo plus the argument block).
pub const BOOT_INFO_END: u64 = 0x6000;
/// Address of the [`crate::ConsoleBuffer`].
pub const CONSOLE_ADDR: u64 = 0x6000;
/// Address of the hypercall doorbell page (see [`crate::hypercall`]). The guest's page tables
/// map it writable from ring 3, but no memory backs it: every access leaves the guest.
pub const DOORBELL_ADDR: u64 = 0x7000;
/// Start of the page-table area.
pub const PAGE_TABLES_ADDR: u64 = 0x8000;
/// Everything below this address is the monitor's; images are linked at or above it.
pub const RESERVED_END: u64 = 0x10_0000;
/// Address at which guest images are linked (the linker script places `.text` here).
pub const IMAGE_BASE: u64 = RESERVED_END;
/// Size of the guest stack at the top of memory.
pub const STACK_SIZE: u64 = 512 * 1024;
/// Smallest guest memory the monitor accepts.
pub const MIN_MEM_SIZE: u64 = 4 << 20;
/// Largest guest memory the monitor accepts: addresses must fit the 32-bit hypercall argument.
pub const MAX_MEM_SIZE: u64 = 4 << 30;

/// The I/O port the exception stubs write the vector number to (`out imm8, al`).
pub const FAULT_PORT: u16 = 0xf4;
/// Where the CPU saves the faulting instruction's address on an exception: the IST stack is
/// reset for every exception, so the frame (SS, RSP, RFLAGS, CS, RIP, error code) has a fixed
/// place.
pub const FAULT_FRAME_RIP: u64 = FAULT_STACK_TOP - 40;
/// Where the CPU saves the error code, for exceptions that have one.
pub const FAULT_FRAME_ERROR_CODE: u64 = FAULT_STACK_TOP - 48;
