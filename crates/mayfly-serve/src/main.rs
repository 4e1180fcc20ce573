//! `mayfly-serve`: the gateway of `mayfly serve` (run through `mayfly serve`, or directly).

#![deny(unsafe_code)]

use clap::Parser;
use mayfly_serve::cli::{Args, execute};
use std::process::ExitCode;

fn main() -> ExitCode {
    match execute(Args::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mayfly serve: error: {error:#}");
            ExitCode::from(125)
        }
    }
}
