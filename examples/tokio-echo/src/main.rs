//! A tokio TCP echo server, a task per connection, with a timer: unchanged std + tokio code
//! that runs natively and as a Mayfly unikernel (`mayfly run --publish 7008:7 examples/tokio-echo`).
//!
//! Arguments: the port (default 7); `connections=N` exits after serving N connections.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(7);
    let limit: Option<usize> =
        args.iter().find_map(|a| a.strip_prefix("connections=")).and_then(|n| n.parse().ok());
    let started = tokio::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    println!("timer slept at least 10 ms: {}", started.elapsed().as_millis() >= 10);
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on port {}", listener.local_addr()?.port());
    let mut tasks = Vec::new();
    for _ in 0..limit.unwrap_or(usize::MAX) {
        let (mut stream, _) = listener.accept().await?;
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut echoed = 0u64;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        echoed += n as u64;
                    }
                }
            }
            echoed
        }));
    }
    for task in tasks {
        println!("a connection echoed {} bytes", task.await.unwrap_or(0));
    }
    Ok(())
}
