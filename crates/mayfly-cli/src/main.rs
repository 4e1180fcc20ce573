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
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => commands::build::execute(args),
        Command::Run(args) => commands::run::execute(args),
        Command::Bench(args) => commands::bench::execute(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mayfly: error: {error:#}");
            ExitCode::from(commands::EXIT_MAYFLY_ERROR)
        }
    }
}
