//! `mayfly-bench`: the benchmarks of `mayfly bench` (run through `mayfly bench`, or directly).

#![forbid(unsafe_code)]

use clap::Parser;
use mayfly_bench::cli::{Args, execute};
use std::process::ExitCode;

fn main() -> ExitCode {
    match execute(Args::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mayfly bench: error: {error:#}");
            ExitCode::from(125)
        }
    }
}
