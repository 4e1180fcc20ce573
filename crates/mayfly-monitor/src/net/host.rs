//! The host side of published ports: a TCP address or a Unix socket path, its listener and the
//! streams it accepts.
//!
//! A Unix socket is what `mayfly serve` uses: its file lies in a directory only the gateway's
//! user can enter, so no other local user can reach the instance around the gateway. The socket
//! file is created before the sandbox and removed when the listener goes (at exit, under the
//! sandbox: only `unlinkat` relative to the socket's own directory is allowed for that).

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// Where a published port listens on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// A TCP address (`[ADDR:]PORT`).
    Tcp(SocketAddr),
    /// A Unix stream socket at this path (`unix:PATH`).
    Unix(PathBuf),
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAddr::Tcp(addr) => write!(f, "{addr}"),
            HostAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listening host socket.
pub(crate) enum HostListener {
    Tcp(TcpListener),
    Unix {
        socket: UnixListener,
        path: PathBuf,
        /// The socket file's directory (`O_PATH`), to remove the file relative to it.
        dir: OwnedFd,
        /// The socket file's name in `dir`.
        name: CString,
    },
}

impl HostListener {
    /// Listens at `addr` (non-blocking). A Unix socket path must not exist yet.
    pub(crate) fn bind(addr: &HostAddr) -> std::io::Result<HostListener> {
        let listener = match addr {
            HostAddr::Tcp(addr) => HostListener::Tcp(TcpListener::bind(addr)?),
            HostAddr::Unix(path) => {
                let invalid =
                    |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
                let name = path.file_name().ok_or_else(|| invalid("the path names no file"))?;
                let name = CString::new(name.as_bytes())
                    .map_err(|_| invalid("the path contains a NUL byte"))?;
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => std::path::Path::new("."),
                };
                let dir = crate::sys::open_dir_path(parent)?;
                let socket = UnixListener::bind(path)?;
                HostListener::Unix { socket, path: path.clone(), dir, name }
            }
        };
        match &listener {
            HostListener::Tcp(s) => s.set_nonblocking(true)?,
            HostListener::Unix { socket, .. } => socket.set_nonblocking(true)?,
        }
        Ok(listener)
    }

    /// Accepts one connection (non-blocking, like the listener).
    pub(crate) fn accept(&self) -> std::io::Result<HostStream> {
        match self {
            HostListener::Tcp(s) => s.accept().map(|(stream, _)| HostStream::Tcp(stream)),
            HostListener::Unix { socket, .. } => {
                socket.accept().map(|(stream, _)| HostStream::Unix(stream))
            }
        }
    }

    /// Where it actually listens (the port chosen for port 0).
    pub(crate) fn local_addr(&self) -> Option<HostAddr> {
        match self {
            HostListener::Tcp(s) => s.local_addr().ok().map(HostAddr::Tcp),
            HostListener::Unix { path, .. } => Some(HostAddr::Unix(path.clone())),
        }
    }

    /// The directory descriptor the socket file is removed through, for a Unix socket.
    pub(crate) fn unix_dir_fd(&self) -> Option<RawFd> {
        match self {
            HostListener::Tcp(_) => None,
            HostListener::Unix { dir, .. } => Some(dir.as_raw_fd()),
        }
    }
}

impl AsRawFd for HostListener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            HostListener::Tcp(s) => s.as_raw_fd(),
            HostListener::Unix { socket, .. } => socket.as_raw_fd(),
        }
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        if let HostListener::Unix { dir, name, .. } = self {
            // Best effort: a file already gone (or replaced by its owner) is no error here.
            let _ = crate::sys::unlink_at(dir, name);
        }
    }
}

/// An accepted host connection.
pub(crate) enum HostStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl HostStream {
    pub(crate) fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            HostStream::Tcp(s) => s.set_nonblocking(true),
            HostStream::Unix(s) => s.set_nonblocking(true),
        }
    }

    /// Disables Nagle's algorithm (TCP only; a Unix socket has none).
    pub(crate) fn set_nodelay(&self) {
        if let HostStream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            HostStream::Tcp(s) => s.shutdown(how),
            HostStream::Unix(s) => s.shutdown(how),
        }
    }
}

impl From<TcpStream> for HostStream {
    fn from(stream: TcpStream) -> HostStream {
        HostStream::Tcp(stream)
    }
}

impl AsRawFd for HostStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            HostStream::Tcp(s) => s.as_raw_fd(),
            HostStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Read for HostStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            HostStream::Tcp(s) => s.read(buf),
            HostStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for HostStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            HostStream::Tcp(s) => s.write(buf),
            HostStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_listener_creates_its_socket_file_and_removes_it_when_dropped() {
        let dir = std::env::temp_dir().join(format!("mayfly-host-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("i1.sock");
        let listener = HostListener::bind(&HostAddr::Unix(path.clone())).unwrap();
        assert!(path.exists());
        assert_eq!(listener.local_addr(), Some(HostAddr::Unix(path.clone())));
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok());
        // A second listener on the same path is refused (the path is taken).
        assert!(HostListener::bind(&HostAddr::Unix(path.clone())).is_err());
        drop(listener);
        assert!(!path.exists(), "the socket file outlived its listener");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
