//! Helpers for the integration tests: build guests once, run the real `mayfly` binary on real
//! KVM, and inspect what it printed and how it exited.
#![allow(dead_code)]

pub mod gateway;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The `mayfly` binary under test.
pub fn mayfly() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mayfly"))
}

/// Fails the test, saying why, when the machine has no usable KVM: these tests boot real
/// guests and are never skipped silently.
pub fn require_kvm() {
    let path = Path::new("/dev/kvm");
    assert!(
        path.exists(),
        "/dev/kvm is missing: Mayfly's integration tests boot real guests on KVM; run them on a \
         Linux host with KVM enabled"
    );
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(path) {
        panic!("/dev/kvm cannot be opened ({e}): run the tests as a user with access to it");
    }
}

/// The shared target directory for guest builds (so that the library OS compiles once).
pub fn guest_target_dir() -> PathBuf {
    repo().join("target/guests")
}

/// Builds the guest crate at `rel` (relative to the repository root) once per test binary,
/// returning its image path.
pub fn guest_image(rel: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(name, _)| name == rel) {
        return path.clone();
    }
    let out = mayfly()
        .arg("build")
        .arg(repo().join(rel))
        .arg("--target-dir")
        .arg(guest_target_dir())
        .output()
        .expect("run mayfly build");
    assert!(
        out.status.success(),
        "mayfly build {rel} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let path = PathBuf::from(stdout.lines().last().expect("build prints the image path"));
    assert!(path.is_file(), "build printed {path:?}, which is not a file");
    built.push((rel.to_owned(), path.clone()));
    path
}

/// Result of one `mayfly` invocation.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts that stderr is exactly one line mentioning `needle`, without a panic or backtrace.
    pub fn assert_one_line_error(&self, needle: &str) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got: {:?}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr {:?} lacks {needle:?}", self.stderr);
        assert!(!self.stderr.contains("panicked at"), "mayfly panicked: {}", self.stderr);
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "backtrace hint: {}", self.stderr);
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `mayfly run <image> <options> -- <guest_args>`.
pub fn run_image(image: &Path, options: &[&str], guest_args: &[&str]) -> Run {
    let mut cmd = mayfly();
    cmd.arg("run").arg(image).args(options);
    if !guest_args.is_empty() {
        cmd.arg("--").args(guest_args);
    }
    cmd.output().expect("run mayfly").into()
}

/// Boots the probe guest in `mode` (with a 10 s safety limit).
pub fn probe(args: &[&str]) -> Run {
    require_kvm();
    run_image(&guest_image("tests/guests/probe"), &["--timeout", "10"], args)
}

/// A `mayfly run` in the background (killed when dropped), with its published address.
pub struct Running {
    child: std::process::Child,
    /// The first published host address.
    pub addr: std::net::SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
    stdout: std::sync::Arc<Mutex<String>>,
}

impl Running {
    /// Starts `mayfly run <image> <options> -- <guest_args>` and waits (at most 20 s) until the
    /// monitor reports the address it publishes on.
    pub fn start(image: &Path, options: &[&str], guest_args: &[&str]) -> Running {
        require_kvm();
        let mut cmd = mayfly();
        cmd.arg("run").arg(image).args(options).arg("--").args(guest_args);
        let (mut running, line) = Running::spawn(cmd, "mayfly: publishing ");
        running.addr = line.split(' ').next().and_then(|a| a.parse().ok()).expect("an address");
        running
    }

    /// The monitor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns `cmd` and waits (at most 20 s) for a stderr line starting with `ready`; returns
    /// the rest of that line.
    pub fn spawn(mut cmd: Command, ready: &str) -> (Running, String) {
        use std::io::{BufRead, BufReader, Read};
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mayfly run");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::sync::Arc::new(Mutex::new(String::new()));
        let sink = stdout.clone();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let rest = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("the monitor did not print {ready:?} within 20 s");
            };
            if let Some(rest) = line.strip_prefix(ready) {
                break rest.to_owned();
            }
        };
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        (Running { child, addr, stderr: rx, stdout }, rest)
    }

    /// Everything the guest printed so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits for the monitor to exit (at most `limit`) and returns its status and stderr.
    pub fn wait(mut self, limit: std::time::Duration) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr: Vec<String> = self.stderr.try_iter().collect();
                return (status.code(), stderr.join("\n"));
            }
            assert!(std::time::Instant::now() < deadline, "mayfly run did not exit in {limit:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Sends SIGKILL to the monitor and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use mayfly_cli::http_client::HttpReply;

/// Sends raw `request` bytes on `stream` and reads one response (head, then a Content-Length
/// body). `None` if the connection closed before a full response.
pub fn http_exchange(stream: &mut std::net::TcpStream, request: &[u8]) -> Option<HttpReply> {
    mayfly_cli::http_client::exchange(stream, request).ok()
}

/// One request on a fresh connection.
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> HttpReply {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(body);
    http_exchange(&mut stream, &request).expect("an HTTP response")
}

/// One request on a fresh connection with extra `headers` (a `Host: test` header is added unless
/// one is given), waiting at most `timeout` for each read. `None` if the connection failed or
/// closed before a full response.
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: std::time::Duration,
) -> Option<HttpReply> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str("Host: test\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    http_exchange(&mut stream, &request)
}

/// Builds the guest crate at `rel` natively for Linux (release; serialised within a test binary),
/// for the differential tests of std programs; returns the executable `name`.
pub fn native_binary(rel: &str, name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = repo().join("target/std-native");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--target", "x86_64-unknown-linux-gnu"])
        .arg("--manifest-path")
        .arg(repo().join(rel).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "native build of {rel} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = target_dir.join("x86_64-unknown-linux-gnu/release").join(name);
    assert!(path.is_file(), "{path:?} was not built");
    path
}
