//! The network probe guest.
//! - `connect A.B.C.D PORT MESSAGE`: connects, sends MESSAGE and a newline, prints the line it
//!   gets back (`reply: ...`), exits 0.
//! - `udp-echo PORT`: answers every UDP datagram with its contents, forever.
//! - `idle`: has a NIC and waits forever (for tests that stop the monitor).
//! - `spin`: burns CPU forever (for CPU time limits).
//! - `print-lots N`: prints N numbered lines, then exits 0 (for console limits).
//! - `listen-after MS PORT`: sleeps MS milliseconds, then (saying so) accepts connections on
//!   PORT and answers each with `late` and a newline, then closes it.
//! - `udp-send A.B.C.D PORT MESSAGE`: sends MESSAGE in a datagram, waits 1 s for an answer,
//!   prints `udp: reply ...` or `udp: no reply`, exits 0.
//! - `say TEXT...`: prints each TEXT on a line of its own, as given (control characters
//!   included), then waits forever like `idle`.
#![no_std]
#![no_main]

use mayfly::net::{NetError, TcpListener, TcpStream, UdpSocket};
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
        Some("listen-after") => {
            let ms = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let port = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(7);
            mayfly::task::sleep(core::time::Duration::from_millis(ms)).await;
            let mut listener = TcpListener::bind(port)?;
            println!("listen-after: listening on port {port}");
            loop {
                let mut stream = listener.accept().await?;
                stream.write_all(b"late\n").await?;
                stream.shutdown();
                stream.flush().await?;
            }
        }
        Some("udp-send") => {
            let ip = args.get(2).and_then(|s| parse_ip(s)).ok_or(NetError::InvalidAddress)?;
            let port = args.get(3).and_then(|s| s.parse().ok()).ok_or(NetError::InvalidAddress)?;
            let message = args.get(4).copied().unwrap_or("hello");
            let socket = UdpSocket::bind(40000)?;
            socket.send_to(message.as_bytes(), ip, port).await?;
            let mut buf = [0u8; 512];
            let wait = core::time::Duration::from_secs(1);
            match mayfly::task::timeout(wait, socket.recv_from(&mut buf)).await {
                Ok(Ok((n, _, _))) => println!("udp: reply {}", String::from_utf8_lossy(&buf[..n])),
                Ok(Err(e)) => println!("udp: error {e:?}"),
                Err(_) => println!("udp: no reply"),
            }
            Ok(())
        }
        Some("spin") => loop {
            core::hint::spin_loop();
        },
        Some("print-lots") => {
            let lines: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
            for i in 0..lines {
                println!("line {i:06} of console output");
            }
            Ok(())
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
