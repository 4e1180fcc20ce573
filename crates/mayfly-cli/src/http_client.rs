//! A minimal blocking HTTP/1.1 client for benchmarks and tests: send raw request bytes, read one
//! response (head, then a `Content-Length` body).

use std::io::{Read, Write};
use std::net::TcpStream;

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// The head (status line and headers), as text.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Sends `request` on `stream` and reads one response. An error if the connection closes first
/// or the status line is malformed.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<HttpReply> {
    let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-response");
    stream.write_all(request)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(closed());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed status line")
    })?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(HttpReply { status, head, body })
}
