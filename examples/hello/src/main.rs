//! The hello unikernel: greets, echoes its arguments, allocates, reads the clocks, and exits
//! with the status given as its first argument, if it is a number.
#![no_std]
#![no_main]

use mayfly::prelude::*;
use mayfly::time::{Instant, wall_clock};

mayfly::main!(main);

fn main() -> i32 {
    let started = Instant::now();
    println!("Hello from a Mayfly unikernel!");
    let args: Vec<&str> = mayfly::env::args().collect();
    println!("args: {args:?}");

    let squares: Vec<u64> = (1..=1000).map(|n| n * n).collect();
    let sum: u64 = squares.iter().sum();
    println!("allocated {} squares, sum {sum}", squares.len());

    let wall = wall_clock();
    println!("wall clock: {}.{:09} s since the epoch", wall.as_secs(), wall.subsec_nanos());
    println!("main started {} ns after boot", started.since_boot().as_nanos());
    println!("main ran for {} ns", started.elapsed().as_nanos());

    // A numeric first argument is the exit status (so tests can check that it propagates).
    args.get(1).and_then(|status| status.parse().ok()).unwrap_or(0)
}
