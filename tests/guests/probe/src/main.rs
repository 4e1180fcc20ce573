//! The probe guest: its first argument picks one behaviour, good or bad, for the tests.
#![no_std]
#![no_main]

use core::time::Duration;
use mayfly::prelude::*;
use mayfly::time::Instant;

mayfly::main!(main);

mod tasks;
mod volume;

/// Written by every clone of the `snapshot-point` mode (see there).
static SNAPSHOT_COUNTER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn arg(n: usize) -> Option<&'static str> {
    mayfly::env::args().nth(n)
}

fn number(n: usize, default: u64) -> u64 {
    arg(n).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() -> i32 {
    match arg(1).unwrap_or("") {
        "exit" => number(2, 0) as i32,
        "panic" => panic!("probe panicked on purpose: {}", 42),
        "null-write" => {
            // SAFETY-free on purpose: a volatile write through a null pointer must fault.
            let null = core::hint::black_box(0usize) as *mut u64;
            unsafe { null.write_volatile(1) };
            0
        }
        "invalid-instruction" => {
            unsafe { core::arch::asm!("ud2") };
            0
        }
        "divide-by-zero" => {
            let zero = core::hint::black_box(0u64);
            let r: u64;
            unsafe {
                core::arch::asm!("div {0}", in(reg) zero, inout("rax") 1u64 => r, inout("rdx") 0u64 => _)
            };
            r as i32
        }
        "wait-forever" => {
            // Waits for I/O from a device this image did not declare (it has none).
            mayfly::wait(None);
            0
        }
        "spin" => loop {
            core::hint::spin_loop();
        },
        "alloc" => {
            let mib = number(2, 32) as usize;
            for round in 0..3u8 {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                for i in 0..mib {
                    blocks.push(vec![round ^ (i as u8); 1 << 20]);
                }
                let ok = blocks
                    .iter()
                    .enumerate()
                    .all(|(i, b)| b.iter().all(|&x| x == round ^ (i as u8)));
                if !ok {
                    println!("alloc: round {round} read back wrong data");
                    return 1;
                }
            }
            println!("alloc: {mib} MiB allocated, checked and freed 3 times");
            0
        }
        "sleep" => {
            let ms = number(2, 10);
            let start = Instant::now();
            mayfly::time::sleep(Duration::from_millis(ms));
            println!("slept {} us", start.elapsed().as_micros());
            0
        }
        "hypercalls" => {
            let n = number(2, 1000);
            let start = Instant::now();
            for _ in 0..n {
                mayfly::wait(Some(Instant::now()));
            }
            let per_call = start.elapsed().as_nanos() / u128::from(n.max(1));
            println!("hypercall round trip: {per_call} ns");
            0
        }
        "env" => {
            for (name, value) in mayfly::env::vars() {
                println!("env {name}={value}");
            }
            0
        }
        "print-lots" => {
            let lines = number(2, 1000);
            for i in 0..lines {
                println!("line {i:06} of console output");
            }
            0
        }
        "random" => {
            let mut buf = [0u8; 16];
            mayfly::random::fill(&mut buf);
            println!("random: {buf:02x?}");
            0
        }
        "snapshot-point" => {
            // Draws from the generator before the snapshot point, so that a clone that did not
            // reseed would repeat the template's next bytes.
            let mut before = [0u8; 16];
            mayfly::random::fill(&mut before);
            // The first Wait: `mayfly run --snapshot-out` captures the guest here.
            mayfly::wait(Some(Instant::now()));
            let mut buf = [0u8; 16];
            mayfly::random::fill(&mut buf);
            let wall_ms = mayfly::time::wall_clock().as_millis();
            // A write to the image's data: each clone must see the template's value, never
            // another clone's write.
            let old = SNAPSHOT_COUNTER.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            println!("clone: random {buf:02x?} wall_ms {wall_ms} counter {old}");
            0
        }
        "snapshot-null-write" => {
            // A fault after the snapshot point: a clone must report it like a cold boot.
            mayfly::wait(Some(Instant::now()));
            let null = core::hint::black_box(0usize) as *mut u64;
            unsafe { null.write_volatile(1) };
            0
        }
        "stack-overflow" => recurse(0) as i32,
        "announce-sleep" => {
            // Says that the guest runs, then sleeps: tests inspect the monitor meanwhile.
            println!("probe: running");
            mayfly::time::sleep(Duration::from_millis(number(2, 1000)));
            0
        }
        "env-var" => {
            let name = arg(2).unwrap_or("");
            match mayfly::env::var(name) {
                Some(value) => println!("env-var {name}: {value:?}"),
                None => println!("env-var {name}: unset"),
            }
            0
        }
        "log" => {
            log::error!("log error line");
            log::warn!("log warn line");
            log::info!("log info line");
            log::debug!("log debug line");
            log::trace!("log trace line");
            0
        }
        "tasks" => tasks::run(),
        other => {
            if let Some(status) = volume::run(other, arg(2), arg(3)) {
                return status;
            }
            println!("probe: unknown mode {other:?}");
            64
        }
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    if pad[5] == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + pad[3]
}
