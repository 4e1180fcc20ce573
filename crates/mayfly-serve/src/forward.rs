//! The gateway's instance side: reads a request's body (bounded in size, time and, with every
//! other body, in total), takes a lease on an instance, forwards the request on a pooled
//! connection (once more on a fresh one if the pooled one had gone stale before anything was
//! sent), and reads the instance's response within its size limit and deadlines.
//!
//! Whatever the request holds is owned by this future: if the client goes away, hyper drops it
//! and the lease, the body budget and the upstream connection are all given back.

use crate::gateway::{GUEST_LIMITS, Gate, closing, text, unavailable};
use crate::orchestrator::AcquireError;
use crate::service::Lease;
use crate::upstream::{ConnPool, Upstream};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// How long the gateway keeps trying to connect to a fresh instance that refuses.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// How long a broken connection waits for its monitor's exit to show, to tell a crash.
const EXIT_PATIENCE: Duration = Duration::from_millis(100);
/// Headers that concern one hop only and are not forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
];

/// How an exchange with an instance failed.
enum UpstreamError {
    /// No connection could be made: the instance is unreachable.
    Connect(String),
    /// The connection broke during the exchange (not the instance's fault as such: if its
    /// process died, the exit watcher counts the crash).
    Broken(String),
    /// The response head did not come in time.
    HeadTimeout,
    /// The response body stalled.
    BodyTimeout,
    /// The response was larger than allowed.
    TooLarge,
}

impl UpstreamError {
    /// Why the instance is taken out of rotation, if it is.
    fn failure(&self) -> Option<&'static str> {
        match self {
            UpstreamError::Connect(_) => Some("unreachable"),
            UpstreamError::Broken(_) => None,
            UpstreamError::HeadTimeout => Some("no response head in time"),
            UpstreamError::BodyTimeout => Some("response body stalled"),
            UpstreamError::TooLarge => Some("response too large"),
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) | UpstreamError::Broken(e) => f.write_str(e),
            other => f.write_str(other.failure().unwrap_or("failed")),
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Forwards `req` to an instance of `service` and returns its response (or the gateway's).
pub(crate) async fn forward(
    gate: &Gate,
    service: &str,
    req: Request<Incoming>,
    arrived: Instant,
) -> Response<Full<Bytes>> {
    let orch = &gate.orch;
    let (parts, body) = req.into_parts();
    let per_request = orch.is_per_request(service);
    // What the instance will receive must fit its own limit on header fields.
    let forwarded = parts.headers.keys().filter(|n| !HOP_BY_HOP.contains(&n.as_str())).count()
        + usize::from(!parts.headers.contains_key(header::HOST))
        + usize::from(per_request);
    if forwarded > GUEST_LIMITS.max_headers {
        return closing(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields");
    }
    let (body, _budget) = match read_body(gate, &parts, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut lease = match orch.acquire(service).await {
        Ok(lease) => lease,
        Err(AcquireError::NotFound) => return text(StatusCode::NOT_FOUND, "no such service"),
        Err(AcquireError::Backoff(why, left)) => {
            let message = format!("service {service} is crash-looping: {why}");
            return unavailable(&message, left.as_secs().max(1));
        }
        Err(AcquireError::StartFailed(why)) => {
            let message = format!("service {service}: its instance failed to start: {why}");
            return text(StatusCode::BAD_GATEWAY, &message);
        }
        Err(e) => return unavailable(&format!("service {service}: {e}"), 1),
    };
    if lease.cold_since.is_some() {
        orch.metrics.cold_start(service);
        orch.metrics.cold_phase(service, "ready", arrived.elapsed().as_secs_f64());
    }
    let authority = lease.addr.authority();
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let build = || {
        let mut upstream_req = Request::builder().method(parts.method.clone()).uri(uri.as_str());
        if !parts.headers.contains_key(header::HOST) {
            upstream_req = upstream_req.header(header::HOST, authority.as_str());
        }
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                upstream_req = upstream_req.header(name, value);
            }
        }
        if per_request {
            upstream_req = upstream_req.header(header::CONNECTION, "close");
        }
        upstream_req.body(Full::new(body.clone()))
    };
    let Ok(request) = build() else {
        return text(StatusCode::BAD_REQUEST, "the request cannot be forwarded");
    };
    match exchange(gate, &lease, request, per_request).await {
        Ok(mut response) => {
            if lease.cold_since.is_some() {
                orch.metrics.cold_phase(service, "boot", lease.started.elapsed().as_secs_f64());
                orch.metrics.cold_phase(service, "first_byte", arrived.elapsed().as_secs_f64());
            }
            for name in HOP_BY_HOP {
                response.headers_mut().remove(name);
            }
            response
        }
        Err(e) => {
            tracing::warn!(service, instance = lease.id, "upstream failed: {e}");
            let broken = matches!(e, UpstreamError::Connect(_) | UpstreamError::Broken(_));
            let exited = match lease.pid {
                Some(pid) if broken => monitor_exited(pid).await,
                _ => false,
            };
            if exited {
                // Its monitor is gone: a crash, counted now rather than when the exit is reaped.
                lease.crashed();
            } else if let Some(why) = e.failure() {
                lease.fail(why);
            }
            drop(lease);
            text(StatusCode::BAD_GATEWAY, &format!("the {service} instance failed: {e}"))
        }
    }
}

/// Whether monitor process `pid` has exited (or is exiting: a broken connection is seen a
/// moment before the process becomes a zombie, so this looks for up to [`EXIT_PATIENCE`]).
async fn monitor_exited(pid: u32) -> bool {
    let deadline = Instant::now() + EXIT_PATIENCE;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(str::to_owned)
        });
        match state.as_deref() {
            None | Some("Z" | "X") => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Reads a request body within the size limit, the progress deadline and the global budget
/// (whose share is held until the request ends).
async fn read_body(
    gate: &Gate,
    parts: &Parts,
    mut body: Incoming,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Response<Full<Bytes>>> {
    let limits = &gate.limits;
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|len| len > limits.max_body) {
        return Err(closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
    }
    if body.is_end_stream() {
        return Ok((Bytes::new(), None));
    }
    let reserve = u32::try_from(declared.unwrap_or(limits.max_body)).unwrap_or(u32::MAX);
    let Ok(budget) = gate.body_budget.clone().try_acquire_many_owned(reserve) else {
        return Err(unavailable("the gateway is buffering too many request bodies", 1));
    };
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(limits.body_timeout, body.frame()).await {
            Err(_) => {
                gate.orch.metrics.slow_client("body");
                return Err(closing(StatusCode::REQUEST_TIMEOUT, "request body too slow"));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!("bad request body: {e}");
                return Err(closing(StatusCode::BAD_REQUEST, "malformed request body"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limits.max_body.min(u64::from(reserve)) {
                return Err(closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), Some(budget)))
}

/// A connection to the lease's instance: pooled, or new (for a fresh instance on a tap, retried
/// until its guest listens).
async fn connect(lease: &Lease) -> Result<Upstream, UpstreamError> {
    let started = Instant::now();
    loop {
        match lease.pool.get(&lease.addr).await {
            Ok(upstream) => return Ok(upstream),
            Err(_) if lease.cold_since.is_some() && started.elapsed() < CONNECT_PATIENCE => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(UpstreamError::Connect(e.to_string())),
        }
    }
}

/// Sends `request` to the lease's instance and reads its response within the limits.
async fn exchange(
    gate: &Gate,
    lease: &Lease,
    request: Request<Full<Bytes>>,
    per_request: bool,
) -> Result<Response<Full<Bytes>>, UpstreamError> {
    let limits = &gate.limits;
    let mut upstream = connect(lease).await?;
    // A pooled connection may have been closed by the instance while it sat idle, before it read
    // anything of this request: then the request goes once more, on a new connection. Always
    // when hyper hands it back unsent; for an idempotent request also when it was written into
    // a connection the instance had already closed (nothing of it was read, no answer came).
    let mut again = (upstream.reused && request.method().is_idempotent()).then(|| request.clone());
    let head = async {
        let mut request = request;
        loop {
            let unsent = match upstream.sender.ready().await {
                Ok(()) => match upstream.sender.try_send_request(request).await {
                    Ok(response) => return Ok(response),
                    Err(mut e) => match e.take_message().or_else(|| {
                        e.error().is_incomplete_message().then(|| again.take()).flatten()
                    }) {
                        Some(unsent) => unsent,
                        None => return Err(UpstreamError::Broken(e.into_error().to_string())),
                    },
                },
                Err(e) if !upstream.reused => return Err(UpstreamError::Broken(e.to_string())),
                Err(_) => request,
            };
            if !upstream.reused {
                return Err(UpstreamError::Broken("the connection was not ready".into()));
            }
            upstream = ConnPool::connect(&lease.addr)
                .await
                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
            request = unsent;
        }
    };
    let response = tokio::time::timeout(limits.upstream_head_timeout, head)
        .await
        .map_err(|_| UpstreamError::HeadTimeout)??;
    let (parts, mut body) = response.into_parts();
    if content_length(&parts.headers).is_some_and(|len| len > limits.max_response) {
        return Err(UpstreamError::TooLarge);
    }
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(limits.upstream_body_timeout, body.frame()).await {
            Err(_) => return Err(UpstreamError::BodyTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(UpstreamError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limits.max_response {
                return Err(UpstreamError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    if !per_request {
        lease.pool.put(upstream);
    }
    Ok(Response::from_parts(parts, Full::new(buf.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

    fn read_head(stream: &mut std::net::TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "the request head");
            head.push(byte[0]);
        }
    }

    fn get() -> Request<Full<Bytes>> {
        Request::builder().uri("/").header("host", "t").body(Full::new(Bytes::new())).unwrap()
    }

    /// The instance closed a pooled connection, and the gateway takes it before it has seen the
    /// close: the request goes on a fresh connection instead of failing.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stale_pooled_connection_is_retried_on_a_fresh_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, closing) = std::sync::mpsc::channel::<()>();
        let (closed, was_closed) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut first, _) = listener.accept().unwrap();
            read_head(&mut first);
            first.write_all(OK).unwrap();
            closing.recv().unwrap();
            first.shutdown(std::net::Shutdown::Both).unwrap();
            drop(first);
            closed.send(()).unwrap();
            let (mut second, _) = listener.accept().unwrap();
            read_head(&mut second);
            second.write_all(OK).unwrap();
        });
        let gate = Gate {
            orch: crate::orchestrator::Orchestrator::start(std::path::PathBuf::new()),
            limits: crate::gateway::Limits::default(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
        };
        let addr = crate::upstream::InstanceAddr::Tcp(addr);
        let lease = Lease::detached(addr, Arc::default());
        let first = exchange(&gate, &lease, get(), false).await;
        assert!(first.is_ok_and(|r| r.status() == 200));
        // Closed while this thread, the runtime's only one, does not let the pooled
        // connection's task run: it cannot have seen the close.
        close.send(()).unwrap();
        was_closed.recv().unwrap();
        match exchange(&gate, &lease, get(), false).await {
            Ok(response) => assert_eq!(response.status(), 200),
            Err(e) => panic!("the request failed: {e}"),
        }
        server.join().unwrap();
    }
}
