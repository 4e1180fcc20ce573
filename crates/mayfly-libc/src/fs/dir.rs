//! Directory streams: `opendir`, `fdopendir`, `readdir64`, `closedir`, `dirfd`.

use super::calls::{AT_FDCWD, O_DIRECTORY, bytes, open_at, ret};
use super::fs;
use crate::errno;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int};

const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;

/// `struct dirent64`.
#[repr(C)]
pub struct Dirent64 {
    ino: u64,
    offset: i64,
    reclen: u16,
    kind: u8,
    name: [u8; 256],
}

/// A `DIR`: the directory's descriptor and a snapshot of its entries.
pub struct Dir {
    fd: c_int,
    entries: Vec<(String, u64, bool)>,
    at: usize,
    entry: Dirent64,
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut Dir {
    // SAFETY: C contract.
    match open_at(AT_FDCWD, unsafe { bytes(path) }, O_DIRECTORY) {
        Ok(fd) => fdopendir(fd),
        Err(e) => {
            errno::set(e);
            core::ptr::null_mut()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn fdopendir(fd: c_int) -> *mut Dir {
    let fs = fs();
    let listing = fs.descriptor(fd).map(|o| (o.ino, o.path.clone())).and_then(|(ino, path)| {
        if !fs.node(ino)?.is_dir() {
            return Err(errno::ENOTDIR);
        }
        let mut entries = Vec::new();
        for (name, child) in fs.children(&path) {
            entries.push((name, child, fs.node(child)?.is_dir()));
        }
        Ok(entries)
    });
    match listing {
        Ok(entries) => Box::into_raw(Box::new(Dir {
            fd,
            entries,
            at: 0,
            entry: Dirent64 { ino: 0, offset: 0, reclen: 0, kind: 0, name: [0; 256] },
        })),
        Err(e) => {
            errno::set(e);
            core::ptr::null_mut()
        }
    }
}

/// The next entry (`.` and `..` are not listed), or null at the end.
///
/// # Safety
/// `dir` came from `opendir`/`fdopendir` and is not closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(dir: *mut Dir) -> *mut Dirent64 {
    // SAFETY: C contract.
    let dir = unsafe { &mut *dir };
    let Some((name, ino, is_dir)) = dir.entries.get(dir.at) else { return core::ptr::null_mut() };
    dir.at += 1;
    let n = name.len().min(255);
    dir.entry.ino = *ino;
    dir.entry.offset = dir.at as i64;
    dir.entry.reclen = size_of::<Dirent64>() as u16;
    dir.entry.kind = if *is_dir { DT_DIR } else { DT_REG };
    dir.entry.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    dir.entry.name[n] = 0;
    &raw mut dir.entry
}

/// # Safety
/// `dir` came from `opendir`/`fdopendir` and is not closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(dir: *mut Dir) -> c_int {
    // SAFETY: C contract: made by `Box::into_raw` in `fdopendir`, closed once.
    let dir = unsafe { Box::from_raw(dir) };
    ret(fs().close(dir.fd).map(|_| 0))
}

/// # Safety
/// `dir` came from `opendir`/`fdopendir` and is not closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dirfd(dir: *mut Dir) -> c_int {
    // SAFETY: C contract.
    unsafe { (*dir).fd }
}
