//! `mayfly`: build and run Mayfly unikernels.

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
    Run(commands::run::Args),
    Bench(commands::serve::BenchArgs),
    Serve(commands::serve::Args),
    Ps(commands::admin_client::PsArgs),
    Deploy(commands::admin_client::DeployArgs),
    Rm(commands::admin_client::RmArgs),
    Logs(commands::admin_client::LogsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => commands::build::execute(args),
        Command::Run(args) => commands::run::execute(args),
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
