//! `mayfly`: build and run Mayfly unikernels.

#![deny(unsafe_code)]

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Build Rust applications into unikernels and run them on KVM.
#[derive(Parser)]
#[command(name = "mayfly", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Build(commands::build::Args),
    Run(Box<commands::run::Args>),
    Image(commands::image::Args),
    Bench(commands::serve::BenchArgs),
    Serve(commands::serve::Args),
    Ps(commands::admin_client::PsArgs),
    Deploy(commands::admin_client::DeployArgs),
    Rm(commands::admin_client::RmArgs),
    Logs(commands::admin_client::LogsArgs),
}

/// Parses the command line. A bad option is a one-line error with status 125, like every other
/// error of mayfly itself (README: exit status); `--help` and `--version` print as usual.
fn parse_cli() -> Cli {
    Cli::try_parse().unwrap_or_else(|error| {
        if !error.use_stderr() {
            error.exit();
        }
        let message = error.to_string();
        let first = message.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        eprintln!("mayfly: error: {first} (see --help)");
        std::process::exit(i32::from(commands::EXIT_MAYFLY_ERROR))
    })
}

fn main() -> ExitCode {
    let cli = parse_cli();
    let result = match cli.command {
        Command::Build(args) => commands::build::execute(args),
        Command::Run(args) => commands::run::execute(*args),
        Command::Image(args) => commands::image::execute(args),
        Command::Bench(args) => commands::serve::bench(args),
        Command::Serve(args) => commands::serve::execute(args),
        Command::Ps(args) => commands::admin_client::ps(args),
        Command::Deploy(args) => commands::admin_client::deploy(args),
        Command::Rm(args) => commands::admin_client::rm(args),
        Command::Logs(args) => commands::admin_client::logs(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mayfly: error: {error:#}");
            ExitCode::from(commands::EXIT_MAYFLY_ERROR)
        }
    }
}
