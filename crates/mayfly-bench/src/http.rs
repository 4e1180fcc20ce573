//! `mayfly bench http`: examples/http-hello as a unikernel (`mayfly run --publish 0:80`, user-mode
//! networking) against the same handler as a native Linux process (bench/native-http: one
//! thread, an epoll event loop, a static binary), side by side and interleaved in one run.
//!
//! The load generator is here: std threads and blocking sockets, loopback only, bounded in
//! count and time, checking every response (status 200, `Content-Length`, the exact body).
//! Measured, for both sides:
//!
//! 1. keep-alive latency: sequential `GET /` on one connection, after a warm-up, in turns (the
//!    first request of each turn, which finds the server idle, is also reported apart; the
//!    target counts every request);
//! 2. keep-alive throughput: C connections, each requesting for a fixed time, a few rounds;
//! 3. new connections: connect, `GET /` with `Connection: close`, read to EOF, in turns;
//! 4. boot to first response: spawn, read the published (or bound) port, connect at once,
//!    `GET /`, until the first byte of the answer, from just before the spawn (and, on the way,
//!    spawn to the port being known: for the monitor that is before the guest boots).
//!
//! Plus the resident memory of each server right after each throughput round (`VmRSS`; for the
//! unikernel that is the monitor process, guest memory included) and the stripped image size.

use super::cpu::CpuTime;
use super::report::machine_line;
use super::{Report, Row, Summary, number_after, summarize};
use anyhow::{Context, Result, anyhow, bail};
use mayfly_protocol::standby::MonitorLine;
use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings of the HTTP benchmark.
#[derive(Debug, Clone)]
pub struct HttpBench {
    /// Keep-alive requests measured on each side (after the warm-up).
    pub requests: usize,
    /// Concurrent connections of the throughput test.
    pub concurrency: usize,
    /// Length of one throughput round.
    pub duration: Duration,
    /// New connections measured on each side.
    pub connections: usize,
    /// Boots measured on each side.
    pub boots: usize,
    /// The http-hello guest crate.
    pub hello_crate: PathBuf,
    /// The native baseline crate.
    pub native_crate: PathBuf,
    /// Cargo target directory for both builds.
    pub target_dir: PathBuf,
}

/// The body both servers answer `GET /` with.
const GREETING: &[u8] = b"Hello from a Mayfly unikernel!\n";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const REQUEST_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
/// Unmeasured keep-alive requests on each latency connection before the measured ones.
const WARMUP_REQUESTS: usize = 100;
/// Keep-alive requests per turn of the latency test.
const LATENCY_TURN: usize = 100;
/// New connections per turn of the connection test.
const CONNECTION_TURN: usize = 50;
/// Throughput rounds per side.
const THROUGHPUT_ROUNDS: usize = 3;
/// Unmeasured boots of each side before the measured ones.
const WARMUP_BOOTS: usize = 2;
/// Longest wait for a connection, a read or a write before calling the server stuck.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a server to report its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The two servers; arrays of two are indexed by `Side as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Mayfly = 0,
    Native = 1,
}

impl Side {
    const BOTH: [Side; 2] = [Side::Mayfly, Side::Native];

    fn name(self) -> &'static str {
        match self {
            Side::Mayfly => "the unikernel",
            Side::Native => "the native server",
        }
    }

    /// Both sides, in an order that alternates with `turn`, so that noise hits both.
    fn order(turn: usize) -> [Side; 2] {
        if turn.is_multiple_of(2) {
            [Side::Mayfly, Side::Native]
        } else {
            [Side::Native, Side::Mayfly]
        }
    }
}

/// How to start one side's server, and how it says where it listens.
struct Launcher {
    side: Side,
    program: PathBuf,
    args: Vec<OsString>,
    /// The address in a line of the server's output, printed once it accepts connections.
    address_in: fn(&str) -> Option<String>,
    /// Whether stdout is the guest's console, discarded (the monitor reports on stderr);
    /// otherwise stdout and stderr share the pipe that is read.
    console: bool,
}

/// A running server; killed (and reaped) when dropped.
struct Server {
    side: Side,
    child: Child,
    addr: SocketAddr,
    /// The read end of the server's output pipe, kept open so that it can still write.
    output: File,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Launcher {
    /// Spawns the server and waits until it reports its address.
    fn start(&self) -> Result<Server> {
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let stdout = if self.console {
            Stdio::null()
        } else {
            Stdio::from(writer.try_clone().context("cannot duplicate a pipe")?)
        };
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null()).stdout(stdout).stderr(writer);
        let child =
            command.spawn().with_context(|| format!("cannot start {}", self.program.display()))?;
        drop(command); // and with it our write ends: the pipe ends when the server does
        let mut server = Server {
            side: self.side,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output: File::from(OwnedFd::from(reader)),
        };
        server.addr = wait_for_address(&mut server.output, self.address_in)
            .with_context(|| format!("{} did not start", self.side.name()))?;
        Ok(server)
    }
}

/// Reads `pipe` until a line holds an address (`address_in`), at most `START_TIMEOUT`.
fn wait_for_address(pipe: &mut File, address_in: fn(&str) -> Option<String>) -> Result<SocketAddr> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let said = String::from_utf8_lossy(&text);
        let complete = said.rfind('\n').map_or("", |end| &said[..end]);
        if let Some(addr) = complete.lines().find_map(address_in) {
            return addr.parse().with_context(|| format!("cannot read an address in {addr:?}"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable_within(pipe, left)? {
            bail!("it reported no address within {} s", START_TIMEOUT.as_secs());
        }
        match pipe.read(&mut chunk) {
            Ok(0) => bail!("it exited: {}", one_line(&said)),
            Ok(n) => text.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("cannot read its output"),
        }
    }
}

/// Waits until `pipe` has data (or is closed); false if `limit` passes first.
fn readable_within(pipe: &File, limit: Duration) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let mut fds = [libc::pollfd { fd: pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let left = deadline.saturating_duration_since(Instant::now());
        // An interrupted poll returns 0 early: loop until the deadline.
        let ready = mayfly_monitor::sys::poll(&mut fds, left.max(Duration::from_millis(1)))
            .context("cannot poll the server's output")?;
        if ready > 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

/// Text on one line: lines joined by "; ", at most 300 characters.
fn one_line(text: &str) -> String {
    let joined = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    let joined = joined.join("; ");
    if joined.is_empty() {
        return "(it printed nothing)".into();
    }
    joined.chars().take(300).collect()
}

impl Server {
    /// Resident memory now (`VmRSS`), KiB.
    fn rss_kib(&self) -> Result<f64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib = number_after(&status, "VmRSS:").with_context(|| format!("no VmRSS in {path}"))?;
        Ok(kib as f64)
    }

    /// Adds to `error` what the server said, if it has stopped (a crashed guest says why).
    fn explain(&mut self, error: anyhow::Error) -> anyhow::Error {
        let name = self.side.name();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            return error.context(name);
        }
        let mut said = Vec::new();
        let _ = readable_within(&self.output, Duration::from_millis(100))
            .map(|ready| ready && self.output.read_to_end(&mut said).is_ok());
        if said.is_empty() {
            return error.context(format!("{name} (which stopped)"));
        }
        let said = one_line(&String::from_utf8_lossy(&said));
        error.context(format!("{name} (which stopped, saying: {said})"))
    }
}

/// A client connection that sends `GET /` and checks each answer.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn io_error(error: std::io::Error, doing: &str) -> anyhow::Error {
    match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            anyhow!("no progress {doing} within {} s", IO_TIMEOUT.as_secs())
        }
        _ => anyhow::Error::new(error).context(format!("failed {doing}")),
    }
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| io_error(e, &format!("connecting to {addr}")))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buf: Vec::with_capacity(4096) })
    }

    /// Sends `GET /` (asking to close the connection after it if `close`), reads and checks the
    /// answer, and returns when its first byte arrived.
    fn get(&mut self, close: bool) -> Result<Instant> {
        self.stream
            .write_all(if close { REQUEST_CLOSE } else { REQUEST })
            .map_err(|e| io_error(e, "sending a request"))?;
        self.response(close)
    }

    /// Reads more of the response; false at end of stream.
    fn fill(&mut self) -> Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e, "reading a response")),
            }
        }
    }

    fn response(&mut self, close: bool) -> Result<Instant> {
        self.buf.clear();
        let mut first_byte = None;
        let head_len = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if self.buf.len() > 8192 {
                bail!("the response head is over 8 KiB");
            }
            if !self.fill()? {
                bail!("the server closed the connection without a complete response");
            }
            first_byte.get_or_insert_with(Instant::now);
        };
        let head = std::str::from_utf8(self.buf.get(..head_len).unwrap_or_default())
            .context("the response head is not UTF-8")?;
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 200 ") {
            bail!("the server answered {status:?} instead of \"HTTP/1.1 200 OK\"");
        }
        let field = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let length: usize = field("content-length")
            .and_then(|v| v.parse().ok())
            .context("the response has no valid Content-Length")?;
        let connection = field("connection").unwrap_or_default();
        let expected = if close { "close" } else { "keep-alive" };
        if !connection.eq_ignore_ascii_case(expected) {
            bail!("the response says `Connection: {connection}`, not `{expected}`");
        }
        let total = head_len + length;
        while self.buf.len() < total {
            if !self.fill()? {
                bail!("the server closed the connection in the middle of a response body");
            }
        }
        if close {
            while self.fill()? {}
        }
        if self.buf.len() != total {
            bail!("the server sent {} bytes more than the response", self.buf.len() - total);
        }
        if self.buf.get(head_len..) != Some(GREETING) {
            bail!(
                "the body is {:?}, not {:?}",
                String::from_utf8_lossy(self.buf.get(head_len..).unwrap_or_default()),
                String::from_utf8_lossy(GREETING)
            );
        }
        first_byte.context("no response byte arrived")
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `count` sequential keep-alive requests on `client`, each one's latency in ms into `out`.
fn keep_alive_turn(client: &mut Client, count: usize, out: &mut Vec<f64>) -> Result<()> {
    for _ in 0..count {
        let start = Instant::now();
        client.get(false)?;
        out.push(millis(start.elapsed()));
    }
    Ok(())
}

/// `concurrency` connections requesting for `duration`; requests per second, and how many.
fn throughput(addr: SocketAddr, concurrency: usize, duration: Duration) -> Result<(f64, u64)> {
    let barrier = std::sync::Barrier::new(concurrency + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| -> Result<(u64, Instant)> {
                    let client = Client::connect(addr);
                    barrier.wait(); // even if the connection failed: nobody waits forever
                    let mut client = client?;
                    let deadline = Instant::now() + duration;
                    let mut done = 0;
                    while Instant::now() < deadline {
                        client.get(false)?;
                        done += 1;
                    }
                    Ok((done, Instant::now()))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let (mut total, mut end) = (0, start);
        for worker in workers {
            let (done, finished) =
                worker.join().map_err(|_| anyhow!("a load thread panicked"))??;
            total += done;
            end = end.max(finished);
        }
        Ok((total as f64 / (end - start).as_secs_f64().max(1e-9), total))
    })
}

/// `count` sequential new connections, each `GET /` with `Connection: close` read to EOF: each
/// one's latency in ms into `out`; returns connections per second over the turn.
fn connection_turn(addr: SocketAddr, count: usize, out: &mut Vec<f64>) -> Result<f64> {
    let turn = Instant::now();
    for _ in 0..count {
        let start = Instant::now();
        Client::connect(addr)?.get(true)?;
        out.push(millis(start.elapsed()));
    }
    Ok(count as f64 / turn.elapsed().as_secs_f64().max(1e-9))
}

/// Spawn → the port is known, and spawn → first byte of the answer to a `GET /` sent at once,
/// in ms.
fn boot_to_first_response(launcher: &Launcher) -> Result<(f64, f64)> {
    let start = Instant::now();
    let mut server = launcher.start()?;
    let listening = start.elapsed();
    let first = Client::connect(server.addr)
        .and_then(|mut client| client.get(false))
        .map_err(|e| server.explain(e.context("answering its first request")))?;
    Ok((millis(listening), millis(first - start)))
}

/// Everything measured, per side.
#[derive(Default)]
struct Samples {
    latency: [Vec<f64>; 2],
    after_idle: [Vec<f64>; 2],
    throughput: [Vec<f64>; 2],
    rss: [Vec<f64>; 2],
    /// Server CPU per keep-alive request during the throughput rounds, µs.
    cpu: [Vec<f64>; 2],
    /// Of Mayfly's, the part accounted as guest time, µs.
    guest_cpu: Vec<f64>,
    connect_rate: [Vec<f64>; 2],
    connect_latency: [Vec<f64>; 2],
    listening: [Vec<f64>; 2],
    boot: [Vec<f64>; 2],
}

impl HttpBench {
    /// Builds both servers, measures them interleaved, and returns the report.
    pub fn run(&self) -> Result<Report> {
        let super::Contestants { image, native } = super::build_contestants(
            "mayfly bench http",
            &self.hello_crate,
            &self.native_crate,
            "native-http",
            &self.target_dir,
        )?;
        let native_size = std::fs::metadata(&native)
            .with_context(|| format!("cannot find the native baseline at {}", native.display()))?
            .len();
        let mayfly = super::mayfly_binary()?;
        let launchers = [
            Launcher {
                side: Side::Mayfly,
                program: mayfly,
                args: ["run".into(), image.path.clone().into_os_string()]
                    .into_iter()
                    .chain(["--mem", "64", "--publish", "0:80", "--", "80"].map(OsString::from))
                    .collect(),
                // The standby protocol's line, as `mayfly serve` reads it.
                address_in: |line| match MonitorLine::parse(line) {
                    Some(MonitorLine::Publishing { addr, .. }) => Some(addr),
                    _ => None,
                },
                console: true,
            },
            Launcher {
                side: Side::Native,
                program: native,
                args: vec!["127.0.0.1:0".into()],
                address_in: |line| {
                    let (_, rest) = line.split_once("listening on ")?;
                    rest.split_whitespace().next().map(str::to_owned)
                },
                console: false,
            },
        ];

        let mut samples = Samples::default();
        {
            let mut servers = [launchers[0].start()?, launchers[1].start()?];
            self.serve_phases(&mut servers, &mut samples)?;
        } // both killed here: the boots run on a quiet machine
        eprintln!("boot to first response: {} boots of each side ...", self.boots);
        for turn in 0..WARMUP_BOOTS + self.boots {
            for side in Side::order(turn) {
                let (listening, answered) = boot_to_first_response(&launchers[side as usize])?;
                if turn >= WARMUP_BOOTS {
                    samples.listening[side as usize].push(listening);
                    samples.boot[side as usize].push(answered);
                }
            }
        }
        self.report(&samples, image.size, native_size)
    }

    /// Phases 1-3 against running servers, each server's errors explained by its own output.
    fn serve_phases(&self, servers: &mut [Server; 2], samples: &mut Samples) -> Result<()> {
        let addrs = [servers[0].addr, servers[1].addr];
        let blame = |side: Side| move |e: anyhow::Error| (side, e);
        let mut run = || -> std::result::Result<(), (Side, anyhow::Error)> {
            eprintln!(
                "keep-alive latency: {} requests on each side (after {WARMUP_REQUESTS}) ...",
                self.requests
            );
            let mut clients = Vec::with_capacity(2);
            for side in Side::BOTH {
                let mut client = Client::connect(addrs[side as usize]).map_err(blame(side))?;
                let mut warmup = Vec::with_capacity(WARMUP_REQUESTS);
                keep_alive_turn(&mut client, WARMUP_REQUESTS, &mut warmup).map_err(blame(side))?;
                clients.push(client);
            }
            let (mut done, mut turn) = (0, 0);
            while done < self.requests {
                let count = LATENCY_TURN.min(self.requests - done);
                for side in Side::order(turn) {
                    let client = &mut clients[side as usize];
                    // The first request of a turn finds its server idle since its last turn:
                    // a wake-up, measured apart so that the keep-alive tail is the steady one.
                    let idle = &mut samples.after_idle[side as usize];
                    keep_alive_turn(client, 1, idle).map_err(blame(side))?;
                    let out = &mut samples.latency[side as usize];
                    keep_alive_turn(client, count, out).map_err(blame(side))?;
                }
                (done, turn) = (done + count, turn + 1);
            }
            drop(clients);

            for round in 0..THROUGHPUT_ROUNDS {
                eprintln!(
                    "keep-alive throughput: round {}/{THROUGHPUT_ROUNDS}, {} connections for {:.1} \
                     s on each side ...",
                    round + 1,
                    self.concurrency,
                    self.duration.as_secs_f64()
                );
                for side in Side::order(round) {
                    let i = side as usize;
                    let pid = servers[i].child.id();
                    let before = CpuTime::of(pid).map_err(blame(side))?;
                    let (rate, requests) = throughput(addrs[i], self.concurrency, self.duration)
                        .map_err(blame(side))?;
                    let after = CpuTime::of(pid).map_err(blame(side))?;
                    let (cpu, guest) = before.per(after, requests);
                    samples.throughput[i].push(rate);
                    samples.cpu[i].push(cpu);
                    if side == Side::Mayfly {
                        samples.guest_cpu.push(guest);
                    }
                    samples.rss[i].push(servers[i].rss_kib().map_err(blame(side))?);
                }
            }

            eprintln!("new connections: {} on each side ...", self.connections);
            let (mut done, mut turn) = (0, 0);
            while done < self.connections {
                let count = CONNECTION_TURN.min(self.connections - done);
                for side in Side::order(turn) {
                    let i = side as usize;
                    let rate = connection_turn(addrs[i], count, &mut samples.connect_latency[i])
                        .map_err(blame(side))?;
                    samples.connect_rate[i].push(rate);
                }
                (done, turn) = (done + count, turn + 1);
            }
            Ok(())
        };
        run().map_err(|(side, error)| servers[side as usize].explain(error))
    }

    fn report(&self, samples: &Samples, image_size: u64, native_size: u64) -> Result<Report> {
        let row = |metric: String, pick: &[Vec<f64>; 2]| -> Result<Row> {
            Ok(Row {
                mayfly: summarize(&metric, &pick[0])?,
                baseline: Some(summarize(&metric, &pick[1])?),
                metric,
            })
        };
        let size = |x: u64| {
            let x = x as f64;
            Summary { n: 1, p50: x, p99: x, min: x, max: x }
        };
        // The target is judged on every request a client sends, the first of each turn too.
        let every: [Vec<f64>; 2] = [0, 1]
            .map(|i| samples.latency[i].iter().chain(&samples.after_idle[i]).copied().collect());
        let rows = vec![
            row("keep-alive request latency, every request (ms)".into(), &every)?,
            row("keep-alive, the first of each turn left out (ms)".into(), &samples.latency)?,
            row(
                "first request of a turn, after the other side's (ms)".into(),
                &samples.after_idle,
            )?,
            row(
                format!("keep-alive throughput, {} connections (req/s)", self.concurrency),
                &samples.throughput,
            )?,
            row("new connections (conn/s)".into(), &samples.connect_rate)?,
            row("connect + GET + close latency (ms)".into(), &samples.connect_latency)?,
            row("spawn → port published / bound (ms)".into(), &samples.listening)?,
            row("boot → first response (ms)".into(), &samples.boot)?,
            row("RSS while serving (KiB)".into(), &samples.rss)?,
            row("server CPU per keep-alive request, throughput rounds (µs)".into(), &samples.cpu)?,
            Row {
                metric: "of which guest time (in KVM_RUN, 10 ms ticks) (µs)".into(),
                mayfly: summarize("guest CPU", &samples.guest_cpu)?,
                baseline: None,
            },
            Row {
                metric: "stripped image (bytes)".into(),
                mayfly: size(image_size),
                baseline: Some(size(native_size)),
            },
        ];
        // By position in `rows` above: (Mayfly, native).
        let pair = |i: usize| {
            let r: &Row = &rows[i];
            (r.mayfly, r.baseline.unwrap_or(r.mayfly))
        };
        let ((latency, native_latency), (rate, native_rate)) = (pair(0), pair(3));
        let ((connects, native_connects), (boot, _), (rss, _)) = (pair(4), pair(7), pair(8));
        // The targets of issue #15, which hold on every host kind the benchmark runs on.
        let targets = vec![
            (
                format!(
                    "keep-alive throughput, {} connections, ≥ 60% of native ({:.0}%)",
                    self.concurrency,
                    100.0 * rate.p50 / native_rate.p50
                ),
                rate.p50 >= 0.6 * native_rate.p50,
            ),
            (
                format!(
                    "keep-alive p50 latency ≤ 4× native, every request ({:.2}x)",
                    latency.p50 / native_latency.p50
                ),
                latency.p50 <= 4.0 * native_latency.p50,
            ),
            (
                format!("keep-alive p99 latency ≤ 1 ms, every request ({:.3} ms)", latency.p99),
                latency.p99 <= 1.0,
            ),
            (
                format!(
                    "new connections ≥ 40% of native ({:.0}%)",
                    100.0 * connects.p50 / native_connects.p50
                ),
                connects.p50 >= 0.4 * native_connects.p50,
            ),
            (
                format!("boot to first HTTP response p50 ≤ 3 ms ({:.3} ms)", boot.p50),
                boot.p50 <= 3.0,
            ),
            (
                format!("stripped http-hello image ≤ 256 KiB ({image_size} bytes)"),
                image_size <= 256 * 1024,
            ),
            (
                format!("monitor RSS while serving ≤ 8 MiB ({:.0} KiB, the largest)", rss.max),
                rss.max <= 8192.0,
            ),
        ];
        let duration = self.duration.as_secs_f64();
        Ok(Report {
            name: "http".into(),
            description: format!(
                "HTTP: examples/http-hello under `mayfly run --publish 0:80` (64 MiB guest, one \
                 vCPU, user-mode networking) against the same handler and response bytes as a \
                 native static Linux process (bench/native-http: one thread, an epoll event \
                 loop), on loopback, interleaved. Keep-alive latency: {} sequential `GET /` on \
                 one connection per side, after {WARMUP_REQUESTS} warm-up, in turns of \
                 {LATENCY_TURN}; each turn starts with one more request, which finds the \
                 server idle since its previous turn (a few ms: a wake-up). The first row and \
                 the p99 target count every request; the next two split them. Throughput: {} connections requesting for {duration} s, \
                 {THROUGHPUT_ROUNDS} rounds per side (RSS read after each, and the server's CPU time \
                 per request over each round: all its threads' on-CPU time from \
                 /proc/<pid>/task/*/schedstat, a guest's time in KVM_RUN included). New connections: {} \
                 sequential connect + `GET /` (`Connection: close`) + read to EOF per side, in \
                 turns of {CONNECTION_TURN} (rate per turn). Boot: {} spawns per side after \
                 {WARMUP_BOOTS} warm-up, from spawn to the port being known (the monitor \
                 publishes it before the guest boots) and to the first byte of the answer to a \
                 request sent at once. The load generator (std threads, blocking \
                 sockets) shares the machine; for rates higher is better, and their spread is the \
                 slowest round.",
                self.requests, self.concurrency, self.connections, self.boots
            ),
            command: format!(
                "mayfly bench http --requests {} --concurrency {} --duration {duration} \
                 --connections {} --boots {}",
                self.requests, self.concurrency, self.connections, self.boots
            ),
            machine: machine_line(),
            cpu: super::report::cpu_model(),
            rows,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server that answers one request with `response` and closes.
    fn answer_once(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            stream.write_all(response).unwrap();
        });
        addr
    }

    #[test]
    fn the_client_accepts_the_greeting_and_refuses_anything_else() {
        let good = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Length: 31\r\nConnection: close\r\n\r\nHello from a Mayfly unikernel!\n";
        assert!(Client::connect(answer_once(good)).unwrap().get(true).is_ok());
        let cases: [(&'static [u8], &str); 3] = [
            (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "404"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", "body"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\nHello", "Connection"),
        ];
        for (response, complaint) in cases {
            let error = Client::connect(answer_once(response)).unwrap().get(true).unwrap_err();
            assert!(format!("{error:#}").contains(complaint), "{error:#}");
        }
    }
}
