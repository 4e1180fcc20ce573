//! The gateway under test: its configuration, starting it, and talking to it (requests and
//! the admin API, through the one small HTTP client).

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-of-at-least-32-characters";

/// A running `mayfly serve`, killed on drop.
pub(super) struct Gateway {
    child: Child,
    pub(super) gateway: SocketAddr,
    pub(super) admin: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM: the gateway drains and destroys its instances (which would also die with it:
        // they are tied to its life), then exits; SIGKILL if it does not within 20 s.
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while terminated && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn config(image: &Path, dir: &Path) -> String {
    let service = |name: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nimage = \"{}\"\nhost = \"{name}.bench\"\nmem_mib = 16\n{extra}\n",
            image.display()
        )
    };
    let _ = dir;
    [
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\nmemory_budget_mib = 262144\n"
        ),
        service("warm", "min_instances = 1\nwarm_shells = 0\nidle_timeout_ms = 600000"),
        service("cold", "warm_shells = 0\nidle_timeout_ms = 1\nmax_instances = 1"),
        service("shell", "warm_shells = 1\nidle_timeout_ms = 1\nmax_instances = 1"),
        service("perreq", "mode = \"per-request\"\nwarm_shells = 2\nmax_instances = 4"),
        service("idle", "warm_shells = 0\nmax_instances = 4000\nidle_timeout_ms = 600000"),
    ]
    .join("\n")
}

pub(super) fn start_gateway(mayfly: &Path, config_path: &Path, state: &Path) -> Result<Gateway> {
    let mut child = Command::new(mayfly)
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .env("MAYFLY_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start mayfly serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addrs = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .context("mayfly serve did not get ready in 120 s")?;
        if let Some(rest) = line.strip_prefix("mayfly serve: gateway on http://") {
            let mut words = rest.split_whitespace();
            let gateway = words.next().and_then(|a| a.parse().ok());
            let admin = rest
                .split("admin API on http://")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            addrs = gateway.zip(admin);
        }
        if line == "mayfly serve: ready" {
            break;
        }
        if line.contains("error") {
            bail!("mayfly serve failed: {line}");
        }
    }
    let (gateway, admin) = addrs.context("mayfly serve printed no addresses")?;
    Ok(Gateway { child, gateway, admin })
}

/// One HTTP/1.1 exchange on `stream`; returns the status.
pub(super) fn exchange<S: std::io::Read + std::io::Write>(
    stream: &mut S,
    request: &[u8],
) -> Result<u16> {
    Ok(mayfly_protocol::http::exchange(stream, request)?.status)
}

pub(super) fn get(host: &str) -> Vec<u8> {
    format!("GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

pub(super) fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// `method path` on the admin API with `body`: the JSON answer (an error unless 200).
pub(super) fn admin(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<serde_json::Value> {
    let auth = format!("Bearer {TOKEN}");
    let timeouts = (Duration::from_secs(5), Duration::from_secs(30));
    let reply = mayfly_protocol::http::request(
        admin,
        (method, path),
        &[("Authorization", &auth)],
        body.as_bytes(),
        timeouts,
    )
    .with_context(|| format!("admin {method} {path}"))?;
    if reply.status != 200 {
        bail!("admin {method} {path} failed: {}", String::from_utf8_lossy(&reply.body).trim());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

pub(super) fn admin_get(admin_addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    admin(admin_addr, "GET", path, "")
}

pub(super) fn admin_put(admin_addr: SocketAddr, path: &str, body: &str) -> Result<()> {
    admin(admin_addr, "PUT", path, body).map(drop)
}

/// Instances of `service` in `state`.
/// (From `/services`, which only counts: `/instances` reads every process's memory from /proc,
/// which with a thousand instances would load the machine being measured.)
pub(super) fn count(admin: SocketAddr, service: &str, state: &str) -> Result<usize> {
    let services = admin_get(admin, "/services")?;
    let found = services.as_array().into_iter().flatten().find(|s| s["spec"]["name"] == service);
    let n = found.and_then(|s| s["instances"][state].as_u64()).unwrap_or(0);
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Waits (bounded) until `service` has `n` instances in `state`.
pub(super) fn wait_for(
    admin: SocketAddr,
    service: &str,
    state: &str,
    n: usize,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while count(admin, service, state)? != n {
        if Instant::now() > deadline {
            bail!("{service} did not reach {n} {state} instance(s) within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
