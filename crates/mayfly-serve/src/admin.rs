//! The admin API: JSON over HTTP (its types: [`mayfly_protocol::admin`]), on its own (loopback by default) address, behind a bearer
//! token. The control plane is the [`Orchestrator`]'s actions; this only translates.
//!
//! | method and path | action |
//! |---|---|
//! | `GET /services` | list services |
//! | `PUT /services/<name>` (a JSON [`ServiceSpec`]) | deploy or update |
//! | `DELETE /services/<name>` | remove |
//! | `GET /instances` | list instances (state, age, requests, memory) |
//! | `GET /services/<name>/logs?lines=N` | the service's console output |
//! | `GET /metrics` | Prometheus metrics (no token needed) |

use crate::config::ServiceSpec;
use crate::orchestrator::Orchestrator;
use crate::policy::ApiPolicy;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mayfly_protocol::admin::ErrorBody;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Admin connections open at once; more are closed at once (the API is for operators and
/// scripts, not for crowds).
const ADMIN_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head (also the idle keep-alive limit) and,
/// separately, a request body.
const ADMIN_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest service spec accepted.
const MAX_SPEC_BYTES: usize = 1 << 20;

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &ErrorBody { error: message.to_owned() })
}

/// Compares tokens in time independent of where they differ.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Serves the admin API until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    orch: Arc<Orchestrator>,
    token: Arc<String>,
    policy: Arc<ApiPolicy>,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors: pause rather than spin.
                        tracing::warn!("admin API: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let orch = orch.clone();
                let token = token.clone();
                let policy = policy.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let service = hyper::service::service_fn(move |req| {
                        handle(orch.clone(), token.clone(), policy.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(ADMIN_CLIENT_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = crate::gateway::stopped(stop.clone()) => break,
        }
    }
}

async fn handle(
    orch: Arc<Orchestrator>,
    token: Arc<String>,
    policy: Arc<ApiPolicy>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if req.method() == Method::GET && path == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(orch.metrics.encode())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(response);
    }
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| token_matches(given, token.as_bytes()));
    if !authorized {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <token>` (see `mayfly serve` output)",
        ));
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method().clone();
    let response = match (method, segments.as_slice()) {
        (Method::GET, ["services"]) => json(StatusCode::OK, &orch.services()),
        (Method::GET, ["instances"]) => json(StatusCode::OK, &orch.instances()),
        (Method::GET, ["services", name, "logs"]) => {
            let lines = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("lines="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(200);
            match orch.logs(name, lines) {
                Some(lines) => json(StatusCode::OK, &lines),
                None => error(StatusCode::NOT_FOUND, &format!("no service named {name:?}")),
            }
        }
        (Method::PUT, ["services", name]) => {
            let name = (*name).to_owned();
            let body = Limited::new(req.into_body(), MAX_SPEC_BYTES).collect();
            let body = match tokio::time::timeout(ADMIN_CLIENT_TIMEOUT, body).await {
                Ok(Ok(body)) => body.to_bytes(),
                Ok(Err(_)) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "spec too large")),
                Err(_) => {
                    return Ok(error(
                        StatusCode::REQUEST_TIMEOUT,
                        "the spec did not arrive in time",
                    ));
                }
            };
            match serde_json::from_slice::<ServiceSpec>(&body) {
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("invalid service spec: {e}")),
                Ok(spec) if spec.name != name => error(
                    StatusCode::BAD_REQUEST,
                    &format!("the spec's name {:?} differs from the path's {name:?}", spec.name),
                ),
                Ok(spec) => {
                    let _one_at_a_time = policy.deploys.lock().await;
                    let others = orch.services();
                    let all = others.iter().map(|s| &s.spec).filter(|s| s.name != name);
                    let admitted = spec.validate().map_err(|e| e.to_string());
                    match admitted
                        .and_then(|()| policy.admit(&spec))
                        .and_then(|()| policy.fits(all.chain([&spec])))
                    {
                        Err(refused) => error(StatusCode::BAD_REQUEST, &refused),
                        Ok(()) => match orch.deploy(spec).await {
                            Ok(()) => {
                                json(StatusCode::OK, &serde_json::json!({ "deployed": name }))
                            }
                            Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                        },
                    }
                }
            }
        }
        (Method::DELETE, ["services", name]) => {
            if orch.remove(name) {
                json(StatusCode::OK, &serde_json::json!({ "removed": name }))
            } else {
                error(StatusCode::NOT_FOUND, &format!("no service named {name:?}"))
            }
        }
        _ => error(StatusCode::NOT_FOUND, "unknown admin endpoint"),
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::token_matches;
    use crate::config::{Mode, ServiceSpec};
    use crate::orchestrator::ServiceInfo;

    #[test]
    fn what_the_gateway_lists_is_what_mayfly_ps_reads() {
        let mut spec = ServiceSpec::new("kv", "examples/kv".into(), "/kv");
        spec.mode = Mode::PerRequest;
        let info = ServiceInfo {
            spec,
            image: "/k.img".into(),
            instances: [("ready".to_owned(), 2)].into(),
            queued: 3,
            cold_starts: 4,
            backoff_seconds: 0.0,
            last_crash: None,
        };
        let text = serde_json::to_vec(&info).unwrap();
        let read: mayfly_protocol::admin::ServiceInfo = serde_json::from_slice(&text).unwrap();
        assert_eq!((read.spec.name.as_str(), read.spec.mode.as_str()), ("kv", "per-request"));
        assert_eq!((read.instances, read.queued, read.cold_starts), (info.instances, 3, 4));
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(token_matches(b"secret", b"secret"));
        assert!(!token_matches(b"secreT", b"secret"));
        assert!(!token_matches(b"secret1", b"secret"));
        assert!(!token_matches(b"", b"secret"));
    }
}
