//! Port 81: a hand-written HTTP/1.1 server whose answers break the rules on purpose, to test
//! the gateway against hostile guests (port 80 is the well-behaved `mayfly::http` server).
//!
//! - `GET /`: `ok`, keep-alive.
//! - `GET /hangup`: closes the connection without answering.
//! - `GET /endless`: a chunked body that never ends.
//! - `GET /trickle`: declares a 1 TiB body and sends one byte every 100 ms.
//! - `GET /stall`: declares 100 bytes, sends 10, then nothing.
//! - `GET /silent`: never answers.
//! - `GET /spew?bytes=N`: prints N bytes on the console without a newline, then `ok`.
//! - `GET /big?bytes=N`: a body of N bytes (at most 64 MiB), keep-alive.

use core::time::Duration;
use mayfly::net::{NetError, TcpListener, TcpStream};
use mayfly::task::{sleep, spawn};

/// The port of the hostile server.
pub const PORT: u16 = 81;
/// The longest request head read.
const HEAD_MAX: usize = 8192;
/// The largest `/big` body.
const BIG_MAX: usize = 64 << 20;
/// How long the misbehaving routes hold a connection that is going nowhere.
const HOLD: Duration = Duration::from_secs(120);

/// Accepts connections on [`PORT`] forever, one task each.
pub async fn serve() -> Result<(), NetError> {
    let mut listener = TcpListener::bind(PORT)?;
    loop {
        let stream = listener.accept().await?;
        spawn(connection(stream));
    }
}

/// The index just past the `\r\n\r\n` ending a head in `buf`, if there is one.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn connection(mut stream: TcpStream) {
    let mut buf = alloc::vec::Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            if buf.len() > HEAD_MAX {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        };
        let target = core::str::from_utf8(buf.get(..end).unwrap_or_default())
            .ok()
            .and_then(|head| head.split(' ').nth(1))
            .unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let keep_going = match path {
            "/hangup" => false,
            "/endless" => {
                endless(&mut stream).await;
                false
            }
            "/trickle" => {
                trickle(&mut stream).await;
                false
            }
            "/stall" => {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    sleep(HOLD).await;
                }
                false
            }
            "/silent" => {
                sleep(HOLD).await;
                false
            }
            "/spew" => {
                let bytes = crate::query_param(query, "bytes")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                spew(bytes);
                ok(&mut stream).await
            }
            "/big" => {
                let bytes = crate::query_param(query, "bytes")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(BIG_MAX);
                big(&mut stream, bytes).await
            }
            _ => ok(&mut stream).await,
        };
        if !keep_going {
            return;
        }
        buf.drain(..end);
    }
}

async fn ok(stream: &mut TcpStream) -> bool {
    let response = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    stream.write_all(response.as_bytes()).await.is_ok()
}

async fn big(stream: &mut TcpStream, bytes: usize) -> bool {
    let head = alloc::format!("HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let block = [b'b'; 4096];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        if stream.write_all(block.get(..n).unwrap_or_default()).await.is_err() {
            return false;
        }
        left -= n;
    }
    true
}

async fn endless(stream: &mut TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut chunk = alloc::vec::Vec::with_capacity(16 * 1024 + 16);
    chunk.extend_from_slice(b"4000\r\n");
    chunk.resize(6 + 16 * 1024, b'x');
    chunk.extend_from_slice(b"\r\n");
    while stream.write_all(&chunk).await.is_ok() {}
}

async fn trickle(stream: &mut TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    while stream.write_all(b"x").await.is_ok() {
        sleep(Duration::from_millis(100)).await;
    }
}

/// Prints `bytes` bytes of `x` with no newline.
fn spew(bytes: usize) {
    let block = [b'x'; 4096];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        mayfly::console::write_bytes(block.get(..n).unwrap_or_default());
        left -= n;
    }
}
