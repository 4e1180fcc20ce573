//! Connections from the gateway to one instance, kept open between requests and owned by the
//! instance: they close when it goes, so instances that come and go leave nothing behind.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where an instance takes connections: the Unix socket its monitor publishes in the gateway's
/// private directory (user-mode networking), or its guest's TCP address (tap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceAddr {
    /// A TCP address (a guest on a tap).
    Tcp(SocketAddr),
    /// A Unix socket path (a monitor's published port).
    Unix(Arc<Path>),
}

impl InstanceAddr {
    /// Parses the monitor's `publishing` address: `unix:PATH` or `ADDR:PORT`.
    pub fn parse(text: &str) -> Option<InstanceAddr> {
        match text.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Some(InstanceAddr::Unix(Path::new(path).into())),
            Some(_) => None,
            None => text.parse().ok().map(InstanceAddr::Tcp),
        }
    }

    /// The `Host` to send when the client gave none.
    pub fn authority(&self) -> String {
        match self {
            InstanceAddr::Tcp(addr) => addr.to_string(),
            InstanceAddr::Unix(_) => "localhost".to_owned(),
        }
    }
}

impl std::fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceAddr::Tcp(addr) => write!(f, "{addr}"),
            InstanceAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Idle keep-alive connections to one instance.
#[derive(Default)]
pub struct ConnPool {
    idle: Mutex<Vec<Upstream>>,
}

/// One connection to an instance. Dropping it closes the connection at once (its task is
/// aborted), even in the middle of an exchange: a request abandoned by its client leaves no
/// connection behind.
pub struct Upstream {
    /// Sends requests on it.
    pub sender: SendRequest<Full<Bytes>>,
    /// Whether it came from the pool (it may have gone stale while idle).
    pub reused: bool,
    task: tokio::task::AbortHandle,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Most idle connections kept per instance (its concurrency bounds the useful number).
const MAX_IDLE: usize = 64;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("ConnPool").field("idle", &idle).finish()
    }
}

impl ConnPool {
    /// An idle connection, or a new one to `addr`.
    pub async fn get(&self, addr: &InstanceAddr) -> Result<Upstream, ConnectError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(upstream) if !upstream.sender.is_closed() => return Ok(upstream),
                Some(_) => continue,
                None => break,
            }
        }
        Self::connect(addr).await
    }

    /// A new connection to `addr`.
    pub async fn connect(addr: &InstanceAddr) -> Result<Upstream, ConnectError> {
        let (sender, task) = match addr {
            InstanceAddr::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
                (sender, tokio::spawn(async move { drop(connection.await) }))
            }
            InstanceAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
                (sender, tokio::spawn(async move { drop(connection.await) }))
            }
        };
        Ok(Upstream { sender, reused: false, task: task.abort_handle() })
    }

    /// Returns a connection after a complete exchange, if it can be used again.
    pub fn put(&self, mut upstream: Upstream) {
        if upstream.sender.is_closed() {
            return;
        }
        upstream.reused = true;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(upstream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InstanceAddr;

    #[test]
    fn published_addresses_parse() {
        let unix = InstanceAddr::parse("unix:/run/g/i1.sock").unwrap();
        assert!(matches!(&unix, InstanceAddr::Unix(p) if p.to_str() == Some("/run/g/i1.sock")));
        assert_eq!(unix.to_string(), "unix:/run/g/i1.sock");
        assert_eq!(unix.authority(), "localhost");
        let tcp = InstanceAddr::parse("127.0.0.1:8080").unwrap();
        assert_eq!(tcp.to_string(), "127.0.0.1:8080");
        assert_eq!(InstanceAddr::parse("unix:"), None);
        assert_eq!(InstanceAddr::parse("nonsense"), None);
    }
}
