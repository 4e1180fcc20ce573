//! The HTTP gateway: routes each request to a service, waits for an instance with room (booting
//! one if needed), forwards the request to the instance's published port, and answers.

use crate::orchestrator::{AcquireError, Orchestrator};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long the gateway keeps trying to connect to a fresh instance that refuses.
const CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest request body the gateway forwards.
const MAX_BODY: usize = 8 << 20;
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

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn unavailable(body: &str, retry_after: u64) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves the gateway on `listener` until `stop` turns true; in-flight connections finish.
pub async fn serve(listener: TcpListener, orch: Arc<Orchestrator>, stop: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let orch = orch.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(orch.clone(), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stopped(stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            _ = stopped(stop.clone()) => break,
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

async fn handle(
    orch: Arc<Orchestrator>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned());
    let path = req.uri().path().to_owned();
    let Some(service) = orch.route(host.as_deref(), &path) else {
        return Ok(text(StatusCode::NOT_FOUND, "no service is routed here"));
    };
    let response = forward(&orch, &service, req, arrived).await;
    orch.metrics.request(&service, response.status().as_u16(), arrived.elapsed().as_secs_f64());
    Ok(response)
}

async fn forward(
    orch: &Arc<Orchestrator>,
    service: &str,
    req: Request<Incoming>,
    arrived: Instant,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large or broken"),
    };
    let lease = match orch.acquire(service).await {
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
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = path_and_query.to_owned();
    let authority = lease.addr.authority();
    let per_request = orch.is_per_request(service);
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
    let started = Instant::now();
    let result = loop {
        let mut sender = match lease.pool.get(&lease.addr).await {
            Ok(sender) => sender,
            // A fresh instance on a tap is reached directly: until its guest listens, the
            // connection is refused, so try again (for published ports the monitor holds
            // connections itself and this does not happen).
            Err(_) if lease.cold_since.is_some() && started.elapsed() < CONNECT_PATIENCE => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
            Err(e) => break Err(e.to_string()),
        };
        let request = match build() {
            Ok(r) => r,
            Err(e) => break Err(e.to_string()),
        };
        match sender.send_request(request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let collected = body.collect().await;
                if collected.is_ok() && !per_request {
                    lease.pool.put(sender);
                }
                break collected
                    .map(|b| Response::from_parts(parts, Full::new(b.to_bytes())))
                    .map_err(|e| e.to_string());
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    match &result {
        Ok(_) => orch.release(&lease),
        Err(_) => orch.release_failed(&lease),
    }
    match result {
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
            text(StatusCode::BAD_GATEWAY, &format!("the {service} instance failed"))
        }
    }
}
