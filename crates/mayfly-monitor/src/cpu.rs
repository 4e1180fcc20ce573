//! The CPU state a guest starts in: descriptor tables, exception stubs, and registers.
//!
//! The guest runs in 64-bit mode at ring 3 (on PVM, ring 0 is emulated and slow; ring 3 is
//! native), with IOPL 0 and no I/O permission bitmap: it may use no I/O port (hypercalls are
//! stores to the doorbell page, see `mayfly_abi::hypercall`). Exceptions vector through an
//! IDT to monitor-owned stubs, on a monitor-owned stack (IST 1), that report the vector on
//! [`layout::FAULT_PORT`]; the monitor then reads the exception frame and stops the guest.

// Every cast in this module converts a layout constant or a vector number (< 32) that is known
// to fit its destination.
#![allow(clippy::cast_possible_truncation)]

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};
use mayfly_abi::layout;

/// Selector of the ring-0 code segment (exception stubs).
const KERNEL_CODE: u16 = 0x08;
/// Selector of the ring-3 data segment, with RPL 3.
const USER_DATA: u16 = 0x18 | 3;
/// Selector of the ring-3 64-bit code segment, with RPL 3.
const USER_CODE: u16 = 0x20 | 3;
/// Selector of the TSS.
const TSS: u16 = 0x28;
/// Number of exception vectors with a stub.
pub const EXCEPTION_VECTORS: u64 = 32;
/// Size of the TSS.
const TSS_SIZE: u64 = 0x68;
/// TSS limit: the TSS alone. Its I/O map base points past the limit, so there is no I/O
/// permission bitmap and every port is denied to ring 3.
const TSS_LIMIT: u64 = TSS_SIZE - 1;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// Lets ring 3 use `wrfsbase`/`rdfsbase`: std programs' thread pointer (`%fs` base, for
/// thread-local storage) is set this way by mayfly-libc, at ~6 ns a switch and no exit. Set
/// only if the host CPU has the instructions (CPUID.7.0:EBX bit 0), as KVM requires.
const CR4_FSGSBASE: u64 = 1 << 16;

/// CR4.FSGSBASE if the host CPU supports it, else nothing.
fn cr4_fsgsbase() -> u64 {
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    if leaf7.ebx & 1 != 0 { CR4_FSGSBASE } else { 0 }
}
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const RFLAGS_RESERVED: u64 = 1 << 1;

/// The GDT, TSS and IDT, laid out as one page image starting at [`layout::GDT_ADDR`].
pub fn descriptor_page() -> [u8; 4096] {
    let mut page = [0u8; 4096];
    let tss_base = layout::TSS_ADDR;
    let gdt: [u64; 7] = [
        0,
        0x00af_9b00_0000_ffff, // ring-0 64-bit code, accessed
        0x00cf_9300_0000_ffff, // ring-0 data, accessed
        0x00cf_f300_0000_ffff, // ring-3 data, accessed
        0x00af_fb00_0000_ffff, // ring-3 64-bit code, accessed
        // 64-bit TSS (busy, as loaded through KVM_SET_SREGS), low then high half.
        TSS_LIMIT | (tss_base & 0x00ff_ffff) << 16 | 0x8b << 40 | ((tss_base >> 24) & 0xff) << 56,
        tss_base >> 32,
    ];
    put_u64s(&mut page, 0, &gdt);

    // TSS: RSP0 and IST1 both point at the exception stack; the I/O map base lies past the
    // limit (no bitmap: ring 3 may use no port).
    let tss = (layout::TSS_ADDR - layout::GDT_ADDR) as usize;
    put(&mut page, tss + 4, &layout::FAULT_STACK_TOP.to_le_bytes());
    put(&mut page, tss + 0x24, &layout::FAULT_STACK_TOP.to_le_bytes());
    put(&mut page, tss + 0x66, &(TSS_SIZE as u16).to_le_bytes());

    let idt = (layout::IDT_ADDR - layout::GDT_ADDR) as usize;
    for vector in 0..EXCEPTION_VECTORS {
        let handler = layout::FAULT_STUBS_ADDR + vector * layout::FAULT_STUB_SIZE;
        let low = (handler & 0xffff)
            | u64::from(KERNEL_CODE) << 16
            | 1 << 32 // IST 1
            | 0x8e << 40 // present, DPL 0, 64-bit interrupt gate
            | ((handler >> 16) & 0xffff) << 48;
        let high = handler >> 32;
        put_u64s(&mut page, idt + vector as usize * 16, &[low, high]);
    }
    page
}

/// The exception stubs: for vector `v`, `mov al, v; out FAULT_PORT, al; jmp $` (the monitor
/// reads the exception frame and stops the guest; it never resumes it).
pub fn fault_stubs() -> [u8; 4096] {
    let mut page = [0xccu8; 4096];
    for vector in 0..EXCEPTION_VECTORS {
        let at = (vector * layout::FAULT_STUB_SIZE) as usize;
        // `vector < 32` and `FAULT_PORT < 256`: both fit a byte.
        let stub = [0xb0, vector as u8, 0xe6, layout::FAULT_PORT as u8, 0xeb, 0xfe];
        put(&mut page, at, &stub);
    }
    page
}

fn put(page: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = page.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn put_u64s(page: &mut [u8], at: usize, values: &[u64]) {
    for (i, value) in values.iter().enumerate() {
        put(page, at + i * 8, &value.to_le_bytes());
    }
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: (selector & 3) as u8,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Sets the special registers for 64-bit ring-3 execution with paging rooted at `cr3`.
pub fn configure_sregs(sregs: &mut kvm_sregs, cr3: u64) {
    let data = segment(USER_DATA, false);
    sregs.cs = segment(USER_CODE, true);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: layout::TSS_ADDR,
        limit: TSS_LIMIT as u32,
        selector: TSS,
        type_: 0xb,
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.ldt = kvm_segment { unusable: 1, ..Default::default() };
    sregs.gdt = kvm_dtable { base: layout::GDT_ADDR, limit: 7 * 8 - 1, ..Default::default() };
    sregs.idt = kvm_dtable {
        base: layout::IDT_ADDR,
        limit: (EXCEPTION_VECTORS * 16 - 1) as u16,
        ..Default::default()
    };
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | cr4_fsgsbase();
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
}

/// The general registers at entry: `rip` = entry, `rsp` just below the stack top, `rdi` = the
/// boot info, IOPL 0, interrupts off.
pub fn entry_regs(entry: u64, stack_top: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        // As if `_start` had been called: rsp + 8 is 16-byte aligned.
        rsp: stack_top - 8,
        rdi: layout::BOOT_INFO_ADDR,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

/// Whether the CPU pushes an error code for exception `vector`.
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The name of exception `vector`.
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug exception",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid instruction",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        20 => "virtualization exception",
        21 => "control protection exception",
        _ => "reserved exception",
    }
}
