//! `mayfly serve` in the background for the gateway tests (serve.rs, serve_claims.rs): config
//! helpers, /proc inspection, the admin API, and a `Gateway` killed with its monitors on drop.

use super::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-of-at-least-32-characters";
pub const EXIT_MAYFLY_ERROR: i32 = 125;
pub const GREETING: &[u8] = b"Hello from a Mayfly unikernel!\n";
/// How long a gateway may take to print `ready` (it builds nothing: images are given).
pub const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long one request may take through the gateway (a cold start included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

pub const HELLO: &str = "examples/http-hello";
pub const KV: &str = "examples/kv";
pub const CRASHY: &str = "tests/guests/crashy";

/// A fresh scratch directory for test `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(format!("serve-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `[[service]]` table named `name` running the image of guest crate `guest`, plus `extra`
/// lines.
pub fn service(name: &str, guest: &str, extra: &str) -> String {
    let image = guest_image(guest);
    format!("[[service]]\nname = \"{name}\"\nimage = \"{}\"\n{extra}\n", image.display())
}

/// http-hello on `/hello`, plus `extra` lines.
pub fn hello_service(extra: &str) -> String {
    service("http-hello", HELLO, &format!("path_prefix = \"/hello\"\n{extra}"))
}

/// crashy on every path, plus `extra` lines.
pub fn crashy_service(extra: &str) -> String {
    service("crashy", CRASHY, &format!("path_prefix = \"/\"\n{extra}"))
}

/// A whole configuration: the gateway and the admin API on free loopback ports, a known token.
pub fn config(services: &str) -> String {
    format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         admin_token = \"{TOKEN}\"\n\n{services}"
    )
}

/// A process as /proc shows it.
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub zombie: bool,
    pub cmdline: String,
}

pub fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let zombie = fields.next()? == "Z";
    let ppid = fields.next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    Some(Proc { pid, ppid, zombie, cmdline })
}

/// Every process.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(read_proc)
        .collect()
}

/// Whether a command line is a `mayfly run --standby` monitor of `image`.
pub fn is_monitor(cmdline: &str, image: &Path) -> bool {
    cmdline.contains(image.to_string_lossy().as_ref()) && cmdline.contains("--standby")
}

/// The live monitor processes of `image` whose parent is `parent`.
pub fn monitors_of(parent: u32, image: &Path) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent && !p.zombie && is_monitor(&p.cmdline, image))
        .map(|p| p.pid)
        .collect()
}

/// Which of `pids` are still live monitors of `image`.
pub fn still_running(pids: &[u32], image: &Path) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| read_proc(*pid).is_some_and(|p| !p.zombie && is_monitor(&p.cmdline, image)))
        .collect()
}

pub fn pid_t(pid: u32) -> libc::pid_t {
    libc::pid_t::try_from(pid).expect("a pid fits pid_t")
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; the pids are our own children.
    unsafe { libc::kill(pid_t(pid), signal) == 0 }
}

/// Runs `cmd` to its end (at most `limit`, else it is killed and the test fails).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Run {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mayfly");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap mayfly");
            panic!("{cmd:?} did not exit within {limit:?}: {:?}", Run::from(out).stderr);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect mayfly's output").into()
}

/// Polls `done` every 20 ms until it holds; fails with `what` after `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}\n{}", context());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request to the admin API at `admin`, with `token` if given.
pub fn admin_request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> HttpReply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    http_request(admin, method, path, &headers, body, REQUEST_TIMEOUT)
        .unwrap_or_else(|| panic!("no answer from the admin API to {method} {path}"))
}

/// `GET path` on the admin API with the right token: 200 and JSON.
pub fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let reply = admin_request(admin, "GET", path, Some(TOKEN), b"");
    assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {reply:?}"))
}

/// Started instances (ready or draining; not standby shells) of `service`.
pub fn started_instances(admin: SocketAddr, service: &str) -> Vec<Value> {
    let all = admin_json(admin, "/instances");
    let all = all.as_array().expect("/instances is an array");
    all.iter().filter(|i| i["service"] == service && i["state"] != "standby").cloned().collect()
}

pub fn header<'a>(reply: &'a HttpReply, name: &str) -> Option<&'a str> {
    reply.head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A `mayfly serve` in the background, with its addresses. Dropping it kills the gateway and
/// every monitor it started.
pub struct Gateway {
    pub child: Child,
    pub pid: u32,
    /// The gateway's address.
    pub addr: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// The scratch directory (config, state).
    pub dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    pub exited: Option<ExitStatus>,
}

impl Gateway {
    /// Writes a configuration with `services` into a scratch directory for test `name`, starts
    /// `mayfly serve` on it, and waits (at most 60 s) for `ready`.
    pub fn start(name: &str, services: &str) -> Gateway {
        Gateway::start_with_config(name, &config(services))
    }

    /// Like [`Gateway::start`], with the whole configuration file given.
    pub fn start_with_config(name: &str, config: &str) -> Gateway {
        require_kvm();
        let dir = scratch(name);
        let path = dir.join("serve.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = mayfly();
        cmd.arg("serve").arg("--config").arg(&path).env("MAYFLY_STATE_DIR", &dir);
        let Started { child, pid, addr, admin, log } = start_serve(cmd);
        let gateway = Gateway { child, pid, addr, admin, dir, log, exited: None };
        assert_ne!(gateway.addr.port(), 0, "no address before `ready`:\n{}", gateway.stderr());
        gateway
    }

    /// Everything the gateway printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    pub fn context(&self) -> impl Fn() -> String + '_ {
        move || format!("gateway stderr:\n{}", self.stderr())
    }

    /// One request through the gateway.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        http_request(self.addr, method, path, headers, body, REQUEST_TIMEOUT).unwrap_or_else(|| {
            panic!("no response to {method} {path} from the gateway; stderr:\n{}", self.stderr())
        })
    }

    pub fn get(&self, path: &str) -> HttpReply {
        self.request("GET", path, &[], b"")
    }

    pub fn admin_json(&self, path: &str) -> Value {
        admin_json(self.admin, path)
    }

    pub fn instances(&self, service: &str) -> Vec<Value> {
        started_instances(self.admin, service)
    }

    /// The admin API's view of `name` (`GET /services`).
    pub fn service(&self, name: &str) -> Value {
        let services = self.admin_json("/services");
        let services = services.as_array().expect("/services is an array");
        services
            .iter()
            .find(|s| s["spec"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {name:?} in {services:?}"))
    }

    /// The service's log lines (`GET /services/<name>/logs`).
    pub fn logs(&self, name: &str) -> Vec<String> {
        let lines = self.admin_json(&format!("/services/{name}/logs"));
        let lines = lines.as_array().expect("logs are an array");
        lines.iter().map(|l| l.as_str().unwrap_or_default().to_owned()).collect()
    }

    pub fn wait_until(&self, what: &str, limit: Duration, done: impl FnMut() -> bool) {
        wait_until(what, limit, self.context(), done);
    }

    /// The live monitors of `image` this gateway started.
    pub fn monitors(&self, image: &Path) -> Vec<u32> {
        monitors_of(self.pid, image)
    }

    /// The gateway's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// How many file descriptors the gateway has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).expect("the gateway's fds").count()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the gateway to exit; its exit code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        assert!(signal(self.pid, libc::SIGTERM), "cannot signal the gateway");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "mayfly serve did not exit within {limit:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // Freeze the gateway so that it starts nothing more, kill its monitors, then it.
            signal(self.pid, libc::SIGSTOP);
            for child in processes().into_iter().filter(|p| p.ppid == self.pid) {
                signal(child.pid, libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- mayfly serve stderr ---\n{}\n---", self.stderr());
        }
    }
}

/// A `mayfly serve` process that printed `ready`: its addresses and everything it printed on
/// stderr (read to the end by a thread, so that a full pipe never stalls the gateway).
pub struct Started {
    pub child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Spawns `cmd` (a `mayfly serve ...` command) with stdin and stdout closed and stderr read, and
/// waits (at most [`READY_LIMIT`]) for its `ready` line; panics with its stderr otherwise.
pub fn start_serve(mut cmd: Command) -> Started {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mayfly serve");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
            let _ = tx.send(line);
        }
    });
    let printed = || log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
    let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
    let (mut addr, mut admin) = (nowhere, nowhere);
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "mayfly serve did not print `ready` within {READY_LIMIT:?} ({e}); stderr:\n{}",
                printed()
            )
        });
        if let Some(rest) = line.strip_prefix("mayfly serve: gateway on http://") {
            let (gw, rest) = rest.split_once(" , admin API on http://").expect("two addresses");
            let api = rest.split(' ').next().unwrap_or_default();
            addr = gw.parse().unwrap_or_else(|e| panic!("{gw:?}: {e}"));
            admin = api.parse().unwrap_or_else(|e| panic!("{api:?}: {e}"));
        } else if line == "mayfly serve: ready" {
            break;
        }
    }
    assert_ne!(addr.port(), 0, "no address before `ready`:\n{}", printed());
    Started { child, pid, addr, admin, log }
}
