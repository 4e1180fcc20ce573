//! `mayfly serve ...` and `mayfly bench ...`: run the gateway's binary (`mayfly-serve`) or the
//! benchmarks' (`mayfly-bench`), which sit beside `mayfly`. They link what the `mayfly` binary,
//! which every monitor process runs, is better without (tokio, hyper, the benchmark code).

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// Run the gateway: boot unikernels on demand, scale them out and to zero (`mayfly serve --help`).
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// Options of the gateway (see `mayfly serve --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Measure Mayfly against native baselines (`mayfly bench --help`).
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// The benchmark and its options (see `mayfly bench --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn execute(args: Args) -> Result<ExitCode> {
    dispatch("mayfly-serve", &args.args)
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    dispatch("mayfly-bench", &args.args)
}

/// Replaces this process with `binary` (a package's binary of the same name) beside `mayfly`.
fn dispatch(binary: &str, args: &[String]) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the mayfly binary")?;
    let target = exe.with_file_name(binary);
    // Started by cargo (`cargo run`, which builds only `mayfly`, or `cargo test`): bring the
    // other binary up to date in the same profile.
    if let (Some(cargo), Some(dir)) =
        (std::env::var_os("CARGO"), std::env::var_os("CARGO_MANIFEST_DIR"))
    {
        let release = exe.components().any(|c| c.as_os_str() == "release");
        let mut build = std::process::Command::new(cargo);
        build
            .arg("build")
            .arg("--manifest-path")
            .arg(std::path::Path::new(&dir).join("Cargo.toml"));
        build.args(["--quiet", "--package", binary, "--bin", binary]);
        if release {
            build.arg("--release");
        }
        let status =
            build.status().with_context(|| format!("cannot run cargo to build {binary}"))?;
        if !status.success() {
            bail!("building {binary} failed (the compiler's errors are above)");
        }
    }
    if !target.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release` (or `cargo build --release -p \
             {binary}`)",
            target.display()
        );
    }
    let error = std::process::Command::new(&target).args(args).exec();
    bail!("cannot run {}: {error}", target.display())
}
