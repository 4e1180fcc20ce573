//! Popular crates in a std unikernel: clap parses the arguments, serde/serde_json round-trip a
//! structure, rayon sums in parallel (on its thread pool), anyhow carries an error. Prints the
//! same natively and under Mayfly.
use anyhow::Context;
use clap::Parser;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A small command line.
#[derive(Parser, Debug)]
struct Args {
    /// Who to greet.
    #[arg(long, default_value = "world")]
    name: String,
    /// How many numbers to sum.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Words to carry along.
    words: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Report {
    greeting: String,
    words: Vec<String>,
    sum_of_squares: u64,
    threads_used: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sum_of_squares: u64 = (1..=args.count).into_par_iter().map(|n| n * n % 1_000_003).sum();
    let report = Report {
        greeting: format!("hello, {}", args.name),
        words: args.words.clone(),
        sum_of_squares,
        threads_used: rayon::current_num_threads() >= 1,
    };
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    let back: Report = serde_json::from_str(&json)?;
    println!("round trip equal: {}", back == report);
    let bad = serde_json::from_str::<Report>("{\"greeting\": 5}").context("parsing a bad report");
    println!("bad report: {}", bad.err().map(|e| format!("{e:#}")).unwrap_or_default());
    Ok(())
}
