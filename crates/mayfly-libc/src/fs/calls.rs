//! The C file-system calls std makes, over the in-memory tree ([`super::Fs`]).

use super::{EISDIR, Fs, Kind, Node, fs, normalise};
use crate::errno;
use crate::string::strlen;
use alloc::string::String;
use core::ffi::{c_char, c_int, c_void};

pub(super) const AT_FDCWD: c_int = -100;
const AT_REMOVEDIR: c_int = 0x200;
const AT_EMPTY_PATH: c_int = 0x1000;
const O_ACCMODE: c_int = 3;
const O_WRONLY: c_int = 1;
const O_RDWR: c_int = 2;
const O_CREAT: c_int = 0o100;
const O_EXCL: c_int = 0o200;
const O_TRUNC: c_int = 0o1000;
const O_APPEND: c_int = 0o2000;
pub(super) const O_DIRECTORY: c_int = 0o200000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
pub const S_IFCHR: u32 = 0o020000;

/// `struct stat` of x86-64 Linux.
#[repr(C)]
#[derive(Default)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub pad: i32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub times: [i64; 6],
    pub reserved: [i64; 3],
}

const _: () = assert!(size_of::<Stat>() == 144);

/// The result of a call returning 0 or a descriptor, with `errno` set on failure.
pub(super) fn ret(result: Result<c_int, c_int>) -> c_int {
    result.unwrap_or_else(errno::fail)
}

/// The bytes of C string `s`.
///
/// # Safety
/// `s` is NUL-terminated.
pub(super) unsafe fn bytes<'a>(s: *const c_char) -> &'a [u8] {
    // SAFETY: C contract: NUL-terminated, so `strlen` bytes are readable.
    unsafe { core::slice::from_raw_parts(s.cast::<u8>(), strlen(s)) }
}

/// `path` resolved against directory descriptor `dirfd` (or the root for AT_FDCWD).
fn resolve(fs: &mut Fs, dirfd: c_int, path: &[u8]) -> Result<String, c_int> {
    if path.first() == Some(&b'/') || dirfd == AT_FDCWD {
        return normalise(&fs.cwd.clone(), path);
    }
    let open = fs.descriptor(dirfd)?;
    let (ino, base) = (open.ino, open.path.clone());
    if !fs.node(ino)?.is_dir() {
        return Err(errno::ENOTDIR);
    }
    normalise(&base, path)
}

fn fill_stat(ino: u64, node: &Node) -> Stat {
    let size = node.size() as i64;
    let (sec, nsec) =
        ((node.modified_ns / 1_000_000_000) as i64, (node.modified_ns % 1_000_000_000) as i64);
    Stat {
        dev: 1,
        ino,
        nlink: 1,
        mode: if node.is_dir() { S_IFDIR | 0o755 } else { S_IFREG | 0o644 },
        size,
        blksize: 4096,
        blocks: (size + 511) / 512,
        times: [sec, nsec, sec, nsec, sec, nsec],
        ..Stat::default()
    }
}

/// The status of descriptor `fd` (3 and up).
pub fn fstat_file(fd: c_int) -> Result<Stat, c_int> {
    let fs = fs();
    let ino = fs.descriptor(fd)?.ino;
    Ok(fill_stat(ino, fs.node(ino)?))
}

pub(super) fn open_at(dirfd: c_int, path: &[u8], flags: c_int) -> Result<c_int, c_int> {
    let fs = fs();
    let path = resolve(fs, dirfd, path)?;
    let access = flags & O_ACCMODE;
    let writable = access == O_WRONLY || access == O_RDWR;
    let ino = match fs.lookup(&path) {
        Ok(_) if flags & O_CREAT != 0 && flags & O_EXCL != 0 => return Err(errno::EEXIST),
        Ok(ino) => ino,
        Err(errno::ENOENT) if flags & O_CREAT != 0 => fs.make(&path, false)?,
        Err(e) => return Err(e),
    };
    let is_dir = fs.node(ino)?.is_dir();
    if is_dir && writable {
        return Err(EISDIR);
    }
    if !is_dir && flags & O_DIRECTORY != 0 {
        return Err(errno::ENOTDIR);
    }
    if writable {
        fs.check_writable(ino)?;
    }
    if !is_dir && writable && flags & O_TRUNC != 0 {
        fs.truncate(ino, 0)?;
    }
    fs.open(ino, path, access != O_WRONLY, writable, flags & O_APPEND != 0)
}

/// `open64(path, flags, mode)`.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, _mode: u32) -> c_int {
    // SAFETY: C contract.
    ret(open_at(AT_FDCWD, unsafe { bytes(path) }, flags))
}

/// `open(path, flags, ...)`: the same as `open64` (crates that call libc directly, e.g.
/// getrandom's file fallback, name this one).
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: u32) -> c_int {
    // SAFETY: C contract, passed on.
    unsafe { open64(path, flags, mode) }
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    _mode: u32,
) -> c_int {
    // SAFETY: C contract.
    ret(open_at(dirfd, unsafe { bytes(path) }, flags))
}

fn stat_at(dirfd: c_int, path: &[u8], flags: c_int, out: *mut Stat) -> Result<c_int, c_int> {
    let stat = if path.is_empty() && flags & AT_EMPTY_PATH != 0 {
        fstat_file(dirfd)?
    } else {
        let fs = fs();
        let path = resolve(fs, dirfd, path)?;
        let ino = fs.lookup(&path)?;
        fill_stat(ino, fs.node(ino)?)
    };
    // SAFETY: C contract: `out` is writable.
    unsafe { out.write(stat) };
    Ok(0)
}

/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat64(path: *const c_char, out: *mut Stat) -> c_int {
    // SAFETY: C contract.
    ret(stat_at(AT_FDCWD, unsafe { bytes(path) }, 0, out))
}

/// No symbolic links: the same as `stat64`.
///
/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat64(path: *const c_char, out: *mut Stat) -> c_int {
    // SAFETY: C contract.
    ret(stat_at(AT_FDCWD, unsafe { bytes(path) }, 0, out))
}

/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat64(
    dirfd: c_int,
    path: *const c_char,
    out: *mut Stat,
    flags: c_int,
) -> c_int {
    // SAFETY: C contract.
    ret(stat_at(dirfd, unsafe { bytes(path) }, flags, out))
}

/// Not provided: std falls back to the `stat` family, as on kernels before 4.11.
#[unsafe(no_mangle)]
pub extern "C" fn statx(
    _dirfd: c_int,
    _path: *const c_char,
    _flags: c_int,
    _mask: u32,
    _out: *mut c_void,
) -> c_int {
    errno::fail(errno::ENOSYS)
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, _mode: u32) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    ret(resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| fs.make(&p, true)).map(|_| 0))
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    ret(resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| fs.remove(&p, true)).map(|_| 0))
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    ret(resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| fs.remove(&p, false)).map(|_| 0))
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    let path = unsafe { bytes(path) };
    ret(resolve(fs, dirfd, path).and_then(|p| fs.remove(&p, flags & AT_REMOVEDIR != 0)).map(|_| 0))
}

/// # Safety
/// Both paths are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(from: *const c_char, to: *const c_char) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    let (from, to) = unsafe { (bytes(from), bytes(to)) };
    ret(resolve(fs, AT_FDCWD, from)
        .and_then(|from| Ok((from, resolve(fs, AT_FDCWD, to)?)))
        .and_then(|(from, to)| fs.rename(&from, &to))
        .map(|_| 0))
}

/// # Safety
/// `path` is NUL-terminated; `out` is null or has room for PATH_MAX (4096) bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, out: *mut c_char) -> *mut c_char {
    let fs = fs();
    // SAFETY: C contract.
    let resolved =
        resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| fs.lookup(&p).map(|_| p));
    let resolved = match resolved {
        Ok(p) => p,
        Err(e) => {
            errno::set(e);
            return core::ptr::null_mut();
        }
    };
    let out = if out.is_null() {
        crate::memory::malloc(resolved.len() + 1).cast::<c_char>()
    } else {
        out
    };
    if out.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `out` has room for the path and its NUL (PATH_MAX, or allocated to fit).
    unsafe {
        core::ptr::copy_nonoverlapping(resolved.as_ptr(), out.cast::<u8>(), resolved.len());
        *out.add(resolved.len()) = 0;
    }
    out
}

/// No symbolic links: EINVAL for anything that exists.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, _buf: *mut c_char, _len: usize) -> isize {
    let fs = fs();
    // SAFETY: C contract.
    let found = resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| fs.lookup(&p));
    errno::fail(found.map_or_else(|e| e, |_| errno::EINVAL)) as isize
}

#[unsafe(no_mangle)]
pub extern "C" fn ftruncate64(fd: c_int, len: i64) -> c_int {
    let fs = fs();
    let len = usize::try_from(len).map_err(|_| errno::EINVAL);
    ret(len.and_then(|len| {
        let open = fs.descriptor(fd)?;
        if !open.writable {
            return Err(errno::EINVAL);
        }
        let ino = open.ino;
        fs.truncate(ino, len).map(|_| 0)
    }))
}

/// Everything is in memory already.
#[unsafe(no_mangle)]
pub extern "C" fn fsync(fd: c_int) -> c_int {
    ret(fs().descriptor(fd).map(|_| 0))
}

#[unsafe(no_mangle)]
pub extern "C" fn fdatasync(fd: c_int) -> c_int {
    fsync(fd)
}

/// Permissions are not kept: accepted without effect.
#[unsafe(no_mangle)]
pub extern "C" fn fchmod(fd: c_int, _mode: u32) -> c_int {
    ret(fs().descriptor(fd).map(|_| 0))
}

/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chmod(path: *const c_char, _mode: u32) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    ret(resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| fs.lookup(&p)).map(|_| 0))
}

/// # Safety
/// `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread64(fd: c_int, buf: *mut c_void, len: usize, offset: i64) -> isize {
    let Ok(offset) = usize::try_from(offset) else { return errno::fail(errno::EINVAL) as isize };
    // SAFETY: C contract.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    fs().read(fd, buf, Some(offset)).map_or_else(|e| errno::fail(e) as isize, |n| n as isize)
}

/// # Safety
/// `buf` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite64(fd: c_int, buf: *const c_void, len: usize, offset: i64) -> isize {
    let Ok(offset) = usize::try_from(offset) else { return errno::fail(errno::EINVAL) as isize };
    // SAFETY: C contract.
    let buf = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    fs().write(fd, buf, Some(offset)).map_or_else(|e| errno::fail(e) as isize, |n| n as isize)
}

/// Not provided: std copies with read and write instead.
#[unsafe(no_mangle)]
pub extern "C" fn sendfile64(_out: c_int, _in: c_int, _offset: *mut i64, _count: usize) -> isize {
    errno::fail(errno::EINVAL) as isize
}

/// Whether node kind is a file (for `lseek` bounds).
pub fn file_len(fd: c_int) -> Result<usize, c_int> {
    let fs = fs();
    let ino = fs.descriptor(fd)?.ino;
    match &fs.node(ino)?.kind {
        Kind::File(data) => Ok(data.len()),
        Kind::Dir => Ok(0),
    }
}

/// Changes the working directory (relative paths resolve against it).
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    let fs = fs();
    // SAFETY: C contract.
    let target = resolve(fs, AT_FDCWD, unsafe { bytes(path) }).and_then(|p| {
        let ino = fs.lookup(&p)?;
        if fs.node(ino)?.is_dir() { Ok(p) } else { Err(errno::ENOTDIR) }
    });
    match target {
        Ok(p) => {
            fs.cwd = p;
            0
        }
        Err(e) => errno::fail(e),
    }
}

/// # Safety
/// `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getcwd(buf: *mut c_char, len: usize) -> *mut c_char {
    let cwd = fs().cwd.as_bytes();
    if buf.is_null() {
        errno::set(errno::EINVAL);
        return core::ptr::null_mut();
    }
    if len < cwd.len() + 1 {
        errno::set(errno::ERANGE);
        return core::ptr::null_mut();
    }
    // SAFETY: C contract: `buf` has `len > cwd.len()` bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(cwd.as_ptr(), buf.cast::<u8>(), cwd.len());
        *buf.add(cwd.len()) = 0;
    }
    buf
}
