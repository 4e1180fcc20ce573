//! The benchmarks (`mayfly-bench` binary): Mayfly against native baselines, recorded in
//! BENCHMARKS.md.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! `mayfly-bench`, run by `mayfly bench`: commands that measure and print, comparing Mayfly side
//! by side with a native Linux baseline in the same run (these machines are noisy), and record
//! the results as JSON and as a table in BENCHMARKS.md.

#![forbid(unsafe_code)]

pub mod boot;
pub mod cli;
mod cpu;
pub mod http;
mod report;
pub mod serve;
mod stats;
pub mod std_programs;

pub use report::{Report, Row};
pub use stats::Summary;

use anyhow::{Context, Result, bail};
use mayfly_cli::builder::GUEST_TARGET;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `mayfly` binary the benchmarks run (monitors, `mayfly serve`): the one beside this one.
fn mayfly_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the mayfly-bench binary")?;
    let mayfly = exe.with_file_name("mayfly");
    if !mayfly.is_file() {
        bail!("{} is missing: build it with `cargo build --release`", mayfly.display());
    }
    Ok(mayfly)
}

/// Fails with a one-line hint unless `dir` holds a crate (benchmarks find their crates by
/// relative paths, so they are run from the repository root).
fn require_crate(what: &str, dir: &Path, command: &str) -> Result<()> {
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "the {what} crate is not at {}: run `{command}` from the Mayfly repository root (or \
             pass its path)",
            dir.display()
        );
    }
    Ok(())
}

/// Builds a native baseline crate the way the `mayfly` binary is built (release, static,
/// stripped, LTO, `panic = "abort"`) into `target_dir`, and returns the path of its `binary`.
fn build_native(krate: &Path, target_dir: &Path, binary: &str) -> Result<PathBuf> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(krate.join("Cargo.toml"))
        .args(["--target", GUEST_TARGET, "--config", "profile.release.strip=true"])
        .args([
            "--config",
            "profile.release.panic=\"abort\"",
            "--config",
            "profile.release.lto=true",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the native baseline {} failed", krate.display());
    }
    Ok(target_dir.join(GUEST_TARGET).join("release").join(binary))
}

/// What a benchmark compares: the guest image and the native baseline, both freshly built.
struct Contestants {
    image: mayfly_cli::builder::BuiltImage,
    native: PathBuf,
}

/// Checks that both crates exist, then builds the guest (`mayfly build`) and the native
/// baseline (its binary `native_binary`) into `target_dir`, with progress on stderr.
fn build_contestants(
    command: &str,
    guest: &Path,
    native: &Path,
    native_binary: &str,
    target_dir: &Path,
) -> Result<Contestants> {
    require_crate("guest", guest, command)?;
    require_crate("native baseline", native, command)?;
    eprintln!("building {} and {} ...", guest.display(), native.display());
    let image = mayfly_cli::builder::build(&mayfly_cli::builder::BuildRequest {
        crate_dir: guest.to_path_buf(),
        output: None,
        target_dir: Some(target_dir.to_path_buf()),
        keep_symbols: false,
    })?;
    let native = build_native(native, target_dir, native_binary)?;
    Ok(Contestants { image, native })
}

/// Finds `key` followed by a number in `text`, skipping blanks between them (e.g.
/// `entered_ns=123`, `main started 5 ns`, `VmRSS:\t  2196 kB`).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| *c == ' ' || *c == '\t')
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The summary of `samples`, or an error naming `what` if there are none.
fn summarize(what: &str, samples: &[f64]) -> Result<Summary> {
    Summary::of(samples).with_context(|| format!("no samples of {what}"))
}

#[cfg(test)]
mod tests {
    use super::number_after;

    #[test]
    fn numbers_are_found_after_their_keys_and_blanks() {
        assert_eq!(number_after("VmRSS:\t    2196 kB\n", "VmRSS:"), Some(2196));
        assert_eq!(number_after("entered_ns=17 stopped_ns=99", "stopped_ns="), Some(99));
        assert_eq!(number_after("VmRSS: kB", "VmRSS:"), None);
    }
}
