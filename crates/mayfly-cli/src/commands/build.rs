//! `mayfly build <crate dir> [-o <image>]`

use anyhow::Result;
use mayfly_cli::builder::{self, BuildRequest};
use std::path::PathBuf;
use std::process::ExitCode;

/// Build a guest crate into a unikernel image; prints the image path as the last line.
#[derive(clap::Args)]
pub struct Args {
    /// Directory of the guest crate (a no_std binary crate depending on `mayfly`).
    crate_dir: PathBuf,
    /// Write the image here (default: cargo's output path under the target directory).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Cargo target directory (default: $CARGO_TARGET_DIR, else <crate dir>/target).
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// Keep the symbol table in the image (for debugging; larger image).
    #[arg(long)]
    keep_symbols: bool,
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let image = builder::build(&BuildRequest {
        crate_dir: args.crate_dir,
        output: args.output,
        target_dir: args.target_dir,
        keep_symbols: args.keep_symbols,
    })?;
    println!("image size: {} bytes ({:.1} KiB)", image.size, image.size as f64 / 1024.0);
    println!("{}", image.path.display());
    Ok(ExitCode::SUCCESS)
}
