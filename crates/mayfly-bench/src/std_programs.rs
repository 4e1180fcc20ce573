//! `mayfly bench std`: ordinary std programs as unikernels, side by side in one run.
//!
//! 1. std-hello (`examples/std-hello quick`): the whole `mayfly run`, spawn to reaped, against
//!    the no_std hello's (`examples/hello 0`), interleaved (which goes first alternates);
//!    both stripped image sizes.
//! 2. axum-hello (`examples/axum-hello`, axum + tokio + serde), as a unikernel with
//!    `--publish 127.0.0.1:0:80` against the same program run natively (a static release
//!    binary): boot to first HTTP response (spawn, learn the port, `GET /` until a complete
//!    200 answer), interleaved; keep-alive throughput on one connection (sequential `GET /`),
//!    a few rounds per side, interleaved; the stripped image against the native binary.

use super::report::machine_line;
use super::{Report, Row, Summary, summarize};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings of the std benchmark.
#[derive(Debug, Clone)]
pub struct StdBench {
    /// Whole runs measured of each hello.
    pub runs: usize,
    /// Boots measured of each axum side.
    pub boots: usize,
    /// Length of one throughput round.
    pub duration: Duration,
    /// examples/std-hello.
    pub std_hello: PathBuf,
    /// examples/hello (no_std).
    pub hello: PathBuf,
    /// examples/axum-hello.
    pub axum: PathBuf,
    /// Cargo target directory for the builds.
    pub target_dir: PathBuf,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const BODY: &[u8] = b"hello from axum\n";
const ROUNDS: usize = 3;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn build(krate: &Path, target_dir: &Path) -> Result<mayfly_cli::builder::BuiltImage> {
    super::require_crate("guest", krate, "mayfly bench std")?;
    mayfly_cli::builder::build(&mayfly_cli::builder::BuildRequest {
        crate_dir: krate.to_path_buf(),
        output: None,
        target_dir: Some(target_dir.to_path_buf()),
        keep_symbols: false,
    })
}

/// One whole `mayfly run image -- args`, spawn to reaped, in ms.
fn whole_run(mayfly: &Path, image: &Path, args: &[&str]) -> Result<f64> {
    let start = Instant::now();
    let status = Command::new(mayfly)
        .arg("run")
        .arg(image)
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run mayfly")?;
    let took = ms(start.elapsed());
    if !status.success() {
        bail!("`mayfly run {} {}` failed ({status})", image.display(), args.join(" "));
    }
    Ok(took)
}

/// A keep-alive HTTP client for axum-hello's `GET /`.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buf: Vec::with_capacity(1024) })
    }

    /// Sends `GET /` and reads a complete 200 answer with axum-hello's body.
    fn get(&mut self) -> Result<()> {
        self.stream.write_all(REQUEST)?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..at]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 200") {
                    bail!("the server answered {:?}", head.lines().next().unwrap_or_default());
                }
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .context("no Content-Length")?;
                if self.buf.len() >= at + 4 + length {
                    if self.buf.get(at + 4..) != Some(BODY) {
                        bail!("unexpected body {:?}", String::from_utf8_lossy(&self.buf[at + 4..]));
                    }
                    return Ok(());
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the connection mid-response");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A running axum-hello, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts axum-hello as a unikernel (`mayfly` given) or natively and waits for its address
/// (the monitor's "publishing" line, which comes before the guest listens; the native
/// program's "listening on port" line).
fn start(mayfly: Option<&Path>, program: &Path) -> Result<Server> {
    let mut command = match mayfly {
        Some(mayfly) => {
            let mut c = Command::new(mayfly);
            c.arg("run").arg(program).args(["--publish", "127.0.0.1:0:80"]);
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c
        }
        None => {
            let mut c = Command::new(program);
            c.arg("0").stdout(Stdio::piped()).stderr(Stdio::null());
            c
        }
    };
    let mut child = command.stdin(Stdio::null()).spawn().context("cannot start axum-hello")?;
    let pipe: Box<dyn Read> = match (child.stderr.take(), child.stdout.take()) {
        (Some(err), _) if mayfly.is_some() => Box::new(err),
        (_, Some(out)) => Box::new(out),
        _ => bail!("no output pipe"),
    };
    let mut server = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
    for line in BufReader::new(pipe).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("mayfly: publishing ") {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            server.addr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
            return Ok(server);
        }
        if let Some(port) = line.strip_prefix("listening on port ") {
            server.addr.set_port(port.trim().parse().context("bad port")?);
            return Ok(server);
        }
    }
    bail!("axum-hello stopped before saying where it listens")
}

/// Spawn to the first complete answer to `GET /` (retried until the server listens), in ms.
fn boot(mayfly: Option<&Path>, program: &Path) -> Result<f64> {
    let begin = Instant::now();
    let server = start(mayfly, program)?;
    let deadline = begin + IO_TIMEOUT;
    loop {
        match Client::connect(server.addr).and_then(|mut c| c.get()) {
            Ok(()) => return Ok(ms(begin.elapsed())),
            Err(e) if Instant::now() > deadline => return Err(e.context("no first response")),
            Err(_) => {}
        }
    }
}

/// Sequential keep-alive requests on one connection for `duration`: requests per second.
fn keep_alive_rate(addr: SocketAddr, duration: Duration) -> Result<f64> {
    let mut client = Client::connect(addr)?;
    for _ in 0..50 {
        client.get()?; // warm-up
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        client.get()?;
        done += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Both orders, alternating with `turn`: `(first, second)` are run and returned as (a, b).
fn interleaved<T>(
    turn: usize,
    mut a: impl FnMut() -> Result<T>,
    mut b: impl FnMut() -> Result<T>,
) -> Result<(T, T)> {
    if turn.is_multiple_of(2) {
        let x = a()?;
        Ok((x, b()?))
    } else {
        let y = b()?;
        Ok((a()?, y))
    }
}

fn size(x: f64) -> Summary {
    Summary { n: 1, p50: x, p99: x, min: x, max: x }
}

impl StdBench {
    /// Builds everything, measures, and returns the report.
    pub fn run(&self) -> Result<Report> {
        eprintln!("building std-hello, hello, axum-hello (unikernel and native) ...");
        let std_hello = build(&self.std_hello, &self.target_dir)?;
        let hello = build(&self.hello, &self.target_dir)?;
        let axum = build(&self.axum, &self.target_dir)?;
        let native = super::build_native(&self.axum, &self.target_dir, "axum-hello")?;
        let mayfly = super::mayfly_binary()?;

        let warmup = 3;
        let (mut std_runs, mut hello_runs) = (Vec::new(), Vec::new());
        for turn in 0..warmup + self.runs {
            let (s, h) = interleaved(
                turn,
                || whole_run(&mayfly, &std_hello.path, &["quick"]),
                || whole_run(&mayfly, &hello.path, &["0"]),
            )?;
            if turn >= warmup {
                std_runs.push(s);
                hello_runs.push(h);
            }
        }
        let (mut uni_boots, mut nat_boots) = (Vec::new(), Vec::new());
        for turn in 0..2 + self.boots {
            let (u, n) =
                interleaved(turn, || boot(Some(&mayfly), &axum.path), || boot(None, &native))?;
            if turn >= 2 {
                uni_boots.push(u);
                nat_boots.push(n);
            }
        }
        let (uni, nat) = (start(Some(&mayfly), &axum.path)?, start(None, &native)?);
        let (mut uni_rates, mut nat_rates) = (Vec::new(), Vec::new());
        for turn in 0..ROUNDS {
            let (u, n) = interleaved(
                turn,
                || keep_alive_rate(uni.addr, self.duration),
                || keep_alive_rate(nat.addr, self.duration),
            )?;
            uni_rates.push(u);
            nat_rates.push(n);
        }
        drop((uni, nat));

        let native_size = std::fs::metadata(&native)?.len() as f64;
        let rows = vec![
            Row {
                metric: "std-hello whole `mayfly run` vs no_std hello (ms)".into(),
                mayfly: summarize("std-hello runs", &std_runs)?,
                baseline: Some(summarize("hello runs", &hello_runs)?),
            },
            Row {
                metric: "std-hello vs no_std hello stripped image (bytes)".into(),
                mayfly: size(std_hello.size as f64),
                baseline: Some(size(hello.size as f64)),
            },
            Row {
                metric: "axum-hello stripped image vs native binary (bytes)".into(),
                mayfly: size(axum.size as f64),
                baseline: Some(size(native_size)),
            },
            Row {
                metric: "axum-hello spawn → first HTTP response (ms)".into(),
                mayfly: summarize("unikernel boots", &uni_boots)?,
                baseline: Some(summarize("native boots", &nat_boots)?),
            },
            Row {
                metric: "axum-hello keep-alive, one connection (req/s)".into(),
                mayfly: summarize("unikernel rounds", &uni_rates)?,
                baseline: Some(summarize("native rounds", &nat_rates)?),
            },
        ];
        let ratio = |row: &Row| row.mayfly.p50 / row.baseline.map_or(f64::NAN, |b| b.p50);
        let targets = vec![
            (
                format!("std-hello whole run ≤ 1.5× no_std hello's ({:.2}x)", ratio(&rows[0])),
                ratio(&rows[0]) <= 1.5,
            ),
            (
                format!("std-hello image ≤ 1 MiB ({} bytes)", std_hello.size),
                std_hello.size <= 1 << 20,
            ),
            (format!("axum-hello image ≤ 3 MiB ({} bytes)", axum.size), axum.size <= 3 << 20),
            (
                format!("axum boot to first response p50 ≤ 10 ms ({:.2} ms)", rows[3].mayfly.p50),
                rows[3].mayfly.p50 <= 10.0,
            ),
            (
                format!("axum keep-alive ≥ 50% of native ({:.0}%)", 100.0 * ratio(&rows[4])),
                ratio(&rows[4]) >= 0.5,
            ),
        ];
        Ok(Report {
            name: "std".into(),
            description: format!(
                "std programs: std-hello's whole `mayfly run` against the no_std hello's, {} runs \
                 each after {warmup} warm-up, interleaved; axum-hello as a unikernel \
                 (`--publish`, user-mode networking) against the same program natively: {} boots \
                 each to the first complete `GET /` answer, interleaved, and {ROUNDS} rounds of \
                 {:.1} s of sequential keep-alive requests on one connection per side, \
                 interleaved.",
                self.runs,
                self.boots,
                self.duration.as_secs_f64()
            ),
            command: format!(
                "mayfly bench std --runs {} --boots {} --duration {}",
                self.runs,
                self.boots,
                self.duration.as_secs_f64()
            ),
            machine: machine_line(),
            cpu: super::report::cpu_model(),
            rows,
            targets,
        })
    }
}
