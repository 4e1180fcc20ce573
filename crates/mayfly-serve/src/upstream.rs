//! Connections from the gateway to one instance, kept open between requests and owned by the
//! instance: they close when it goes, so instances that come and go leave nothing behind.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Mutex;

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
    pub async fn get(&self, addr: SocketAddr) -> Result<Upstream, ConnectError> {
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
    pub async fn connect(addr: SocketAddr) -> Result<Upstream, ConnectError> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
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
