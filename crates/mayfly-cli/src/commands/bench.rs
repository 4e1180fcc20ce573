//! `mayfly bench <benchmark>`

use anyhow::Result;
use mayfly_cli::bench::boot::BootBench;
use std::path::PathBuf;
use std::process::ExitCode;

/// Measure Mayfly against a native baseline, print medians and ratios, record the results.
#[derive(clap::Args)]
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
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let report = match args.which {
        Which::Boot { runs, mem, hello, native, target_dir } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            BootBench { runs, mem_mib: mem, hello_crate: hello, native_crate: native, target_dir }
                .run()?
        }
    };
    report.print();
    if !args.no_record {
        report.record(&args.results, &args.markdown)?;
    }
    Ok(ExitCode::SUCCESS)
}
