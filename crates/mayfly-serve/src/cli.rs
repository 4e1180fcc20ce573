//! `mayfly serve [--config FILE] [--listen ADDR] [--admin ADDR]`: the arguments and `main` of the
//! `mayfly-serve` binary: the gateway links tokio and hyper, which the `mayfly` binary (and so every monitor
//! process) is better without (a smaller static binary starts faster and exposes less).

use crate::config::Config;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run the gateway: boot unikernels on demand, scale them out and to zero.
#[derive(clap::Parser)]
#[command(name = "mayfly serve", bin_name = "mayfly serve", version)]
pub struct Args {
    /// The configuration (TOML). Without it: the built-in services http-hello (`/hello`), kv
    /// (`/kv`) and axum-hello (`/axum`, a std program), built from this repository's examples.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where the gateway listens (overrides the configuration).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the admin API listens (overrides the configuration).
    #[arg(long)]
    admin: Option<SocketAddr>,
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let repo = std::env::current_dir()?;
            if !repo.join("examples/http-hello/Cargo.toml").is_file() {
                bail!(
                    "no --config given and examples/http-hello is not here: run `mayfly serve` \
                     from the Mayfly repository, or give --config <file.toml>"
                );
            }
            Config::builtin(&repo)
        }
    };
    if let Some(listen) = args.listen {
        config.gateway.listen = listen;
    }
    if let Some(admin) = args.admin {
        config.gateway.admin_listen = admin;
    }
    config.validate(args.config.as_deref().unwrap_or("--admin".as_ref()))?;
    // Colours only for a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    // Instances run (and images are built) by the `mayfly` binary beside this one.
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mayfly = exe.with_file_name("mayfly");
    if !mayfly.is_file() {
        bail!("{} is missing: build it with `cargo build --release`", mayfly.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::serve(config, mayfly))?;
    Ok(ExitCode::SUCCESS)
}
