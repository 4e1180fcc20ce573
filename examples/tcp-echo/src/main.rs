//! A TCP echo server: every connection gets back what it sends, many connections at once.
//! `mayfly run examples/tcp-echo --publish 7007:7` then `nc 127.0.0.1 7007`.
//! With a port argument it listens there instead of 7.
#![no_std]
#![no_main]

use mayfly::net::{NetError, TcpListener, TcpStream};
use mayfly::prelude::*;

mayfly::main!(async main);

async fn main() -> Result<(), NetError> {
    let port = mayfly::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(7);
    let mut listener = TcpListener::bind(port)?;
    println!("tcp-echo: listening on port {port}");
    loop {
        let stream = listener.accept().await?;
        mayfly::spawn(echo(stream));
    }
}

async fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
}
