//! An HTTP server on hyper 1 and tokio answering JSON: unchanged crates.io code that runs
//! natively and as a Mayfly unikernel (`mayfly run --publish 8080:80 examples/hyper-hello`).
//!
//! Arguments: the port (default 80); `connections=N` exits after serving N connections.
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn hello(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = serde_json::json!({
        "hello": "from hyper in a unikernel",
        "method": request.method().as_str(),
        "path": request.uri().path(),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(80);
    let limit: Option<usize> =
        args.iter().find_map(|a| a.strip_prefix("connections=")).and_then(|n| n.parse().ok());
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on port {}", listener.local_addr()?.port());
    let mut connections = Vec::new();
    for _ in 0..limit.unwrap_or(usize::MAX) {
        let (stream, _) = listener.accept().await?;
        connections.push(tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
            if let Err(e) = served {
                println!("connection error: {e}");
            }
        }));
    }
    for connection in connections {
        let _ = connection.await;
    }
    println!("served {} connection(s)", limit.unwrap_or(0));
    Ok(())
}
