//! `mayfly serve ...`: runs the gateway binary, `mayfly-serve`, which sits beside `mayfly`.

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

pub fn execute(args: Args) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the mayfly binary")?;
    let serve = exe.with_file_name("mayfly-serve");
    // Started by `cargo run` (which builds only `mayfly`): bring the gateway binary up to date.
    if let (Some(cargo), Some(dir)) =
        (std::env::var_os("CARGO"), std::env::var_os("CARGO_MANIFEST_DIR"))
    {
        let release = exe.components().any(|c| c.as_os_str() == "release");
        let mut build = std::process::Command::new(cargo);
        build
            .arg("build")
            .arg("--manifest-path")
            .arg(std::path::Path::new(&dir).join("Cargo.toml"));
        build.args(["--quiet", "--bin", "mayfly-serve"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("cannot run cargo to build mayfly-serve")?;
        if !status.success() {
            bail!("building mayfly-serve failed (the compiler's errors are above)");
        }
    }
    if !serve.is_file() {
        bail!("{} is missing: build both binaries with `cargo build --release`", serve.display());
    }
    let error = std::process::Command::new(&serve).args(&args.args).exec();
    bail!("cannot run {}: {error}", serve.display())
}
