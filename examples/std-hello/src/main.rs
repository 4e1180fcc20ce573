//! An ordinary std Rust program (no Mayfly dependency): it runs natively and, unchanged, as a
//! Mayfly unikernel (`mayfly run examples/std-hello -- a b`). Its output does not depend on
//! where it runs, so that a test can compare the two runs line by line; clock readings are
//! printed as checks (`true`/`false`), not as values.
//!
//! Arguments: words to echo; `status=N` exits with status N; `panic` panics; `quick` skips the
//! sleep.
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let started = Instant::now();
    println!("Hello from an ordinary std program!");
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("args: {args:?}");

    // Environment: one variable the test sets, one it does not.
    println!("STD_HELLO_GREETING = {:?}", std::env::var("STD_HELLO_GREETING").ok());
    println!("STD_HELLO_UNSET = {:?}", std::env::var("STD_HELLO_UNSET").ok());

    // Heap: a Vec, a String, a HashMap (whose RandomState seeds itself from the OS).
    let squares: Vec<u64> = (1..=1000).map(|n| n * n).collect();
    println!("{} squares, sum {}", squares.len(), squares.iter().sum::<u64>());
    let mut text = String::new();
    for word in ["alpha", "beta", "gamma", "beta", "alpha", "beta"] {
        text.push_str(word);
        text.push(' ');
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    println!("word counts: {counts:?}");
    let big = vec![7u8; 64 << 10];
    println!("64 KiB buffer sums to {}", big.iter().map(|&b| u64::from(b)).sum::<u64>());

    // Clocks: the wall clock is after 2020, sleep sleeps, and the monotonic clock advances.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("wall clock before 1970");
    println!("wall clock after 2020: {}", now.as_secs() > 1_577_836_800);
    // `quick` skips the sleep (to time the start-up alone).
    if !args.iter().any(|a| a == "quick") {
        let before_sleep = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let slept = before_sleep.elapsed();
        println!("slept at least 20 ms: {}", slept >= Duration::from_millis(20));
        println!("slept less than 2 s: {}", slept < Duration::from_secs(2));
    }
    println!("monotonic clock advanced: {}", started.elapsed() > Duration::ZERO);

    if args.iter().any(|a| a == "panic") {
        let empty: Vec<u32> = Vec::new();
        println!("about to panic");
        println!("{}", empty[3]);
    }
    let status = args.iter().find_map(|a| a.strip_prefix("status=")).and_then(|s| s.parse().ok());
    println!("exiting with status {}", status.unwrap_or(0));
    std::process::exit(status.unwrap_or(0));
}
