//! The hello unikernel: greets, echoes its arguments, allocates, reads the clocks, and exits
//! with the status given as its first argument (so tests can check that it propagates).
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
    println!(
        "wall clock: {}.{:09} s since the epoch",
        wall.as_secs(),
        wall.subsec_nanos()
    );
    println!(
        "main started {} ns after boot",
        started.since_boot().as_nanos()
    );
    println!("main ran for {} ns", started.elapsed().as_nanos());

    match args.get(1) {
        None => 0,
        Some(status) => status.parse().unwrap_or_else(|_| {
            println!("first argument {status:?} is not an exit status");
            2
        }),
    }
}
