//! The hostile guest: misuses the guest/monitor interface on purpose, one way per first
//! argument, so the tests can check that the monitor survives, reports, and stops the guest.
#![no_std]
#![no_main]

use mayfly::abi::{Hypercall, layout};
use mayfly::prelude::*;

mayfly::main!(main);

/// A 32-bit store of any value at any address: the raw hypercall instruction.
fn ring(addr: u64, value: u32) {
    // SAFETY: none needed for the guest's own state; this is the attack under test.
    unsafe { core::arch::asm!("mov dword ptr [{}], {:e}", in(reg) addr, in(reg) value) };
}

/// `out dx, eax` with any port and value (ring 3 may use no port).
fn out32(port: u16, value: u32) {
    // SAFETY: as above.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") value) };
}

fn write_to(addr: usize) {
    // A volatile write the compiler cannot drop.
    unsafe { (addr as *mut u64).write_volatile(0x4141_4141_4141_4141) };
}

/// One malformed batch of volume requests, rung raw (bypassing the library's checks).
fn block_attack(mode: &str) -> bool {
    use mayfly::abi::block::{BlockArgs, BlockRequest};
    let sectors = mayfly::env::memory().block.sectors;
    let mut buf = vec![0u8; 4096];
    let mut request = BlockRequest {
        op: 0,
        sectors: 8,
        sector: 0,
        buf: buf.as_mut_ptr() as u64,
        ..BlockRequest::default()
    };
    let mut count = 1;
    match mode {
        "block-past-the-end" => request.sector = sectors - 4,
        "block-sector-overflow" => request.sector = u64::MAX - 2,
        "block-buffer-outside-memory" => request.buf = 0xffff_f000,
        "block-read-into-text" => request.buf = main as fn() -> i32 as usize as u64,
        "block-bad-op" => request.op = 9,
        "block-huge-request" => request.sectors = u32::MAX,
        "block-huge-batch" => count = 100_000,
        _ => return false,
    }
    let mut args =
        BlockArgs { requests: &mut request as *mut BlockRequest as u64, count, status: 0 };
    ring(Hypercall::Block.doorbell(), &mut args as *mut BlockArgs as u32);
    println!("hostile: the monitor served a malformed block batch: status {}", args.status);
    core::hint::black_box(&buf);
    true
}

fn main() -> i32 {
    let mode = mayfly::env::args().nth(1).unwrap_or("");
    if block_attack(mode) {
        return 0;
    }
    match mode {
        // Argument structures outside memory, wrapping, or in the monitor's reserved area.
        "args-outside-memory" => ring(Hypercall::Exit.doorbell(), 0xffff_fff0),
        "args-in-reserved-area" => ring(Hypercall::Wait.doorbell(), layout::BOOT_INFO_ADDR as u32),
        "args-null" => ring(Hypercall::Exit.doorbell(), 0),
        // A panic message whose address wraps around and whose length is absurd.
        "absurd-message" => {
            #[repr(C)]
            struct Exit {
                status: i32,
                reason: u32,
                message: u64,
                message_len: u32,
                reserved: u32,
            }
            let args = Exit {
                status: 3,
                reason: 1,
                message: u64::MAX - 4,
                message_len: u32::MAX,
                reserved: 0,
            };
            ring(Hypercall::Exit.doorbell(), &args as *const Exit as u32);
        }
        // Wait's result written over the guest's own (read-only) code.
        "wait-args-in-text" => {
            ring(Hypercall::Wait.doorbell(), main as fn() -> i32 as usize as u32)
        }
        // Exit on its own with the status the monitor uses for its verdicts (124, 139, 152...).
        "exit-with" => {
            return mayfly::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
        }
        "unknown-hypercall" => ring(layout::DOORBELL_ADDR + 77 * 4, 0),
        "misaligned-hypercall" => ring(Hypercall::Wait.doorbell() + 2, 0),
        "wrong-width" => unsafe {
            core::arch::asm!("mov byte ptr [{}], 0", in(reg) Hypercall::Exit.doorbell())
        },
        "read-doorbell" => {
            let value = unsafe { (layout::DOORBELL_ADDR as *const u32).read_volatile() };
            println!("read {value} from the doorbell");
        }
        "unknown-port" => out32(0x3f8, 0x41),
        "old-hypercall-port" => out32(0x501, 0),
        "fake-fault-report" => unsafe {
            core::arch::asm!("out dx, al", in("dx") layout::FAULT_PORT, in("al") 14u8)
        },
        // The console length the monitor reads: absurd (the monitor clamps it).
        // The stubs' own instruction form: `out imm8, al`.
        "fake-fault-report-imm" => unsafe { core::arch::asm!("out 0xf4, al", in("al") 14u8) },
        "console-garbage" => {
            let console = mayfly::env::memory().console as usize;
            unsafe { (console as *mut u32).write_volatile(u32::MAX) };
            ring(Hypercall::ConsoleFlush.doorbell(), 0);
            println!("still alive after a garbage console length");
            return 0;
        }
        // Ring counters claiming more frames than slots.
        "ring-garbage" => {
            let net = mayfly::env::memory().net;
            let tx = net.rings + mayfly::abi::net::RING_BYTES;
            unsafe { (tx as *mut u32).write_volatile(0xdead_beef) };
            mayfly::wait(Some(mayfly::time::Instant::now()));
        }
        // A slot length beyond the slot.
        "ring-bad-length" => {
            let net = mayfly::env::memory().net;
            let tx = net.rings + mayfly::abi::net::RING_BYTES;
            let slot = mayfly::abi::net::slot_addr(tx, 0);
            unsafe {
                (slot as *mut u32).write_volatile(1_000_000);
                (tx as *mut u32).write_volatile(1);
            }
            mayfly::wait(Some(mayfly::time::Instant::now()));
        }
        // Hypercalls as fast as possible, forever (the timeout stops it).
        "hypercall-flood" => loop {
            ring(Hypercall::ConsoleFlush.doorbell(), 0);
        },
        "rewrite-page-tables" => write_to(layout::PAGE_TABLES_ADDR as usize),
        "write-gdt" => write_to(layout::GDT_ADDR as usize),
        "write-boot-info" => write_to(layout::BOOT_INFO_ADDR as usize),
        "write-text" => write_to(main as fn() -> i32 as usize),
        "jump-into-heap" => {
            let code: Vec<u8> = vec![0xc3; 64]; // `ret`
            let f: extern "C" fn() = unsafe { core::mem::transmute(code.as_ptr()) };
            f();
        }
        "exhaust-memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
            }
        }
        other => {
            println!("hostile: unknown mode {other:?}");
            return 64;
        }
    }
    println!("hostile: the monitor let {mode} through");
    1
}
