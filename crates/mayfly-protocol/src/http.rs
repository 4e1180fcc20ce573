//! A minimal blocking HTTP/1.1 client for the admin CLI, the benchmarks and the tests: send raw
//! request bytes, read one response (head, then a `Content-Length` body).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
pub fn exchange<S: Read + Write>(stream: &mut S, request: &[u8]) -> std::io::Result<HttpReply> {
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

/// The request bytes of `method path` with `headers` (a `Host` header is added unless one is
/// given), a `Content-Length` and `body`.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str("Host: mayfly\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// One request on a fresh connection to `addr`, waiting at most `connect` to connect and `read`
/// for each read.
pub fn request(
    addr: SocketAddr,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    body: &[u8],
    (connect, read): (Duration, Duration),
) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect_timeout(&addr, connect)?;
    stream.set_read_timeout(Some(read))?;
    stream.set_write_timeout(Some(read))?;
    exchange(&mut stream, &request_bytes(method, path, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn one_request_one_response_with_its_body() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            while !seen.ends_with(b"\r\n\r\nhi") {
                stream.read_exact(&mut byte).unwrap();
                seen.push(byte[0]);
            }
            stream.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabcEXTRA").unwrap();
            String::from_utf8(seen).unwrap()
        });
        let timeouts = (Duration::from_secs(5), Duration::from_secs(5));
        let reply = request(addr, ("PUT", "/x"), &[("X-A", "b")], b"hi", timeouts).unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (201, b"abc".as_slice()));
        let seen = server.join().unwrap();
        assert!(seen.starts_with("PUT /x HTTP/1.1\r\nHost: mayfly\r\nX-A: b\r\n"), "{seen}");
        assert!(seen.contains("Content-Length: 2\r\n"), "{seen}");
    }
}
