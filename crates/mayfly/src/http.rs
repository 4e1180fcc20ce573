//! An HTTP/1.1 server for async handlers: `http::serve(80, handle).await`, where
//! `async fn handle(Request) -> Response`.
//!
//! Keep-alive and pipelining, `Content-Length` and chunked request bodies, `Expect:
//! 100-continue`, `HEAD`. Fixed limits (see [`Limits`]): a head over 8 KiB gets 431, a body over
//! 1 MiB gets 413, a malformed request 400, then the connection is closed. A client that
//! connects and sends nothing is closed after [`ServerConfig::idle_timeout`]; one that starts a
//! request and then sends nothing for [`ServerConfig::request_timeout`] gets 408.

use crate::net::{NetError, TcpListener, TcpStream};
use crate::task::{spawn, timeout};
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::time::Duration;
use mayfly_http::{CONTINUE_RESPONSE, RequestParser};

pub use mayfly_http::{HttpError, Limits, Request, Response, reason_phrase};

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Size limits of requests.
    pub limits: Limits,
    /// How long a connection may sit between requests.
    pub idle_timeout: Duration,
    /// How long a started request may go without receiving anything.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves HTTP on `port` with `handler`, one task per connection, forever.
pub async fn serve<H, F>(port: u16, handler: H) -> Result<(), NetError>
where
    H: Fn(Request) -> F + Clone + 'static,
    F: Future<Output = Response> + 'static,
{
    serve_with(port, ServerConfig::default(), handler).await
}

/// [`serve`] with a configuration.
pub async fn serve_with<H, F>(port: u16, config: ServerConfig, handler: H) -> Result<(), NetError>
where
    H: Fn(Request) -> F + Clone + 'static,
    F: Future<Output = Response> + 'static,
{
    let mut listener = TcpListener::bind(port)?;
    log::info!("http: listening on port {port}");
    loop {
        let stream = listener.accept().await?;
        spawn(connection(stream, config, handler.clone()));
    }
}

async fn send(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> bool {
    let mut out = Vec::with_capacity(response.body.len() + 128);
    if head_only {
        response.encode_head(keep_alive, &mut out);
    } else {
        response.encode(keep_alive, &mut out);
    }
    stream.write_all(&out).await.is_ok()
}

/// Serves one connection until it closes, errs, idles out, or asks to close.
async fn connection<H, F>(mut stream: TcpStream, config: ServerConfig, handler: H)
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let mut parser = RequestParser::new(config.limits);
    let mut buf = vec![0u8; 4096];
    // Received bytes the parser could not take yet (it holds at most one request's worth).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        match parser.next_request() {
            Ok(Some(request)) => {
                let keep_alive = request.keep_alive();
                let head_only = request.method == "HEAD";
                let response = handler(request).await;
                if !send(&mut stream, &response, keep_alive, head_only).await || !keep_alive {
                    break;
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                send(&mut stream, &error.response(), false, false).await;
                break;
            }
        }
        if parser.take_expect_continue() && stream.write_all(CONTINUE_RESPONSE).await.is_err() {
            break;
        }
        if !pending.is_empty() {
            let taken = parser.push(&pending);
            pending.drain(..taken.min(pending.len()));
            continue;
        }
        let limit = if parser.is_idle() { config.idle_timeout } else { config.request_timeout };
        match timeout(limit, stream.read(&mut buf)).await {
            Err(_) => {
                if !parser.is_idle() {
                    let response = Response::text(408, "request timed out\n");
                    send(&mut stream, &response, false, false).await;
                }
                break;
            }
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                let received = buf.get(..n).unwrap_or_default();
                let taken = parser.push(received);
                pending.extend_from_slice(received.get(taken..).unwrap_or_default());
            }
        }
    }
    stream.shutdown();
    let _ = timeout(Duration::from_secs(2), stream.flush()).await;
}
