//! The read-only files packed into the image (`[package.metadata.mayfly] files = [...]` in the
//! program's Cargo.toml). `mayfly build` links them in as one blob between the symbols
//! `mayfly_files_start` and `mayfly_files_end` (empty when there are none): a sequence of
//! records `path length: u32 LE, absolute path, data length: u64 LE, data`. They are copied
//! into the tree at its first use, with the directories they need, all read-only.

use super::{Fs, Kind, parent};
use alloc::string::String;
use alloc::vec::Vec;

unsafe extern "C" {
    static mayfly_files_start: u8;
    static mayfly_files_end: u8;
}

/// The packed blob.
fn blob() -> &'static [u8] {
    let start = &raw const mayfly_files_start;
    let end = &raw const mayfly_files_end;
    let len = (end as usize).saturating_sub(start as usize);
    // SAFETY: the linker places the blob's bytes between the two symbols, in read-only memory
    // that lives as long as the program.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(head)
}

/// The records of `blob`: (path, data). A malformed end (a build bug) ends the list.
fn records(mut rest: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some(entry) = (|| {
            let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
            let path = core::str::from_utf8(take(&mut rest, len)?).ok()?;
            let len = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
            Some((path, take(&mut rest, usize::try_from(len).ok()?)?))
        })() else {
            break;
        };
        out.push(entry);
    }
    out
}

/// Makes the directory `path` and its parents (read-only) unless they exist.
fn make_dirs(fs: &mut Fs, path: &str) {
    if path == "/" || fs.names.contains_key(path) {
        return;
    }
    make_dirs(fs, parent(path));
    let ino = fs.create(String::from(path), Kind::Dir);
    if let Some(node) = fs.nodes.get_mut(&ino) {
        node.read_only = true;
    }
}

/// Adds the packed files to `fs`.
pub fn load(fs: &mut Fs) {
    for (path, data) in records(blob()) {
        if !path.starts_with('/') || fs.names.contains_key(path) {
            continue;
        }
        make_dirs(fs, parent(path));
        let ino = fs.create(String::from(path), Kind::File(data.to_vec()));
        if let Some(node) = fs.nodes.get_mut(&ino) {
            node.read_only = true;
        }
    }
}
