//! examples/hello as a native static Linux program, for `mayfly bench boot` to compare with:
//! the same greeting, arguments, allocation and clock reads, and the same exit status.

fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn main() {
    let main_ns = monotonic_ns();
    let started = std::time::Instant::now();
    println!("Hello from a native Linux process!");
    let args: Vec<String> = std::env::args().collect();
    println!("args: {args:?}");
    let squares: Vec<u64> = (1..=1000).map(|n| n * n).collect();
    let sum: u64 = squares.iter().sum();
    println!("allocated {} squares, sum {sum}", squares.len());
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    println!("wall clock: {}.{:09} s since the epoch", wall.as_secs(), wall.subsec_nanos());
    println!("main started at monotonic {main_ns} ns");
    println!("main ran for {} ns", started.elapsed().as_nanos());
    let status_file = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status_file.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    println!("peak_rss_kib={}", hwm.split_whitespace().nth(1).unwrap_or("0"));
    println!("exiting at monotonic {} ns", monotonic_ns());
    let status = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    std::process::exit(status);
}
