//! The HTTP gateway's client side: accepts connections within [`Limits`], cuts off clients that
//! send too slowly or sit idle, routes each request to a service and hands it to
//! [`crate::forward`].
//!
//! Nothing a client does can hold anything for long: a connection is bounded in time (head,
//! body, idle) and in number, a request's body in size and, together with every other body
//! being buffered, in total; and a client that goes away at any point releases what its request
//! held (the instance's lease, its place in the queue, its upstream connection), because each of
//! them is owned by the request's future and given back when it is dropped.

use crate::config::GatewayConfig;
use crate::orchestrator::Orchestrator;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The guest library's own request limits (head size, header count, body size): the gateway
/// is never looser, so that a request it forwards is never refused by the instance for its size.
pub const GUEST_LIMITS: mayfly_http::Limits = mayfly_http::Limits::DEFAULT;
/// Room kept in the head for what forwarding adds (a `Host` header, `Connection: close`, a space
/// after each header name).
const HEAD_MARGIN: usize = 128;
/// The largest request head the gateway reads, bytes; a larger one gets 431.
pub const MAX_HEAD_BYTES: usize = GUEST_LIMITS.max_head_bytes - HEAD_MARGIN;
/// Per-connection read buffer bound (hyper's minimum is 8 KiB).
const MAX_BUF: usize = 64 * 1024;
/// How long the accept loop pauses when `accept` fails (out of descriptors or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The gateway's limits towards clients and instances (from `[gateway]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to send a whole request head.
    pub head_timeout: Duration,
    /// Longest pause while sending a request body.
    pub body_timeout: Duration,
    /// An idle connection is closed after this.
    pub keep_alive: Duration,
    /// Client connections at once.
    pub max_connections: usize,
    /// Largest request body, bytes.
    pub max_body: u64,
    /// Request bodies buffered at once, bytes.
    pub body_budget: u64,
    /// Largest response from an instance, bytes.
    pub max_response: u64,
    /// Time for an instance to send its response head.
    pub upstream_head_timeout: Duration,
    /// Longest pause while an instance sends its response body.
    pub upstream_body_timeout: Duration,
}

impl Limits {
    /// The limits configured in `[gateway]`.
    pub fn new(config: &GatewayConfig) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            head_timeout: ms(config.head_timeout_ms),
            body_timeout: ms(config.body_timeout_ms),
            keep_alive: ms(config.keep_alive_timeout_ms),
            max_connections: config.max_connections as usize,
            // Never looser than the guest's.
            max_body: config.max_body_bytes,
            body_budget: config.body_budget_bytes,
            max_response: config.max_response_bytes,
            upstream_head_timeout: ms(config.upstream_head_timeout_ms),
            upstream_body_timeout: ms(config.upstream_body_timeout_ms),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(&GatewayConfig::default())
    }
}

/// What every request of the gateway shares.
pub(crate) struct Gate {
    pub(crate) orch: Arc<Orchestrator>,
    pub(crate) limits: Limits,
    /// Bytes of request body that may still be buffered (one permit per byte).
    pub(crate) body_budget: Arc<Semaphore>,
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// An answer after which the connection is closed (the rest of the request is not read).
pub(crate) fn closing(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = text(status, body);
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

pub(crate) fn unavailable(body: &str, retry_after: u64) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves the gateway on `listener` until `stop` turns true; in-flight connections finish.
pub async fn serve(
    listener: TcpListener,
    orch: Arc<Orchestrator>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let budget =
        usize::try_from(limits.body_budget).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
    let gate = Arc::new(Gate { orch, body_budget: Arc::new(Semaphore::new(budget)), limits });
    let slots = Arc::new(Semaphore::new(gate.limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let mut connections = tokio::task::JoinSet::new();
    let mut accept_failing = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_failing = false;
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        // Over max_connections: closed at once.
                        gate.orch.metrics.refused_connection();
                        drop(stream);
                        continue;
                    };
                    connections.spawn(connection(gate.clone(), stream, slot, stop.clone()));
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: accepting again at once would
                    // spin. Pause, and say so once per run of failures.
                    if !accept_failing {
                        tracing::warn!("accept failed: {e}; pausing accepts briefly");
                        eprintln!("mayfly serve: cannot accept connections: {e}; backing off");
                    }
                    accept_failing = true;
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = stopped(stop.clone()) => break,
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Serves one client connection, within the head, idle and request-body timeouts.
async fn connection(
    gate: Arc<Gate>,
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let _open = OpenConnection::new(&gate);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let service = {
        let gate = gate.clone();
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let busy = Activity::request_started(&activity);
            handle(gate.clone(), req, busy)
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(GUEST_LIMITS.max_headers)
        .max_buf_size(MAX_BUF)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stop = std::pin::pin!(stopped(stop));
    let limits = &gate.limits;
    let mut stopping = false;
    let tick = (limits.head_timeout.min(limits.keep_alive) / 4)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("client connection ended: {e}");
                }
                break;
            }
            // Shutting down: requests in flight finish, idle and slow clients are still cut off.
            _ = &mut stop, if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => match activity.verdict(limits) {
                Verdict::Fine => {}
                Verdict::SlowHead => {
                    gate.orch.metrics.slow_client("head");
                    break;
                }
                Verdict::Idle => break,
            },
        }
    }
}

/// Counts an open client connection for as long as it lives.
struct OpenConnection(Arc<Gate>);

impl OpenConnection {
    fn new(gate: &Arc<Gate>) -> OpenConnection {
        gate.orch.metrics.connection(1);
        OpenConnection(gate.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.orch.metrics.connection(-1);
    }
}

/// What a connection is doing, for its timeouts: when it last moved bytes, whether a request
/// head is being received (since when), how many requests are being handled.
struct Activity {
    base: Instant,
    /// Milliseconds since `base` of the last byte read or written.
    last: AtomicU64,
    /// 1 + milliseconds since `base` when the head being received started; 0: none.
    head_since: AtomicU64,
    in_flight: AtomicU32,
}

enum Verdict {
    Fine,
    SlowHead,
    Idle,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
            // The first head is awaited from the moment the connection is accepted: a client
            // that connects and sends nothing is cut off like a slow one.
            head_since: AtomicU64::new(1),
            in_flight: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self, bytes: usize) {
        let now = self.now_ms();
        self.last.store(now, Ordering::Relaxed);
        // Bytes arriving while no request is being handled start the next head.
        if bytes > 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(now + 1, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A head was received whole: the request is handled until the returned guard drops.
    fn request_started(this: &Arc<Activity>) -> Busy {
        this.in_flight.fetch_add(1, Ordering::Relaxed);
        this.head_since.store(0, Ordering::Relaxed);
        Busy(this.clone())
    }

    fn verdict(&self, limits: &Limits) -> Verdict {
        let now = self.now_ms();
        let head = self.head_since.load(Ordering::Relaxed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if head != 0 && now.saturating_sub(head - 1) >= ms(limits.head_timeout) {
            return Verdict::SlowHead;
        }
        let idle = now.saturating_sub(self.last.load(Ordering::Relaxed));
        if head == 0 && self.in_flight.load(Ordering::Relaxed) == 0 && idle >= ms(limits.keep_alive)
        {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// A request being handled on a connection (its head is complete).
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.wrote();
    }
}

/// A client stream that records its activity.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.activity.read(buf.filled().len() - before);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = result {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(_)) = result {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn handle(
    gate: Arc<Gate>,
    req: Request<Incoming>,
    _busy: Busy,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned());
    let path = req.uri().path().to_owned();
    let Some(service) = gate.orch.route(host.as_deref(), &path) else {
        return Ok(text(StatusCode::NOT_FOUND, "no service is routed here"));
    };
    let response = crate::forward::forward(&gate, &service, req, arrived).await;
    gate.orch.metrics.request(
        &service,
        response.status().as_u16(),
        arrived.elapsed().as_secs_f64(),
    );
    Ok(response)
}
