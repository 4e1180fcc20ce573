//! One unikernel instance: a `mayfly run --standby` monitor process, its published address,
//! its console captured into the service's log, and a watcher that reports its exit.
//!
//! A process starts as a *shell*: image loaded, VM created, port published, guest not yet
//! entered (LightVM's split instantiation: all of that is off the request's critical path).
//! [`Shell::go`] enters the guest. Connections made to the published port before the guest
//! listens are held by the monitor, so an instance can take requests the moment it is told to go.

use crate::logs::LogBuffer;
use crate::upstream::InstanceAddr;
use mayfly_protocol::standby::{self, MonitorArgs, MonitorLine, MonitorNet};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Host ports the guest may connect out to (user-mode networking only).
    pub allow_host_ports: Vec<u16>,
    /// CPU-time limit, seconds (0: none).
    pub cpu_limit_s: u64,
    /// Console limit, KiB (0: none).
    pub console_limit_kib: u64,
    /// Console rate, bytes per second (0: none).
    pub console_rate: u64,
    /// Connections carried at once (0: the monitor's default).
    pub max_connections: u64,
    /// The snapshot instances are cloned from, if the service asks for snapshots.
    pub from_snapshot: Option<std::path::PathBuf>,
    /// The volume: the monitor's `--volume` value and its file's one-writer gate.
    pub volume: Option<(String, std::sync::Arc<tokio::sync::Semaphore>)>,
}

impl Launch {
    /// The flags of a standby monitor for this launch (the standby protocol's first step).
    /// Without a tap, the guest's port is published on the Unix socket `socket` (or, without
    /// one, on a free loopback TCP port).
    pub fn monitor_args(&self, socket: Option<&std::path::Path>) -> MonitorArgs {
        let net = match &self.tap {
            Some(tap) => {
                MonitorNet::Tap { name: tap.name.clone(), ip: tap.ip.clone(), gateway: tap.gateway }
            }
            None => MonitorNet::Publish {
                bind: socket
                    .map_or_else(|| "127.0.0.1:0".into(), |s| format!("unix:{}", s.display())),
                guest_port: self.guest_port,
            },
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
            allow_host_ports: self.allow_host_ports.clone(),
            env: self.env.clone(),
            args: self.args.clone(),
            from_snapshot: self.from_snapshot.clone(),
            volume: self.volume.as_ref().map(|(spec, _)| spec.clone()),
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
    #[error("the previous instance still holds the volume after {PREPARE_TIMEOUT:?}")]
    VolumeBusy,
    #[error("cannot create the gateway's private socket directory: {0}")]
    SocketDir(std::io::Error),
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
    pub addr: InstanceAddr,
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
        // One writer per volume: wait until the previous monitor of this volume is reaped (its
        // watcher holds the permit until then).
        let permit = match &launch.volume {
            Some((_, gate)) => Some(
                tokio::time::timeout(PREPARE_TIMEOUT, gate.clone().acquire_owned())
                    .await
                    .map_err(|_| InstanceError::VolumeBusy)?
                    .map_err(|_| InstanceError::VolumeBusy)?,
            ),
            None => None,
        };
        let mut cmd = Command::new(&launch.mayfly);
        // Where the guest's port will be reachable, when it is known in advance (tap).
        let mut addr = launch.tap.as_ref().and_then(|tap| {
            tap.address()
                .map(|(ip, _)| InstanceAddr::Tcp(SocketAddr::from((ip, launch.guest_port))))
        });
        // The published socket (user-mode networking), removed after the monitor is gone: a
        // Unix socket in the gateway's private directory, not a loopback port any local user
        // could connect to.
        let socket = match &launch.tap {
            Some(_) => None,
            None => Some(
                crate::sockets::socket_dir()
                    .map_err(InstanceError::SocketDir)?
                    .join(format!("i{id}.sock")),
            ),
        };
        cmd.args(launch.monitor_args(socket.as_deref()).to_args());
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
        tokio::spawn(crate::logs::capture(stdout, logs.clone(), name.clone()));
        // The monitor's own messages: the address, standby, then diagnoses.
        let mut lines = BufReader::new(stderr).lines();
        let mut last = String::new();
        let ready = tokio::time::timeout(PREPARE_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                match MonitorLine::parse(&line) {
                    Some(MonitorLine::Publishing { addr: published, .. }) => {
                        addr = InstanceAddr::parse(&published);
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
            (Err(_), _) => {
                // Killed and reaped before the volume's permit goes; its socket file goes now.
                let _ = child.kill().await;
                drop(permit);
                crate::sockets::remove_socket(socket.as_deref());
                return Err(InstanceError::Timeout);
            }
            _ => {
                let _ = child.wait().await;
                crate::sockets::remove_socket(socket.as_deref());
                return Err(InstanceError::Failed(last));
            }
        };
        let (kill, killed) = oneshot::channel();
        let watched = Watched { id, name, child, stderr: lines, logs, socket, permit };
        tokio::spawn(watch(watched, killed, exits));
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
        Running {
            id: self.id,
            addr: self.addr,
            pid: self.pid,
            _stdin: Some(self.stdin),
            kill: self.kill,
        }
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
    pub addr: InstanceAddr,
    /// The process id.
    pub pid: Option<u32>,
    _stdin: Option<ChildStdin>,
    kill: Option<oneshot::Sender<()>>,
}

impl Running {
    /// An instance with no process behind it, for tests of the scaling decisions.
    #[cfg(test)]
    pub(crate) fn detached(id: u64) -> Running {
        let addr = InstanceAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        Running { id, addr, pid: None, _stdin: None, kill: None }
    }

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

/// A started monitor process, as its watcher needs it.
struct Watched {
    id: u64,
    name: String,
    child: Child,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    logs: LogBuffer,
    socket: Option<PathBuf>,
    /// The volume's one-writer permit, given back once the process is reaped.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Waits for the process to end (or to be told to kill it) and reports how it ended.
async fn watch(
    watched: Watched,
    killed: oneshot::Receiver<()>,
    exits: mpsc::UnboundedSender<Exited>,
) {
    let Watched { id, name, mut child, mut stderr, logs, socket, permit } = watched;
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
    // The process is reaped: the next writer of its volume may start.
    drop(permit);
    crate::sockets::remove_socket(socket.as_deref());
    let service = name.rsplit_once('-').map_or(name.as_str(), |(s, _)| s).to_owned();
    let code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
    let _ = exits.send(Exited {
        id,
        service,
        killed: by_our_kill,
        code,
        last_words: stop_cause(last_words, code, signal),
    });
}

/// Why a monitor ended, for `last_crash` and the log: the monitor's own last line on stderr,
/// which only the monitor writes (the guest's console is stdout). Without one, the guest
/// ended on its own, and its status is only a number it chose: a guest exiting 124 or 139
/// did not time out or fault, so the exit number is never read as a verdict.
fn stop_cause(last_words: String, code: Option<i32>, signal: Option<i32>) -> String {
    if !last_words.is_empty() {
        return last_words;
    }
    match (code, signal) {
        (Some(code), _) => format!("guest exited with status {code}"),
        (None, Some(signal)) => format!("monitor killed by signal {signal}"),
        (None, None) => "monitor ended (status unknown)".to_owned(),
    }
}

/// The resident memory of process `pid`, KiB (from /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::stop_cause;

    #[test]
    fn a_guest_exit_status_is_never_read_as_a_monitor_verdict() {
        for code in [124, 139, 152, 159] {
            let cause = stop_cause(String::new(), Some(code), None);
            assert_eq!(cause, format!("guest exited with status {code}"));
            for verdict in ["time limit", "fault", "CPU time", "seccomp", "stopped"] {
                assert!(!cause.contains(verdict), "{cause:?} reads as {verdict:?}");
            }
        }
        let timeout = "mayfly: guest stopped: time limit of 1.000 s reached";
        assert_eq!(stop_cause(timeout.to_owned(), Some(124), None), timeout);
        assert_eq!(stop_cause(String::new(), None, Some(9)), "monitor killed by signal 9");
    }
}
