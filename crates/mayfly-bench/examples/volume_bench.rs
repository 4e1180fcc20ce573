//! Volumes measured from inside a guest against the host on the same file: 4 KiB random reads
//! per second, and the latency of a flushed 4 KiB write (the guest's write + flush, one exit,
//! against the host's own `pwrite` + `fdatasync`).
//!
//! `cargo run --release -p mayfly-bench --example volume_bench -- MAYFLY [FILE]`, where MAYFLY
//! is the `mayfly` binary (e.g. target/x86_64-unknown-linux-gnu/release/mayfly) and FILE the
//! volume (default target/volume-bench.img, 64 MiB, rewritten). Run from the repository root.

#![allow(clippy::cast_possible_truncation)] // byte patterns, masked

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Instant;

const READS: u64 = 40_000;
const WRITES: usize = 200;
const SIZE: u64 = 64 << 20;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mayfly = args.next().ok_or("usage: volume_bench MAYFLY [FILE]")?;
    let file = args.next().unwrap_or_else(|| "target/volume-bench.img".into());
    let built = Command::new(&mayfly)
        .args(["build", "tests/guests/probe", "--target-dir", "target/guests"])
        .output()
        .map_err(|e| format!("cannot run {mayfly}: {e}"))?;
    let image = String::from_utf8_lossy(&built.stdout).lines().last().unwrap_or("").to_owned();
    if !built.status.success() || image.is_empty() {
        return Err(format!(
            "building the probe failed: {}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    // A volume of non-zero data, in the page cache for both sides alike.
    let data: Vec<u8> = (0..SIZE).map(|i| ((i * 7 + i / 4096) & 0xff) as u8).collect();
    std::fs::write(&file, &data).map_err(|e| format!("{file}: {e}"))?;
    drop(data);

    let guest = Command::new(&mayfly)
        .args(["run", &image, "--volume", &file, "--", "volume-bench", &READS.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let guest_out = String::from_utf8_lossy(&guest.stdout).into_owned();
    if !guest.status.success() {
        return Err(format!(
            "the guest failed: {guest_out} {}",
            String::from_utf8_lossy(&guest.stderr)
        ));
    }

    let f = OpenOptions::new().read(true).write(true).open(&file).map_err(|e| e.to_string())?;
    let blocks = SIZE / 4096;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    for _ in 0..READS {
        f.read_exact_at(&mut buf, (next() % blocks) * 4096).map_err(|e| e.to_string())?;
    }
    let host_reads = READS as f64 / start.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let at = Instant::now();
        f.write_all_at(&[(i & 0xff) as u8; 4096], (next() % blocks) * 4096)
            .map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        lat.push(at.elapsed().as_micros());
    }
    lat.sort_unstable();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(str::to_owned))
        .unwrap_or_default();
    println!("{cpu}");
    println!("volume file: {file} ({} MiB)", SIZE >> 20);
    for line in guest_out.lines().filter(|l| l.starts_with("volume-bench")) {
        println!("guest  {line}");
    }
    println!("host   volume-bench: {READS} random 4 KiB preads: {host_reads:.0} reads/s");
    println!(
        "host   volume-bench: pwrite+fdatasync 4 KiB latency us: p50 {} p90 {} p99 {}",
        lat[WRITES / 2],
        lat[WRITES * 9 / 10],
        lat[WRITES * 99 / 100]
    );
    Ok(())
}
