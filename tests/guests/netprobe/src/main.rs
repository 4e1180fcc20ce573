//! The network probe guest.
//! - `connect A.B.C.D PORT MESSAGE`: connects, sends MESSAGE and a newline, prints the line it
//!   gets back (`reply: ...`), exits 0.
//! - `udp-echo PORT`: answers every UDP datagram with its contents, forever.
//! - `idle`: has a NIC and waits forever (for tests that stop the monitor).
//! - `say TEXT...`: prints each TEXT on a line of its own, as given (control characters
//!   included), then waits forever like `idle`.
#![no_std]
#![no_main]

use mayfly::net::{NetError, TcpStream, UdpSocket};
use mayfly::prelude::*;

mayfly::main!(async main);

fn parse_ip(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for byte in &mut out {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

async fn main() -> Result<(), NetError> {
    let args: Vec<&str> = mayfly::env::args().collect();
    match args.get(1).copied() {
        Some("connect") => {
            let ip = args.get(2).and_then(|s| parse_ip(s)).ok_or(NetError::InvalidAddress)?;
            let port = args.get(3).and_then(|s| s.parse().ok()).ok_or(NetError::InvalidAddress)?;
            let message = args.get(4).copied().unwrap_or("hello");
            let mut stream = TcpStream::connect(ip, port).await?;
            stream.write_all(message.as_bytes()).await?;
            stream.write_all(b"\n").await?;
            let mut reply = Vec::new();
            let mut buf = [0u8; 512];
            while !reply.contains(&b'\n') {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&buf[..n]);
            }
            println!("reply: {}", String::from_utf8_lossy(&reply).trim_end());
            stream.shutdown();
            stream.flush().await?;
            Ok(())
        }
        Some("udp-echo") => {
            let port = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(9);
            let socket = UdpSocket::bind(port)?;
            println!("udp-echo: listening on port {port}");
            let mut buf = [0u8; 2048];
            loop {
                let (n, addr, from) = socket.recv_from(&mut buf).await?;
                socket.send_to(&buf[..n], addr, from).await?;
            }
        }
        Some("say") => {
            for text in args.iter().skip(2) {
                println!("{text}");
            }
            loop {
                mayfly::task::sleep(core::time::Duration::from_secs(3600)).await;
            }
        }
        Some("idle") => loop {
            mayfly::task::sleep(core::time::Duration::from_secs(3600)).await;
        },
        other => {
            println!("netprobe: unknown mode {other:?}");
            Err(NetError::InvalidAddress)
        }
    }
}
