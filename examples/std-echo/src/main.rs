//! A TCP echo server written against std only, a thread per connection. It runs natively and,
//! unchanged, as a Mayfly unikernel: `mayfly run --publish 7007:7 examples/std-echo`.
//!
//! Arguments: the port (default 7); `connections=N` exits after serving N connections;
//! `greet=BYTES` answers the first connection with that many bytes and exits at once (what
//! was written must still reach the peer, as from a native process).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(mut stream: TcpStream) -> std::io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut echoed = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(echoed);
        }
        stream.write_all(&buf[..n])?;
        echoed += n as u64;
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(7);
    let limit: Option<usize> =
        args.iter().find_map(|a| a.strip_prefix("connections=")).and_then(|n| n.parse().ok());
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("listening on port {}", listener.local_addr()?.port());
    if let Some(bytes) = args.iter().find_map(|a| a.strip_prefix("greet=")) {
        let bytes: usize = bytes.parse().unwrap_or(0);
        let (mut stream, _) = listener.accept()?;
        stream.write_all(&vec![b'g'; bytes])?;
        println!("greeted with {bytes} bytes");
        return Ok(());
    }
    let mut workers = Vec::new();
    for (n, stream) in listener.incoming().enumerate() {
        let stream = stream?;
        let peer = stream.peer_addr()?;
        workers.push(std::thread::spawn(move || {
            let echoed = serve(stream);
            println!("connection from {}: echoed {echoed:?} bytes", peer.ip());
        }));
        if limit.is_some_and(|limit| n + 1 >= limit) {
            break;
        }
    }
    for worker in workers {
        worker.join().expect("a connection thread panicked");
    }
    println!("served {} connection(s)", limit.unwrap_or(0));
    Ok(())
}
