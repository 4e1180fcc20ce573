//! An in-memory file system: nothing outlives the guest. It starts with `/`, `/tmp` and the
//! read-only files packed into the image ([`packed`]); every other path is writable. Files and directories only (no links, no permissions: mode bits are
//! reported as 0644/0755 and changes to them are accepted without effect).
//!
//! Nodes are numbered (inode numbers); a name table maps normalised absolute paths to them. A
//! node lives while it has a name or an open descriptor. Descriptors from 3 up index `open`.
//! The guest runs one thread at a time and no function here yields, so the tree is never
//! accessed concurrently.

pub mod calls;
pub mod dir;
mod packed;

use crate::errno;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::c_int;

pub const ENOTEMPTY: c_int = 39;
pub const EISDIR: c_int = 21;
pub const EBUSY: c_int = 16;
pub const ENAMETOOLONG: c_int = 36;

/// The first descriptor number of a file (0-2 are the console).
pub const FIRST_FD: c_int = 3;

pub enum Kind {
    File(Vec<u8>),
    Dir,
}

pub struct Node {
    pub kind: Kind,
    /// Last modification, ns since the epoch.
    pub modified_ns: u64,
    named: bool,
    opens: u32,
    /// Packed into the image: not written, truncated, removed or renamed (EROFS), and for a
    /// directory, nothing made or renamed into it.
    pub read_only: bool,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }

    pub fn size(&self) -> usize {
        match &self.kind {
            Kind::File(data) => data.len(),
            Kind::Dir => 4096,
        }
    }
}

/// An open descriptor.
pub struct Open {
    pub ino: u64,
    pub offset: usize,
    pub readable: bool,
    pub writable: bool,
    pub append: bool,
    /// The path it was opened by (what `openat` resolves relative names against).
    pub path: String,
}

/// What a descriptor from 3 up refers to.
pub enum Entry {
    File(Open),
    /// A socket (a `net::Socket`, behind `Any` so that only `net` refers to its code: a
    /// program without sockets then links no network stack).
    Socket(Box<dyn core::any::Any>),
    /// A socket taken out by a thread blocked in an operation on it.
    Busy,
    /// A duplicate (`dup`, `F_DUPFD`) of a network object's descriptor: operations go to that
    /// descriptor (closing the original leaves the duplicate dangling: EBADF).
    Alias(c_int),
}

pub struct Fs {
    names: BTreeMap<String, u64>,
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    open: Vec<Option<Entry>>,
    /// The working directory (normalised).
    pub cwd: String,
}

struct Global(UnsafeCell<Option<Fs>>);

// SAFETY: one thread runs at a time and no function of this module yields (see the module
// documentation), so the tree is never accessed concurrently.
unsafe impl Sync for Global {}

static FS: Global = Global(UnsafeCell::new(None));

/// The file system (made on first use).
pub fn fs() -> &'static mut Fs {
    // SAFETY: see `Global`; callers do not keep the reference across a call that could reach
    // here again.
    let slot = unsafe { &mut *FS.0.get() };
    slot.get_or_insert_with(|| {
        let mut fs = Fs {
            names: BTreeMap::new(),
            nodes: BTreeMap::new(),
            next_ino: 1,
            open: Vec::new(),
            cwd: String::from("/"),
        };
        fs.create("/".into(), Kind::Dir);
        fs.create("/tmp".into(), Kind::Dir);
        packed::load(&mut fs);
        fs
    })
}

fn now_ns() -> u64 {
    u64::try_from(mayfly::time::wall_clock().as_nanos()).unwrap_or(u64::MAX)
}

/// `path` made absolute against `base` and normalised (no `.`, `..` or repeated `/`).
pub fn normalise(base: &str, path: &[u8]) -> Result<String, c_int> {
    if path.is_empty() {
        return Err(errno::ENOENT);
    }
    if path.len() >= 4096 {
        return Err(ENAMETOOLONG);
    }
    let path = core::str::from_utf8(path).map_err(|_| errno::ENOENT)?;
    let mut parts: Vec<&str> = Vec::new();
    let start = if path.starts_with('/') { "" } else { base };
    for part in start.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    let mut out = String::new();
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The directory part of a normalised path (`/` for `/` itself).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

impl Fs {
    fn create(&mut self, path: String, kind: Kind) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = Node { kind, modified_ns: now_ns(), named: true, opens: 0, read_only: false };
        self.nodes.insert(ino, node);
        self.names.insert(path, ino);
        ino
    }

    /// The node at `path`: ENOENT, or ENOTDIR if a parent is a file.
    pub fn lookup(&self, path: &str) -> Result<u64, c_int> {
        if let Some(ino) = self.names.get(path) {
            return Ok(*ino);
        }
        let mut dir = parent(path);
        loop {
            match self.names.get(dir).and_then(|ino| self.nodes.get(ino)) {
                Some(node) if !node.is_dir() => return Err(errno::ENOTDIR),
                Some(_) => return Err(errno::ENOENT),
                None if dir == "/" => return Err(errno::ENOENT),
                None => dir = parent(dir),
            }
        }
    }

    pub fn node(&self, ino: u64) -> Result<&Node, c_int> {
        self.nodes.get(&ino).ok_or(errno::EBADF)
    }

    pub fn node_mut(&mut self, ino: u64) -> Result<&mut Node, c_int> {
        self.nodes.get_mut(&ino).ok_or(errno::EBADF)
    }

    /// Checks that `path`'s parent exists and is a directory.
    fn check_parent(&self, path: &str) -> Result<(), c_int> {
        let dir = self.node(self.lookup(parent(path))?)?;
        match (dir.is_dir(), dir.read_only) {
            (false, _) => Err(errno::ENOTDIR),
            (true, true) => Err(errno::EROFS),
            (true, false) => Ok(()),
        }
    }

    /// EROFS if the node at `ino` was packed into the image.
    pub fn check_writable(&self, ino: u64) -> Result<(), c_int> {
        if self.node(ino)?.read_only { Err(errno::EROFS) } else { Ok(()) }
    }

    /// Creates a file or directory at `path` (EEXIST if something is there).
    pub fn make(&mut self, path: &str, dir: bool) -> Result<u64, c_int> {
        match self.lookup(path) {
            Ok(_) => return Err(errno::EEXIST),
            Err(errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.check_parent(path)?;
        Ok(self.create(path.into(), if dir { Kind::Dir } else { Kind::File(Vec::new()) }))
    }

    /// The names directly inside directory `path`, with their nodes.
    pub fn children(&self, path: &str) -> Vec<(String, u64)> {
        let prefix = if path == "/" { String::from("/") } else { alloc::format!("{path}/") };
        self.names
            .range(prefix.clone()..)
            .take_while(|(name, _)| name.starts_with(&prefix))
            .filter(|(name, _)| !name[prefix.len()..].contains('/') && name.len() > prefix.len())
            .map(|(name, ino)| (String::from(&name[prefix.len()..]), *ino))
            .collect()
    }

    /// Removes the name `path` (a directory must be empty).
    pub fn remove(&mut self, path: &str, dir: bool) -> Result<(), c_int> {
        let ino = self.lookup(path)?;
        let is_dir = self.node(ino)?.is_dir();
        match (dir, is_dir) {
            (true, false) => return Err(errno::ENOTDIR),
            (false, true) => return Err(EISDIR),
            _ => {}
        }
        if path == "/" {
            return Err(EBUSY);
        }
        self.check_writable(ino)?;
        if is_dir && !self.children(path).is_empty() {
            return Err(ENOTEMPTY);
        }
        self.names.remove(path);
        self.node_mut(ino)?.named = false;
        self.collect(ino);
        Ok(())
    }

    /// Frees node `ino` if it has no name and no descriptor left.
    fn collect(&mut self, ino: u64) {
        if self.nodes.get(&ino).is_some_and(|n| !n.named && n.opens == 0) {
            self.nodes.remove(&ino);
        }
    }

    /// Renames `from` to `to` (replacing a file, or an empty directory, at `to`).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), c_int> {
        let ino = self.lookup(from)?;
        let is_dir = self.node(ino)?.is_dir();
        if from == to {
            return Ok(());
        }
        self.check_writable(ino)?;
        if is_dir && to.starts_with(from) && to.as_bytes().get(from.len()) == Some(&b'/') {
            return Err(errno::EINVAL);
        }
        self.check_parent(to)?;
        if let Ok(existing) = self.lookup(to) {
            match (is_dir, self.node(existing)?.is_dir()) {
                (true, false) => return Err(errno::ENOTDIR),
                (false, true) => return Err(EISDIR),
                _ => self.remove(to, is_dir)?,
            }
        }
        let moved: Vec<(String, u64)> = if is_dir {
            let prefix = alloc::format!("{from}/");
            self.names
                .range(prefix.clone()..)
                .take_while(|(name, _)| name.starts_with(&prefix))
                .map(|(name, ino)| (name.clone(), *ino))
                .collect()
        } else {
            Vec::new()
        };
        self.names.remove(from);
        self.names.insert(to.into(), ino);
        for (name, child) in moved {
            self.names.remove(&name);
            self.names.insert(alloc::format!("{to}{}", &name[from.len()..]), child);
        }
        Ok(())
    }

    /// Opens node `ino` (found at `path`) as the lowest free descriptor.
    pub fn open(
        &mut self,
        ino: u64,
        path: String,
        readable: bool,
        writable: bool,
        append: bool,
    ) -> Result<c_int, c_int> {
        if writable {
            self.check_writable(ino)?;
        }
        self.node_mut(ino)?.opens += 1;
        self.add(Entry::File(Open { ino, offset: 0, readable, writable, append, path }))
    }

    /// Puts `entry` at the lowest free descriptor.
    pub fn add(&mut self, entry: Entry) -> Result<c_int, c_int> {
        let slot = match self.open.iter().position(Option::is_none) {
            Some(free) => {
                self.open[free] = Some(entry);
                free
            }
            None => {
                self.open.push(Some(entry));
                self.open.len() - 1
            }
        };
        c_int::try_from(slot).map(|s| s + FIRST_FD).map_err(|_| errno::EBADF)
    }

    fn raw_slot(&mut self, fd: c_int) -> Result<&mut Option<Entry>, c_int> {
        let index = usize::try_from(fd - FIRST_FD).map_err(|_| errno::EBADF)?;
        self.open.get_mut(index).ok_or(errno::EBADF)
    }

    /// The entry of `fd`, following a duplicate to its original.
    fn slot(&mut self, fd: c_int) -> Result<&mut Option<Entry>, c_int> {
        let target = match self.raw_slot(fd)? {
            Some(Entry::Alias(target)) => *target,
            _ => fd,
        };
        self.raw_slot(target)
    }

    /// Duplicates network object `fd` (a socket, epoll or eventfd) as a new descriptor.
    pub fn duplicate(&mut self, fd: c_int) -> Result<c_int, c_int> {
        let target = match self.raw_slot(fd)? {
            Some(Entry::Alias(target)) => *target,
            Some(Entry::Socket(_) | Entry::Busy) => fd,
            _ => return Err(errno::EBADF),
        };
        self.add(Entry::Alias(target))
    }

    /// The open file `fd` (EBADF for a socket or a free number).
    pub fn descriptor(&mut self, fd: c_int) -> Result<&mut Open, c_int> {
        match self.slot(fd)? {
            Some(Entry::File(open)) => Ok(open),
            _ => Err(errno::EBADF),
        }
    }

    /// Whether `fd` is a socket.
    pub fn is_socket(&mut self, fd: c_int) -> bool {
        matches!(self.slot(fd), Ok(Some(Entry::Socket(_) | Entry::Busy)))
    }

    /// Takes socket `fd` out for an operation that may block (ENOTSOCK for a file, EBUSY if
    /// another thread has it).
    pub fn take_socket(&mut self, fd: c_int) -> Result<Box<dyn core::any::Any>, c_int> {
        let slot = self.slot(fd)?;
        match slot.take() {
            Some(Entry::Socket(socket)) => {
                *slot = Some(Entry::Busy);
                Ok(socket)
            }
            other => {
                let err = match &other {
                    Some(Entry::Busy) => EBUSY,
                    Some(Entry::File(_)) => crate::net::ENOTSOCK,
                    Some(Entry::Socket(_) | Entry::Alias(_)) | None => errno::EBADF,
                };
                *slot = other;
                Err(err)
            }
        }
    }

    /// Puts back socket `fd` taken by [`Fs::take_socket`] (dropping it if `fd` was closed
    /// meanwhile).
    pub fn put_socket(&mut self, fd: c_int, socket: Box<dyn core::any::Any>) {
        if let Ok(slot) = self.slot(fd)
            && matches!(slot, Some(Entry::Busy))
        {
            *slot = Some(Entry::Socket(socket));
        }
    }

    pub fn close(&mut self, fd: c_int) -> Result<(), c_int> {
        let entry = self.raw_slot(fd)?.take().ok_or(errno::EBADF)?;
        if let Entry::File(open) = entry {
            if let Some(node) = self.nodes.get_mut(&open.ino) {
                node.opens = node.opens.saturating_sub(1);
            }
            self.collect(open.ino);
        }
        Ok(())
    }

    /// Reads from `fd` at `at` (its offset if `None`, which then advances).
    pub fn read(&mut self, fd: c_int, buf: &mut [u8], at: Option<usize>) -> Result<usize, c_int> {
        let open = self.descriptor(fd)?;
        if !open.readable {
            return Err(errno::EBADF);
        }
        let (ino, offset) = (open.ino, at.unwrap_or(open.offset));
        let Kind::File(data) = &self.node(ino)?.kind else { return Err(EISDIR) };
        let n = data.len().saturating_sub(offset).min(buf.len());
        if n > 0 {
            buf[..n].copy_from_slice(&data[offset..offset + n]);
        }
        if at.is_none() {
            self.descriptor(fd)?.offset = offset + n;
        }
        Ok(n)
    }

    /// Writes to `fd` at `at` (its offset, or the end if appending, if `None`).
    pub fn write(&mut self, fd: c_int, bytes: &[u8], at: Option<usize>) -> Result<usize, c_int> {
        let open = self.descriptor(fd)?;
        if !open.writable {
            return Err(errno::EBADF);
        }
        let (ino, append, offset) = (open.ino, open.append, open.offset);
        let node = self.node_mut(ino)?;
        let Kind::File(data) = &mut node.kind else { return Err(EISDIR) };
        let start = match at {
            Some(at) => at,
            None if append => data.len(),
            None => offset,
        };
        let end = start.checked_add(bytes.len()).ok_or(errno::EINVAL)?;
        if data.len() < end {
            data.try_reserve(end - data.len()).map_err(|_| errno::ENOMEM)?;
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        node.modified_ns = now_ns();
        if at.is_none() {
            self.descriptor(fd)?.offset = end;
        }
        Ok(bytes.len())
    }

    /// Sets file `ino`'s length.
    pub fn truncate(&mut self, ino: u64, len: usize) -> Result<(), c_int> {
        self.check_writable(ino)?;
        let node = self.node_mut(ino)?;
        let Kind::File(data) = &mut node.kind else { return Err(EISDIR) };
        if len > data.len() {
            data.try_reserve(len - data.len()).map_err(|_| errno::ENOMEM)?;
        }
        data.resize(len, 0);
        node.modified_ns = now_ns();
        Ok(())
    }
}
