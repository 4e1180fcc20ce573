//! Benchmarks: commands that measure and print, comparing Mayfly side by side with a native
//! Linux baseline in the same run (these machines are noisy), and record the results as JSON
//! and as a table in BENCHMARKS.md.

pub mod boot;
mod report;
mod stats;

pub use report::{Report, Row};
pub use stats::Summary;
