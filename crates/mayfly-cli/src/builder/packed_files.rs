//! Files packed into a std image: `[package.metadata.mayfly] files = ["static/", "config.toml"]`
//! in the program's Cargo.toml lists files and directories (recursively) of the crate; they are
//! linked into the image as one read-only blob that mayfly-libc's file system serves at the
//! same paths under `/` (the guest's working directory), so `std::fs::read("static/x")` reads
//! them as natively from the crate's directory.
//!
//! The blob is a sequence of records `path length: u32 LE, absolute path, data length: u64 LE,
//! data`, between the symbols `mayfly_files_start` and `mayfly_files_end`, assembled from a
//! generated `.s` file (`.incbin`) that the link line names. Every std image has one (empty
//! without files): mayfly-libc refers to the symbols.

use super::write_if_changed;
use anyhow::{Context, Result, bail};
use std::path::{Component, Path, PathBuf};

/// The paths `[package.metadata.mayfly] files` lists in `metadata` (the package's metadata
/// table from `cargo metadata`), checked to be relative paths inside the crate.
pub fn listed(metadata: &serde_json::Value, crate_dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(files) = metadata.get("mayfly").and_then(|m| m.get("files")) else {
        return Ok(Vec::new());
    };
    let fix = "give a list of paths inside the crate, e.g. files = [\"static/\"]";
    let Some(files) = files.as_array() else {
        bail!("[package.metadata.mayfly] files must be a list: {fix}");
    };
    files
        .iter()
        .map(|entry| {
            let Some(path) = entry.as_str() else {
                bail!("[package.metadata.mayfly] files: {entry} is not a string: {fix}");
            };
            let relative = Path::new(path);
            if !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            {
                bail!("[package.metadata.mayfly] files: {path:?} leaves the crate: {fix}");
            }
            let full = crate_dir.join(relative);
            if !full.exists() {
                bail!(
                    "[package.metadata.mayfly] files: {path:?} does not exist in {}: {fix}",
                    crate_dir.display()
                );
            }
            Ok(full)
        })
        .collect()
}

/// Appends the records of `path` (a file, or a directory's files recursively, in name order)
/// to `blob`, named by their path relative to `crate_dir`.
fn pack(crate_dir: &Path, path: &Path, blob: &mut Vec<u8>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read the directory {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read the directory {}", path.display()))?;
        entries.sort();
        for entry in entries {
            pack(crate_dir, &entry, blob)?;
        }
        return Ok(());
    }
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let relative = path.strip_prefix(crate_dir).unwrap_or(path);
    let mut name = String::new();
    for part in relative.components() {
        if let Component::Normal(part) = part {
            let Some(part) = part.to_str() else {
                bail!("{} is not a UTF-8 path: rename it to pack it", path.display());
            };
            name.push('/');
            name.push_str(part);
        }
    }
    let name_len = u32::try_from(name.len())
        .with_context(|| format!("the path of {} is too long to pack", path.display()))?;
    blob.extend_from_slice(&name_len.to_le_bytes());
    blob.extend_from_slice(name.as_bytes());
    blob.extend_from_slice(&(data.len() as u64).to_le_bytes());
    blob.extend_from_slice(&data);
    Ok(())
}

/// Writes the blob of `paths` and the assembly that links it under `target_dir`, both named
/// after the contents (a change makes cargo link again); returns the assembly's path.
pub fn assemble(target_dir: &Path, crate_dir: &Path, paths: &[PathBuf]) -> Result<PathBuf> {
    let mut blob = Vec::new();
    for path in paths {
        pack(crate_dir, path, &mut blob)?;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&blob, &mut hasher);
    let name = format!("{:016x}", std::hash::Hasher::finish(&hasher));
    let dir = target_dir.join("mayfly-std-files");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let data = dir.join(format!("{name}.bin"));
    write_if_changed(&data, &blob)?;
    let quoted = data.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    let assembly = format!(
        ".section .rodata.mayfly_files,\"a\"\n.balign 16\n.globl mayfly_files_start\n\
         mayfly_files_start:\n.incbin \"{quoted}\"\n.globl mayfly_files_end\nmayfly_files_end:\n\
         .section .note.GNU-stack,\"\",@progbits\n"
    );
    let source = dir.join(format!("{name}.s"));
    write_if_changed(&source, assembly.as_bytes())?;
    Ok(source)
}
