//! The gateway and orchestrator (`mayfly-serve` binary): routing, scaling, instances, admin API,
//! metrics.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! `mayfly serve`: transient microservices. An HTTP gateway routes each request to a service,
//! boots a unikernel for it when none is ready (holding the request meanwhile), scales out
//! under load up to a limit, and destroys idle instances, down to zero.
//!
//! - [`config`]: the TOML/JSON service specifications and gateway settings.
//! - [`orchestrator`]: the services and the control-plane actions; [`service`]: one service's
//!   scaling decisions; [`instance`]: one monitor process (a prepared shell, then a guest).
//! - [`gateway`]: the request path (client side; `forward`: instance side); [`admin`]: the
//!   admin API; [`metrics`], [`logs`].

#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
mod forward;
pub mod gateway;
pub mod instance;
pub mod lease;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod orchestrator;
pub mod policy;
pub mod service;
pub mod sockets;
#[allow(unsafe_code)]
pub mod sys;
pub mod token;
pub mod upstream;
pub mod volume;

use config::Config;
use orchestrator::Orchestrator;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {cause}; choose another address (--listen)")]
    Listen { addr: std::net::SocketAddr, cause: std::io::Error },
    #[error(transparent)]
    Deploy(#[from] orchestrator::DeployError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
    #[error("{0}")]
    Budget(String),
}

pub use mayfly_protocol::admin::state_dir;

/// Runs the gateway and admin API with `config` until SIGTERM or SIGINT, then drains and
/// destroys every instance. `mayfly` is the binary that runs monitors and builds images.
pub async fn serve(config: Config, mayfly: PathBuf) -> Result<(), ServeError> {
    let token = token::choose(config.gateway.admin_token.as_deref())?;
    let policy = Arc::new(policy::ApiPolicy::new(&config.gateway, &config.services));
    policy.fits(&config.services).map_err(ServeError::Budget)?;
    let gateway = TcpListener::bind(config.gateway.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: config.gateway.listen, cause: source })?;
    let admin = TcpListener::bind(config.gateway.admin_listen).await.map_err(|source| {
        ServeError::Listen { addr: config.gateway.admin_listen, cause: source }
    })?;
    let token_path = token::write(&state_dir(), &token)?;
    let fds = sys::raise_fd_limit();
    tracing::debug!(fds, "descriptor limit");
    let limits = gateway::Limits::new(&config.gateway);
    let orch = Orchestrator::start(mayfly);
    for spec in config.services {
        orch.deploy(spec).await?;
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let gateway_addr = gateway.local_addr().ok();
    let admin_addr = admin.local_addr().ok();
    let gateway_task = tokio::spawn(gateway::serve(gateway, orch.clone(), limits, stop.clone()));
    let admin_task =
        tokio::spawn(admin::serve(admin, orch.clone(), Arc::new(token), policy, stop.clone()));
    eprintln!(
        "mayfly serve: gateway on http://{} , admin API on http://{} (token in {})",
        gateway_addr.map_or("?".into(), |a| a.to_string()),
        admin_addr.map_or("?".into(), |a| a.to_string()),
        token_path.display()
    );
    for s in orch.services() {
        let route = match (&s.spec.host, &s.spec.path_prefix) {
            (Some(h), Some(p)) => format!("host {h}, path {p}"),
            (Some(h), None) => format!("host {h}"),
            (None, Some(p)) => format!("path {p}"),
            (None, None) => "-".into(),
        };
        eprintln!(
            "mayfly serve: service {} ({route}), {:?} mode, {}..{} instances",
            s.spec.name, s.spec.mode, s.spec.min_instances, s.spec.max_instances
        );
    }
    eprintln!("mayfly serve: ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| ServeError::Listen { addr: config.gateway.listen, cause: source })?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("mayfly serve: shutting down: draining requests in flight");
    let _ = stop_tx.send(true);
    orch.shutdown(Duration::from_secs(10)).await;
    let _ = gateway_task.await;
    admin_task.abort();
    sockets::remove_socket_dir();
    eprintln!("mayfly serve: stopped; every instance destroyed");
    Ok(())
}
