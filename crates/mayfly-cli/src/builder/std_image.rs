//! Ordinary std programs as unikernels: a crate that does not depend on `mayfly` is linked
//! against mayfly-libc, the C library the library OS implements, instead of the system's.
//!
//! The precompiled std of the host target reaches the OS only through libc. rustc names `-lc`
//! (and `-lgcc_s`, `-lpthread`, `-lm`, `-ldl`, `-lrt`, `-lutil`) on the link line; a directory
//! passed first with `-L` holding mayfly-libc as `libc.a`, and empty archives under the other
//! names, makes the link take Mayfly's instead. No C runtime start files (mayfly-libc has the
//! `_start`), a static, non-PIE executable (so thread-locals are `%fs`-relative), Mayfly's std
//! linker script, and `panic = "abort"` (the `mayfly` profile).

use super::{Artifact, CODEGEN_FLAGS, cargo_build, write_if_changed};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The linker script for std programs (kept beside mayfly-libc).
const STD_LINKER_SCRIPT: &str = include_str!("../../../mayfly-libc/mayfly-std.ld");
/// Where mayfly-libc's sources are (this repository's; `MAYFLY_LIBC_DIR` overrides).
const LIBC_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../mayfly-libc");
/// The libraries rustc names for std besides `c`: they are all part of mayfly-libc, so each is
/// an empty archive.
const EMPTY_LIBRARIES: [&str; 6] = ["gcc_s", "util", "rt", "pthread", "m", "dl"];
/// An archive with no members.
const EMPTY_ARCHIVE: &[u8] = b"!<arch>\n";

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
    /// `[package.metadata]` (null without one).
    #[serde(default)]
    metadata: serde_json::Value,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
}

/// Whether the crate at `manifest` is an ordinary std program (it does not depend on `mayfly`).
pub fn is_std_program(manifest: &Path) -> Result<bool> {
    Ok(!package(manifest)?.dependencies.iter().any(|d| d.name == "mayfly"))
}

/// The guest memory the crate at `crate_dir` asks for (`[package.metadata.mayfly]
/// memory_mib`), if `crate_dir` is a crate and it does.
pub fn memory_mib(crate_dir: &Path) -> Result<Option<u64>> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Ok(None);
    }
    let manifest = manifest.canonicalize()?;
    let metadata = package(&manifest)?.metadata;
    let Some(value) = metadata.get("mayfly").and_then(|m| m.get("memory_mib")) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(mib) if (4..=4096).contains(&mib) && mib % 2 == 0 => Ok(Some(mib)),
        _ => bail!(
            "[package.metadata.mayfly] memory_mib = {value} in {}: give an even number of MiB \
             from 4 to 4096",
            manifest.display()
        ),
    }
}

/// The crate at `manifest` as `cargo metadata` describes it.
fn package(manifest: &Path) -> Result<Package> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo (is the Rust toolchain installed?)")?;
    if !output.status.success() {
        bail!("cannot read {} (cargo's error is above)", manifest.display());
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("cannot parse `cargo metadata` for {}", manifest.display()))?;
    metadata
        .packages
        .into_iter()
        .find(|p| p.manifest_path == manifest)
        .with_context(|| format!("{} has no [package]: give a binary crate", manifest.display()))
}

/// Builds mayfly-libc and lays out the library directory and linker script under
/// `target_dir`; returns the rustflags that link a std program against them.
pub fn prepare(target_dir: &Path, manifest: &Path, keep_symbols: bool) -> Result<Vec<String>> {
    let sources = std::env::var_os("MAYFLY_LIBC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LIBC_SOURCES));
    // The files to pack first: a mistake in their list is reported before anything is built.
    let crate_dir = manifest.parent().unwrap_or(Path::new("."));
    let files = super::packed_files::listed(&package(manifest)?.metadata, crate_dir)?;
    let files = super::packed_files::assemble(target_dir, crate_dir, &files)?;
    let libc_manifest = sources.join("Cargo.toml");
    if !libc_manifest.is_file() {
        bail!(
            "mayfly-libc is not at {}: set MAYFLY_LIBC_DIR to its directory (crates/mayfly-libc)",
            sources.display()
        );
    }
    let libc_manifest = libc_manifest.canonicalize()?;
    // Its own target directory: its dependencies are built with other flags than the program's
    // (sharing one would make cargo rebuild them back and forth).
    let libc_target = target_dir.join("mayfly-libc");
    let flags: Vec<String> = CODEGEN_FLAGS.iter().map(|f| f.to_string()).collect();
    let archive = cargo_build(&libc_manifest, &libc_target, keep_symbols, &flags)?
        .into_iter()
        .flat_map(|a: Artifact| a.filenames)
        .find(|f| f.file_name().is_some_and(|n| n == "libmayfly_libc.a"))
        .context("building mayfly-libc produced no libmayfly_libc.a")?;

    // The library directory is named after the library's contents: a changed mayfly-libc
    // changes the flags, which makes cargo link the program again (it does not watch libc.a).
    let libc =
        std::fs::read(&archive).with_context(|| format!("cannot read {}", archive.display()))?;
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&libc, &mut hasher);
    std::fs::create_dir_all(target_dir.join("mayfly-std-maps")).with_context(|| {
        format!("cannot create {}", target_dir.join("mayfly-std-maps").display())
    })?;
    let lib_dir = target_dir
        .join("mayfly-std-lib")
        .join(format!("{:016x}", std::hash::Hasher::finish(&hasher)));
    std::fs::create_dir_all(&lib_dir)
        .with_context(|| format!("cannot create {}", lib_dir.display()))?;
    write_if_changed(&lib_dir.join("libc.a"), &libc)?;
    for name in EMPTY_LIBRARIES {
        write_if_changed(&lib_dir.join(format!("lib{name}.a")), EMPTY_ARCHIVE)?;
    }
    let script = target_dir.join("mayfly-std.ld");
    write_if_changed(&script, STD_LINKER_SCRIPT.as_bytes())?;

    let mut flags = flags;
    flags.extend([
        format!("-Lnative={}", lib_dir.display()),
        "-Clink-arg=-nostartfiles".to_string(),
        "-Clink-arg=-nodefaultlibs".to_string(),
        "-Clink-arg=-static".to_string(),
        format!("-Clink-arg=-Wl,-T,{}", script.display()),
        "-Clink-arg=-Wl,--build-id=none".to_string(),
        "-Clink-arg=-Wl,-z,noexecstack".to_string(),
        format!("-Clink-arg=-Wl,-Map={}", map_path(target_dir, manifest).display()),
        format!("-Clink-arg={}", files.display()),
    ]);
    Ok(flags)
}

/// Where the linker writes its map for the crate at `manifest`.
fn map_path(target_dir: &Path, manifest: &Path) -> PathBuf {
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(manifest, &mut hasher);
    let name = format!("{:016x}.map", std::hash::Hasher::finish(&hasher));
    target_dir.join("mayfly-std-maps").join(name)
}

/// After the link: the image declares a NIC only if the program kept the socket code.
pub fn finish(target_dir: &Path, manifest: &Path, image: &Path) -> Result<()> {
    let uses_sockets =
        super::manifest_patch::map_has_symbol(&map_path(target_dir, manifest), "socket")?;
    super::manifest_patch::set_device(image, mayfly_abi::manifest::Device::Net, uses_sockets)
}
