//! One unikernel instance: a `mayfly run --standby` monitor process, its published address,
//! its console captured into the service's log, and a watcher that reports its exit.
//!
//! A process starts as a *shell*: image loaded, VM created, port published, guest not yet
//! entered (LightVM's split instantiation: all of that is off the request's critical path).
//! [`Shell::go`] enters the guest. Connections made to the published port before the guest
//! listens are held by the monitor, so an instance can take requests the moment it is told to go.

use crate::logs::LogBuffer;
use mayfly_protocol::standby::{self, MonitorArgs, MonitorLine, MonitorNet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

/// How long a shell may take to be prepared.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);

/// What is needed to start processes for one service.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `mayfly` binary.
    pub mayfly: std::path::PathBuf,
    /// The image.
    pub image: std::path::PathBuf,
    /// Guest memory, MiB.
    pub mem_mib: u64,
    /// The guest's port.
    pub guest_port: u16,
    /// Guest arguments.
    pub args: Vec<String>,
    /// Guest environment.
    pub env: Vec<(String, String)>,
    /// Tap networking instead of a published port.
    pub tap: Option<crate::config::TapSpec>,
    /// CPU-time limit, seconds (0: none).
    pub cpu_limit_s: u64,
    /// Console limit, KiB (0: none).
    pub console_limit_kib: u64,
    /// Console rate, bytes per second (0: none).
    pub console_rate: u64,
    /// Connections carried at once (0: the monitor's default).
    pub max_connections: u64,
}

impl Launch {
    /// The flags of a standby monitor for this launch (the standby protocol's first step).
    pub fn monitor_args(&self) -> MonitorArgs {
        let net = match &self.tap {
            Some(tap) => {
                MonitorNet::Tap { name: tap.name.clone(), ip: tap.ip.clone(), gateway: tap.gateway }
            }
            None => MonitorNet::Publish { bind: "127.0.0.1:0".into(), guest_port: self.guest_port },
        };
        let set = |n: u64| (n > 0).then_some(n);
        MonitorArgs {
            image: self.image.clone(),
            net,
            mem_mib: self.mem_mib,
            cpu_limit_s: set(self.cpu_limit_s),
            console_limit_bytes: set(self.console_limit_kib * 1024),
            console_rate: set(self.console_rate),
            max_connections: set(self.max_connections),
            env: self.env.clone(),
            args: self.args.clone(),
        }
    }
}

/// Why an instance could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot start the monitor: {0}")]
    Spawn(std::io::Error),
    #[error("the monitor failed before the guest started: {0}")]
    Failed(String),
    #[error("the monitor did not get ready within {PREPARE_TIMEOUT:?}")]
    Timeout,
}

/// An instance's process ended: whether we asked for it, and the exit status.
#[derive(Debug, Clone)]
pub struct Exited {
    /// The instance.
    pub id: u64,
    /// The service it belonged to.
    pub service: String,
    /// We killed it (scale-in, shutdown, per-request end).
    pub killed: bool,
    /// Its exit code, if it exited rather than being killed by a signal.
    pub code: Option<i32>,
    /// Its last monitor message (the diagnosis of a crash).
    pub last_words: String,
}

/// A prepared monitor process whose guest has not started.
pub struct Shell {
    /// Instance number (unique within the orchestrator).
    pub id: u64,
    /// Where the guest's port is published.
    pub addr: SocketAddr,
    /// When the process was spawned.
    pub spawned: Instant,
    /// How long preparing took (spawn to standby).
    pub prepare_time: Duration,
    /// The process id.
    pub pid: Option<u32>,
    stdin: ChildStdin,
    kill: Option<oneshot::Sender<()>>,
}

impl Shell {
    /// Spawns a monitor for `launch` and waits until it is on standby. Its console lines go to
    /// `logs`; its exit is reported on `exits`.
    pub async fn prepare(
        id: u64,
        name: String,
        launch: &Launch,
        logs: LogBuffer,
        exits: mpsc::UnboundedSender<Exited>,
    ) -> Result<Shell, InstanceError> {
        let mut cmd = Command::new(&launch.mayfly);
        cmd.args(launch.monitor_args().to_args());
        // Where the guest's port will be reachable, when it is known in advance (tap).
        let mut addr = launch
            .tap
            .as_ref()
            .and_then(|tap| tap.address().map(|(ip, _)| SocketAddr::from((ip, launch.guest_port))));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        crate::sys::kill_with_parent(&mut cmd);
        let spawned = Instant::now();
        let mut child = cmd.spawn().map_err(InstanceError::Spawn)?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(InstanceError::Failed("no pipes to the monitor".into()));
        };
        // The guest's console, line by line, into the service's log.
        let console_logs = logs.clone();
        let console_name = name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                console_logs.push(&console_name, &line);
            }
        });
        // The monitor's own messages: the address, standby, then diagnoses.
        let mut lines = BufReader::new(stderr).lines();
        let mut last = String::new();
        let ready = tokio::time::timeout(PREPARE_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                match MonitorLine::parse(&line) {
                    Some(MonitorLine::Publishing { addr: published, .. }) => {
                        addr = published.parse().ok();
                    }
                    // The address is the tap spec's.
                    Some(MonitorLine::TapAttached { .. }) => {}
                    Some(MonitorLine::Standby) => return true,
                    None => {
                        logs.push(&name, &line);
                        last = line;
                    }
                }
            }
            false
        })
        .await;
        let addr = match (ready, addr) {
            (Ok(true), Some(addr)) => addr,
            (Err(_), _) => return Err(InstanceError::Timeout),
            _ => {
                let _ = child.wait().await;
                return Err(InstanceError::Failed(last));
            }
        };
        let (kill, killed) = oneshot::channel();
        tokio::spawn(watch(id, name, child, lines, logs, killed, exits));
        Ok(Shell {
            id,
            addr,
            spawned,
            prepare_time: spawned.elapsed(),
            pid,
            stdin,
            kill: Some(kill),
        })
    }

    /// Enters the guest. The instance takes connections at once (the monitor holds them until
    /// the guest listens).
    pub async fn go(mut self) -> Running {
        let _ = self.stdin.write_all(standby::GO).await;
        let _ = self.stdin.flush().await;
        Running { id: self.id, addr: self.addr, pid: self.pid, _stdin: self.stdin, kill: self.kill }
    }

    /// Destroys the shell.
    pub fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// A started instance.
pub struct Running {
    /// Instance number.
    pub id: u64,
    /// Where its guest port is published.
    pub addr: SocketAddr,
    /// The process id.
    pub pid: Option<u32>,
    _stdin: ChildStdin,
    kill: Option<oneshot::Sender<()>>,
}

impl Running {
    /// Destroys the instance (its watcher reports the exit as killed).
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the process to end (or to be told to kill it) and reports how it ended.
async fn watch(
    id: u64,
    name: String,
    mut child: Child,
    mut stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    logs: LogBuffer,
    killed: oneshot::Receiver<()>,
    exits: mpsc::UnboundedSender<Exited>,
) {
    let mut last_words = String::new();
    let mut kill_requested = false;
    let mut killed = std::pin::pin!(killed);
    let status = loop {
        tokio::select! {
            status = child.wait() => {
                // The last lines (the monitor's diagnosis) may still be in the pipe.
                let rest = async {
                    while let Ok(Some(line)) = stderr.next_line().await {
                        logs.push(&name, &line);
                        last_words = line;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
                break status.ok();
            }
            line = stderr.next_line() => match line {
                Ok(Some(line)) => {
                    logs.push(&name, &line);
                    last_words = line;
                }
                _ => break child.wait().await.ok(),
            },
            result = &mut killed, if !kill_requested => {
                kill_requested = true;
                // A dropped sender (the handle went away) also means: kill.
                let _ = result;
                let _ = child.start_kill();
            }
        }
    };
    // Killed by us only if our SIGKILL is what ended it: a monitor that stopped on its own
    // (a guest fault, panic or exit) exits with a status even if a kill was asked meanwhile.
    let by_our_kill = kill_requested
        && status.is_some_and(|s| std::os::unix::process::ExitStatusExt::signal(&s) == Some(9));
    let service = name.rsplit_once('-').map_or(name.as_str(), |(s, _)| s).to_owned();
    let _ = exits.send(Exited {
        id,
        service,
        killed: by_our_kill,
        code: status.and_then(|s| s.code()),
        last_words,
    });
}

/// The resident memory of process `pid`, KiB (from /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `path` looks like an image (exists and is a file).
pub fn image_exists(path: &Path) -> bool {
    path.is_file()
}
