//! Physical limits of the host's loopback, beside which Mayfly's warm path is judged
//! (docs/design.md, "Where a request's time goes"). No dependencies:
//!
//!     rustc -O bench/physical-limits.rs -o target/physical-limits && target/physical-limits
//!
//! - a `send` + `recv` pair on a connected TCP loopback pair, in one thread (no wake-up): the
//!   kernel's cost of carrying a request one way;
//! - a ping-pong round trip between two threads over TCP loopback (two wake-ups), which is what a
//!   native keep-alive request costs at least.
//!
//! Medians over rounds, each the mean of many operations.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const ROUNDS: usize = 21;
const PER_ROUND: usize = 20_000;
const MESSAGE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    client.set_nodelay(true).expect("nodelay");
    server.set_nodelay(true).expect("nodelay");
    (client, server)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let (mut a, mut b) = pair();
    let mut buf = [0u8; 256];
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            a.write_all(MESSAGE).expect("send");
            b.read_exact(&mut buf[..MESSAGE.len()]).expect("recv");
        }
        rounds.push(start.elapsed().as_nanos() as f64 / PER_ROUND as f64 / 1e3);
    }
    println!("loopback send + recv pair, one thread: {:.2} us", median(rounds));

    let (mut client, mut server) = pair();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while server.read_exact(&mut buf[..MESSAGE.len()]).is_ok() {
            if server.write_all(&buf[..MESSAGE.len()]).is_err() {
                break;
            }
        }
    });
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND / 4 {
            client.write_all(MESSAGE).expect("send");
            client.read_exact(&mut buf[..MESSAGE.len()]).expect("recv");
        }
        rounds.push(start.elapsed().as_nanos() as f64 / (PER_ROUND / 4) as f64 / 1e3);
    }
    println!("loopback ping-pong round trip, two threads: {:.2} us", median(rounds));
    drop(client);
    let _ = echo.join();
}
