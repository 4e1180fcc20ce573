//! `mayfly bench <benchmark>`: the arguments of the `mayfly-bench` binary.

use crate::boot::BootBench;
use crate::http::HttpBench;
use crate::serve::ServeBench;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Measure Mayfly against a native baseline, print medians and ratios, record the results.
#[derive(clap::Parser)]
#[command(name = "mayfly bench", bin_name = "mayfly bench", version)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
    /// Directory for the JSON results.
    #[arg(long, global = true, default_value = "bench/results")]
    results: PathBuf,
    /// Markdown file whose section for this benchmark is rewritten.
    #[arg(long, global = true, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Print only; record nothing.
    #[arg(long, global = true)]
    no_record: bool,
}

/// What the HTTP benchmarks build: the same guest and native server for `serve` and `http`.
#[derive(clap::Args)]
struct HttpBuilds {
    /// The http-hello guest crate.
    #[arg(long, default_value = "examples/http-hello")]
    hello: PathBuf,
    /// The native baseline crate.
    #[arg(long, default_value = "bench/native-http")]
    native: PathBuf,
    /// Cargo target directory for the builds.
    #[arg(long, default_value = "target/bench")]
    target_dir: PathBuf,
}

/// Checks a `--duration` in seconds.
fn check_duration(duration: f64) -> Result<()> {
    anyhow::ensure!(
        duration.is_finite() && (0.1..=300.0).contains(&duration),
        "--duration must be from 0.1 to 300 seconds"
    );
    Ok(())
}

#[derive(clap::Subcommand)]
enum Which {
    /// Boot `hello` many times against a native static process doing the same work.
    Boot {
        /// Measured runs of each side.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 64)]
        mem: u64,
        /// The hello guest crate.
        #[arg(long, default_value = "examples/hello")]
        hello: PathBuf,
        /// The native baseline crate.
        #[arg(long, default_value = "bench/native-hello")]
        native: PathBuf,
        /// Cargo target directory for the builds.
        #[arg(long, default_value = "target/bench")]
        target_dir: PathBuf,
    },
    /// Transient services through `mayfly serve`: warm, cold, prepared shells, per-request
    /// mode against fork/exec per request, and density.
    Serve {
        /// Sequential warm requests measured (via the gateway and straight to the instance).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Cold starts measured per kind.
        #[arg(long, default_value_t = 20)]
        cold: usize,
        /// Seconds of each throughput round (3 rounds per side, interleaved).
        #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
        duration: f64,
        /// Idle-instance counts for the density steps (comma-separated).
        #[arg(long, default_value = "0,100,1000", value_delimiter = ',')]
        density: Vec<usize>,
        #[command(flatten)]
        builds: HttpBuilds,
    },
    /// Rewrite the Markdown file's sections from the recorded results (measures nothing).
    Report,
    /// Ordinary std programs: std-hello against the no_std hello, axum-hello as a unikernel
    /// against the same program natively.
    Std {
        /// Whole runs measured of each hello.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Boots to first response measured of each axum side.
        #[arg(long, default_value_t = 20)]
        boots: usize,
        /// Seconds of each keep-alive throughput round (3 rounds per side, interleaved).
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        duration: f64,
        /// The std-hello crate.
        #[arg(long, default_value = "examples/std-hello")]
        std_hello: PathBuf,
        /// The no_std hello crate.
        #[arg(long, default_value = "examples/hello")]
        hello: PathBuf,
        /// The axum-hello crate (built as a unikernel and natively).
        #[arg(long, default_value = "examples/axum-hello")]
        axum: PathBuf,
        /// Cargo target directory for the builds.
        #[arg(long, default_value = "target/bench")]
        target_dir: PathBuf,
    },
    /// Serve HTTP from `http-hello` against the same handler as a native Linux process.
    Http {
        /// Keep-alive requests measured on each side (one connection, after 100 warm-up).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Concurrent connections of the throughput test.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds of each throughput round (3 rounds per side).
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        duration: f64,
        /// New connections (`Connection: close`) measured on each side.
        #[arg(long, default_value_t = 500)]
        connections: usize,
        /// Boots to first response measured on each side.
        #[arg(long, default_value_t = 30)]
        boots: usize,
        #[command(flatten)]
        builds: HttpBuilds,
    },
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let report = match args.which {
        Which::Report => {
            crate::report::regenerate(&args.results, &args.markdown)?;
            return Ok(ExitCode::SUCCESS);
        }
        Which::Boot { runs, mem, hello, native, target_dir } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            BootBench { runs, mem_mib: mem, hello_crate: hello, native_crate: native, target_dir }
                .run()?
        }
        Which::Serve { requests, cold, duration, density, builds } => {
            anyhow::ensure!((4..=1_000_000).contains(&requests), "--requests must be 4 to 1000000");
            anyhow::ensure!((1..=10_000).contains(&cold), "--cold must be from 1 to 10000");
            check_duration(duration)?;
            anyhow::ensure!(density.iter().all(|n| *n <= 4000), "--density steps are at most 4000");
            ServeBench {
                requests,
                cold,
                duration,
                density,
                hello_crate: builds.hello,
                native_crate: builds.native,
                target_dir: builds.target_dir,
            }
            .run()?
        }
        Which::Std { runs, boots, duration, std_hello, hello, axum, target_dir } => {
            anyhow::ensure!((1..=100_000).contains(&runs), "--runs must be from 1 to 100000");
            anyhow::ensure!((1..=10_000).contains(&boots), "--boots must be from 1 to 10000");
            check_duration(duration)?;
            crate::std_programs::StdBench {
                runs,
                boots,
                duration: std::time::Duration::from_secs_f64(duration),
                std_hello,
                hello,
                axum,
                target_dir,
            }
            .run()?
        }
        Which::Http { requests, concurrency, duration, connections, boots, builds } => {
            anyhow::ensure!(
                (1..=1_000_000).contains(&requests),
                "--requests must be from 1 to 1000000"
            );
            anyhow::ensure!(
                (1..=256).contains(&concurrency),
                "--concurrency must be from 1 to 256"
            );
            check_duration(duration)?;
            anyhow::ensure!(
                (1..=100_000).contains(&connections),
                "--connections must be from 1 to 100000"
            );
            anyhow::ensure!((1..=10_000).contains(&boots), "--boots must be from 1 to 10000");
            HttpBench {
                requests,
                concurrency,
                duration: std::time::Duration::from_secs_f64(duration),
                connections,
                boots,
                hello_crate: builds.hello,
                native_crate: builds.native,
                target_dir: builds.target_dir,
            }
            .run()?
        }
    };
    report.print();
    if !args.no_record {
        report.record(&args.results, &args.markdown)?;
    }
    Ok(ExitCode::SUCCESS)
}
