//! `mayfly bench serve`: request to response through `mayfly serve` for a warm instance, a cold
//! start from zero, a cold start with a prepared shell, and per-request mode; against, as the
//! baseline, the same handler spawned as a native process per request (CGI-style fork/exec).
//! Also density: idle instances started in steps, with the host memory each costs (PSS of its
//! monitor process) and the cold-start latency measured again at each step.

use super::report::machine_line;
use super::{Report, Row, Summary};
use anyhow::{Context, Result, bail};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod gateway;
use gateway::{
    Gateway, admin_get, admin_put, config, connect, exchange, get, start_gateway, wait_for,
};

/// Throughput rounds per side (interleaved).
const THROUGHPUT_ROUNDS: usize = 3;

/// Settings of the serve benchmark.
#[derive(Debug, Clone)]
pub struct ServeBench {
    /// Sequential requests for the warm latency figures.
    pub requests: usize,
    /// Cold starts measured per kind.
    pub cold: usize,
    /// Seconds of each throughput phase.
    pub duration: f64,
    /// Idle-instance counts for the density steps.
    pub density: Vec<usize>,
    /// The http-hello guest crate.
    pub hello_crate: PathBuf,
    /// The native baseline crate (bench/native-http; `--cgi` answers one request on stdout).
    pub native_crate: PathBuf,
    /// Cargo target directory.
    pub target_dir: PathBuf,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(samples: &[f64]) -> Result<Summary> {
    super::summarize("the serve benchmark", samples)
}

/// `n` sequential keep-alive requests; latencies in ms.
fn warm_latencies(addr: SocketAddr, host: &str, n: usize) -> Result<Vec<f64>> {
    warm_latencies_on(&mut connect(addr)?, host, n)
}

/// Like [`warm_latencies`], straight to an instance's published Unix socket (`unix:PATH`, as
/// the admin API lists it: instances listen on no TCP port).
fn instance_latencies(addr: &str, host: &str, n: usize) -> Result<Vec<f64>> {
    let path = addr.strip_prefix("unix:").context("the instance's address is not a Unix socket")?;
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("cannot connect to the instance at {path}"))?;
    warm_latencies_on(&mut stream, host, n)
}

fn warm_latencies_on<S: std::io::Read + std::io::Write>(
    stream: &mut S,
    host: &str,
    n: usize,
) -> Result<Vec<f64>> {
    let request = get(host);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        if exchange(stream, &request)? != 200 {
            bail!("warm request to {host} failed");
        }
        out.push(ms(start.elapsed()));
    }
    Ok(out)
}

/// Cold starts of `service`: wait for zero instances, then time one request.
fn cold_latencies(gw: &Gateway, service: &str, n: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        wait_for(gw.admin, service, "ready", 0, Duration::from_secs(10))?;
        if service == "shell" {
            wait_for(gw.admin, service, "standby", 1, Duration::from_secs(10))?;
        }
        let start = Instant::now();
        let mut stream = connect(gw.gateway)?;
        if exchange(&mut stream, &get(&format!("{service}.bench")))? != 200 {
            bail!("cold request to {service} failed");
        }
        out.push(ms(start.elapsed()));
    }
    Ok(out)
}

/// Requests from `workers` threads, each `make_request` returning one latency, for `duration`;
/// returns requests per second.
fn throughput<F>(workers: usize, duration: Duration, make_request: F) -> Result<f64>
where
    F: Fn() -> Result<f64> + Send + Sync + 'static,
{
    let f = std::sync::Arc::new(make_request);
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || -> Result<usize> {
                let mut n = 0;
                while start.elapsed() < duration {
                    f()?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn per_request_once(gateway: SocketAddr) -> Result<f64> {
    let start = Instant::now();
    let mut stream = connect(gateway)?;
    if exchange(&mut stream, &get("perreq.bench"))? != 200 {
        bail!("per-request call failed");
    }
    Ok(ms(start.elapsed()))
}

fn cgi_once(native: &Path) -> Result<f64> {
    let start = Instant::now();
    let out = Command::new(native).arg("--cgi").stdin(Stdio::null()).output()?;
    if !out.status.success() || !out.stdout.starts_with(b"HTTP/1.1 200") {
        bail!("the native CGI baseline failed");
    }
    Ok(ms(start.elapsed()))
}

/// Proportional set size of process `pid`, KiB.
fn pss_kib(pid: u64) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find(|l| l.starts_with("Pss:"))?.split_whitespace().nth(1)?.parse().ok()
}

impl ServeBench {
    /// Runs every phase and returns the report.
    pub fn run(&self) -> Result<Report> {
        let super::Contestants { image, native } = super::build_contestants(
            "mayfly bench serve",
            &self.hello_crate,
            &self.native_crate,
            "native-http",
            &self.target_dir,
        )?;
        let work = self.target_dir.join("serve-bench");
        std::fs::create_dir_all(&work)?;
        let config_path = work.join("mayfly.toml");
        std::fs::write(&config_path, config(&image.path, &work))?;
        let mayfly = super::mayfly_binary()?;
        let gw = start_gateway(&mayfly, &config_path, &work)?;
        wait_for(gw.admin, "warm", "ready", 1, Duration::from_secs(10))?;

        eprintln!("warm requests: through the gateway and straight to the instance ...");
        let instances = admin_get(gw.admin, "/instances")?;
        let direct: String = instances
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["service"] == "warm" && i["state"] == "ready")
            .and_then(|i| Some(i["addr"].as_str()?.to_owned()))
            .context("no warm instance")?;
        warm_latencies(gw.gateway, "warm.bench", 100)?;
        let mut via_gateway = Vec::new();
        let mut straight = Vec::new();
        // Four turns per side; which side goes first alternates (as in every phase below).
        for turn in 0..4 {
            let gateway_first = turn % 2 == 0;
            if gateway_first {
                via_gateway.extend(warm_latencies(gw.gateway, "warm.bench", self.requests / 4)?);
            }
            straight.extend(instance_latencies(&direct, "warm.bench", self.requests / 4)?);
            if !gateway_first {
                via_gateway.extend(warm_latencies(gw.gateway, "warm.bench", self.requests / 4)?);
            }
        }

        eprintln!("cold starts: from zero, and with a prepared shell ...");
        let mut cold = Vec::new();
        let mut shell = Vec::new();
        for turn in 0..self.cold {
            if turn % 2 == 0 {
                cold.extend(cold_latencies(&gw, "cold", 1)?);
                shell.extend(cold_latencies(&gw, "shell", 1)?);
            } else {
                shell.extend(cold_latencies(&gw, "shell", 1)?);
                cold.extend(cold_latencies(&gw, "cold", 1)?);
            }
        }

        eprintln!("per-request mode against fork/exec per request ...");
        let mut per_request = Vec::new();
        let mut cgi = Vec::new();
        for turn in 0..self.cold * 2 {
            if turn % 2 == 0 {
                per_request.push(per_request_once(gw.gateway)?);
                cgi.push(cgi_once(&native)?);
            } else {
                cgi.push(cgi_once(&native)?);
                per_request.push(per_request_once(gw.gateway)?);
            }
        }
        let duration = Duration::from_secs_f64(self.duration);
        let (mut per_request_rps, mut cgi_rps) = (Vec::new(), Vec::new());
        for round in 0..THROUGHPUT_ROUNDS {
            eprintln!("per-request throughput: round {}/{THROUGHPUT_ROUNDS} ...", round + 1);
            let gateway = gw.gateway;
            let native_cgi = native.clone();
            let mayfly_round = move || throughput(4, duration, move || per_request_once(gateway));
            let cgi_round = move || throughput(4, duration, move || cgi_once(&native_cgi));
            if round % 2 == 0 {
                per_request_rps.push(mayfly_round()?);
                cgi_rps.push(cgi_round()?);
            } else {
                cgi_rps.push(cgi_round()?);
                per_request_rps.push(mayfly_round()?);
            }
        }

        let mut rows = vec![
            Row {
                metric: "warm request via gateway (ms)".into(),
                mayfly: summary(&via_gateway)?,
                baseline: Some(summary(&straight)?),
            },
            Row {
                metric: "cold start from zero (ms)".into(),
                mayfly: summary(&cold)?,
                baseline: None,
            },
            Row {
                metric: "cold start, prepared shell (ms)".into(),
                mayfly: summary(&shell)?,
                baseline: None,
            },
            Row {
                metric: "per-request mode vs fork/exec (ms)".into(),
                mayfly: summary(&per_request)?,
                baseline: Some(summary(&cgi)?),
            },
            Row {
                metric: "per-request throughput (req/s)".into(),
                mayfly: summary(&per_request_rps)?,
                baseline: Some(summary(&cgi_rps)?),
            },
        ];

        let mut density_notes = Vec::new();
        let mut cold_at_zero = summary(&shell)?.p50;
        let mut cold_at_1000 = None;
        // Judged at every step: the worst step's PSS per monitor process, and its N.
        let mut worst_pss: Option<(f64, usize)> = None;
        for &n in &self.density {
            eprintln!("density: {n} idle instances ...");
            let spec = serde_json::json!({
                "name": "idle", "image": image.path, "host": "idle.bench", "mem_mib": 16,
                "min_instances": n, "max_instances": n.max(1), "warm_shells": 0,
                "idle_timeout_ms": 600000
            });
            admin_put(gw.admin, "/services/idle", &spec.to_string())?;
            wait_for(gw.admin, "idle", "ready", n, Duration::from_secs(60 + n as u64 / 10))?;
            let pids: Vec<u64> = Command::new("pgrep")
                .args(["-f", &format!("run {} --publish", image.path.display())])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter_map(|l| l.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let total: u64 = pids.iter().filter_map(|p| pss_kib(*p)).sum();
            let per = total as f64 / pids.len().max(1) as f64;
            let cold_n = summary(&cold_latencies(&gw, "shell", self.cold)?)?;
            if n == 0 {
                cold_at_zero = cold_n.p50;
            }
            if n >= 1000 {
                cold_at_1000 = Some(cold_n.p50);
            }
            if !pids.is_empty() && worst_pss.is_none_or(|(worst, _)| per > worst) {
                worst_pss = Some((per, n));
            }
            density_notes.push(format!(
                "{n} idle instances: {:.0} KiB PSS per monitor process ({} processes), cold start with a shell p50 {:.3} ms",
                per,
                pids.len(),
                cold_n.p50
            ));
            rows.push(Row {
                metric: format!("cold start with {n} idle instances (ms)"),
                mayfly: cold_n,
                baseline: None,
            });
        }
        let overhead = rows[0].mayfly.p50 - rows[0].baseline.map_or(0.0, |b| b.p50);
        let per_request_rps = rows[4].mayfly.p50;
        let mut targets = vec![
            (
                format!("cold start from zero p50 ≤ 10 ms ({:.3} ms)", rows[1].mayfly.p50),
                rows[1].mayfly.p50 <= 10.0,
            ),
            (
                format!(
                    "cold start with prepared shells p50 ≤ 3 ms ({:.3} ms)",
                    rows[2].mayfly.p50
                ),
                rows[2].mayfly.p50 <= 3.0,
            ),
            (
                format!("warm request overhead of the gateway p50 ≤ 0.3 ms ({overhead:.3} ms)"),
                overhead <= 0.3,
            ),
            (
                format!("per-request mode ≥ 200 requests/s ({per_request_rps:.0}/s)"),
                per_request_rps >= 200.0,
            ),
        ];
        if let Some((per, n)) = worst_pss {
            targets.push((
                format!(
                    "≤ 3 MiB host memory per instance at every density step ({per:.0} KiB PSS, \
                     the worst, at N={n})"
                ),
                per <= 3072.0,
            ));
        }
        if let Some(at_1000) = cold_at_1000 {
            targets.push((
                format!("cold start at N=1000 ≤ 2× N=0 ({at_1000:.3} vs {cold_at_zero:.3} ms)"),
                at_1000 <= 2.0 * cold_at_zero,
            ));
        }
        Ok(Report {
            name: "serve".into(),
            description: format!(
                "Transient services through `mayfly serve` (http-hello, 16 MiB guests). Warm: {} \
                 sequential keep-alive requests via the gateway, baseline the same straight to the \
                 instance; cold starts: {} each, from zero and with a prepared shell, from request \
                 to full response on a new connection; per-request mode against the native handler \
                 spawned per request (fork/exec, CGI-style), latency sequentially and throughput \
                 with 4 clients, {THROUGHPUT_ROUNDS} rounds of {} s per side. Every phase \
                 interleaves the two sides, alternating which goes first. {}",
                self.requests,
                self.cold,
                self.duration,
                density_notes.join("; ")
            ),
            command: format!(
                "mayfly bench serve --requests {} --cold {} --duration {} --density {}",
                self.requests,
                self.cold,
                self.duration,
                self.density.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            ),
            machine: machine_line(),
            cpu: super::report::cpu_model(),
            rows,
            targets,
        })
    }
}
