//! `mayfly build`: compiles a guest crate into a unikernel image.
//!
//! The application never sees a linker script or a flag: this module passes them to cargo for
//! the host target (`x86_64-unknown-linux-gnu`, the only one installed on a stable toolchain),
//! with a static relocation model, no C runtime, the image linked at 1 MiB by Mayfly's linker
//! script, and a size-optimised, `panic = "abort"` profile of its own (`mayfly`), so that the
//! crate's own profiles are left alone.
//!
//! A crate that does not depend on `mayfly` is an ordinary std program: [`std_image`] links it
//! against mayfly-libc instead of the system's C library.

mod manifest_patch;
mod packed_files;
mod std_image;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The linker script for guest images (kept beside the library OS it belongs to).
const LINKER_SCRIPT: &str = include_str!("../../mayfly/mayfly.ld");
/// The target guests are compiled for.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The cargo profile guests are compiled with.
pub const GUEST_PROFILE: &str = "mayfly";

pub use std_image::memory_mib;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Directory of the guest crate (holding its Cargo.toml).
    pub crate_dir: PathBuf,
    /// Where to put the image (default: cargo's output path).
    pub output: Option<PathBuf>,
    /// Cargo target directory (default: cargo's, or `$CARGO_TARGET_DIR`).
    pub target_dir: Option<PathBuf>,
    /// Keep symbols in the image (larger; for debugging).
    pub keep_symbols: bool,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Path of the image.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Deserialize)]
struct Artifact {
    reason: String,
    executable: Option<PathBuf>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

fn profile_args(keep_symbols: bool) -> Vec<String> {
    let settings = [
        ("inherits", "\"release\""),
        ("panic", "\"abort\""),
        ("opt-level", "\"s\""),
        ("lto", "true"),
        ("codegen-units", "1"),
        ("debug", "false"),
        ("strip", if keep_symbols { "false" } else { "true" }),
    ];
    settings
        .iter()
        .flat_map(|(key, value)| {
            ["--config".to_string(), format!("profile.{GUEST_PROFILE}.{key}={value}")]
        })
        .collect()
}

/// The code-generation flags of every guest (and of mayfly-libc).
const CODEGEN_FLAGS: [&str; 2] = ["-Crelocation-model=static", "-Ctarget-cpu=x86-64"];

fn rustflags(linker_script: &Path) -> Vec<String> {
    let mut flags: Vec<String> = CODEGEN_FLAGS.iter().map(|f| f.to_string()).collect();
    flags.extend([
        "-Clink-arg=-nostdlib".to_string(),
        "-Clink-arg=-static".to_string(),
        format!("-Clink-arg=-Wl,-T,{}", linker_script.display()),
        "-Clink-arg=-Wl,--build-id=none".to_string(),
        "-Clink-arg=-Wl,-z,noexecstack".to_string(),
    ]);
    flags
}

/// Writes `contents` to `path` unless it holds them already (so that cargo sees no change).
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs `cargo build` for the guest target and the `mayfly` profile on `manifest` with
/// `rustflags`; returns the artifacts cargo reported.
fn cargo_build(
    manifest: &Path,
    target_dir: &Path,
    keep_symbols: bool,
    rustflags: &[String],
) -> Result<Vec<Artifact>> {
    let crate_dir = manifest.parent().unwrap_or(Path::new("."));
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--target", GUEST_TARGET, "--profile", GUEST_PROFILE])
        .args(["--message-format", "json-render-diagnostics"])
        .args(profile_args(keep_symbols))
        .arg("--target-dir")
        .arg(target_dir)
        // The guest is built for a bare machine: the host's flags must not leak in.
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\u{1f}"))
        // Run from the crate so that its own .cargo/config.toml (if any) is honoured.
        .current_dir(crate_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo (is the Rust toolchain installed?)")?;
    if !output.status.success() {
        bail!("building {} failed (the compiler's errors are above)", crate_dir.display());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Artifact>(line).ok())
        .filter(|a| a.reason == "compiler-artifact")
        .collect())
}

/// Builds the guest crate in `request.crate_dir`. Cargo's progress and the compiler's errors go
/// to stderr as usual.
pub fn build(request: &BuildRequest) -> Result<BuiltImage> {
    let manifest = request.crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no Cargo.toml in {}: `mayfly build` takes the directory of a guest crate",
            request.crate_dir.display()
        );
    }
    let crate_dir = request.crate_dir.canonicalize()?;
    let manifest = crate_dir.join("Cargo.toml");
    let target_dir = match &request.target_dir {
        Some(dir) => dir.clone(),
        None => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => crate_dir.join("target"),
        },
    };
    std::fs::create_dir_all(&target_dir)
        .with_context(|| format!("cannot create target directory {}", target_dir.display()))?;
    let target_dir = target_dir.canonicalize()?;
    let std_program = std_image::is_std_program(&manifest)?;
    let rustflags = if std_program {
        std_image::prepare(&target_dir, &manifest, request.keep_symbols)?
    } else {
        let script = target_dir.join("mayfly.ld");
        write_if_changed(&script, LINKER_SCRIPT.as_bytes())?;
        rustflags(&script)
    };
    let built = cargo_build(&manifest, &target_dir, request.keep_symbols, &rustflags)?
        .into_iter()
        .filter_map(|a| a.executable)
        .next_back()
        .with_context(|| {
            format!("{} has no binary target: a guest crate is a binary crate", manifest.display())
        })?;
    if std_program {
        std_image::finish(&target_dir, &manifest, &built)?;
    }
    let path = match &request.output {
        Some(out) => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::copy(&built, out)
                .with_context(|| format!("cannot write the image to {}", out.display()))?;
            out.clone()
        }
        None => built,
    };
    let size = std::fs::metadata(&path)?.len();
    Ok(BuiltImage { path, size })
}
