//! One container: its root file system, its monitor process, and its state.

use crate::pod_net;
use anyhow::{Context, Result, bail};
use containerd_shim::monitor::{Subscription, Topic, monitor_subscribe, wait_pid};
use mayfly_protocol::standby::{self, MonitorLine};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a monitor may take to prepare its VM before `create` gives up.
const PREPARE_DEADLINE: Duration = Duration::from_secs(20);

/// Where containerd's stdio FIFOs are (empty: none).
#[derive(Debug, Clone, Default)]
pub struct Stdio3 {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// A monitor prepared in standby: `start` sends `go` through `go`. Or a pod holder (no `go`).
pub struct Monitor {
    pub pid: u32,
    pub go: Option<ChildStdin>,
    /// The reaper's subscription for this pid, taken before it was spawned.
    pub exits: Option<Subscription>,
    /// The pod's network namespace whose eth0 the guest took, if any.
    pub netns: Option<PathBuf>,
}

/// The `mayfly` binary: beside this shim (as cargo and packages install them), else on PATH.
fn mayfly_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("mayfly")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("mayfly"))
}

/// Opens a FIFO for writing without waiting for its reader (containerd opened it already);
/// `None` when containerd gave none.
fn open_output(path: &str) -> Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the output {path}"))?;
    Ok(Some(file))
}

/// Mounts the container's root file system (the snapshot containerd prepared) at `target`.
pub fn mount_rootfs(
    mounts: &[containerd_shim::protos::types::mount::Mount],
    target: &Path,
) -> Result<()> {
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for m in mounts {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()).filter(|t| !t.is_empty()),
            Some(m.source.as_str()),
            &m.options,
            target,
        )
        .with_context(|| format!("cannot mount the root file system ({} {})", m.type_, m.source))?;
    }
    Ok(())
}

/// Unmounts what `mount_rootfs` mounted (nothing to do if nothing is mounted there).
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    use nix::errno::Errno;
    loop {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(error) => bail!("cannot unmount {}: {error}", target.display()),
        }
    }
}

/// Starts `mayfly run --standby` for the bundle and waits until its VM is prepared. When the
/// spec names a network namespace (a pod's), the guest's NIC takes that namespace's eth0.
pub fn prepare_monitor(bundle: &Path, stdio: &Stdio3) -> Result<Monitor> {
    let launch = mayfly_oci::read_bundle(bundle)?;
    // A pod's guest takes eth0 if it has a NIC; one without stays off the network.
    let netns = launch.netns.clone().filter(|_| launch.network);
    let stdout = open_output(&stdio.stdout)?.map_or_else(Stdio::null, Stdio::from);
    let spawn = move |net: Vec<String>| -> Result<Child> {
        let mut cmd = Command::new(mayfly_binary());
        cmd.arg("run").arg(&launch.unikernel).arg("--standby");
        cmd.arg("--mem").arg(launch.memory_mib.to_string());
        cmd.args(net);
        for (key, value) in &launch.env {
            cmd.arg("--env").arg(format!("{key}={value}"));
        }
        cmd.arg("--").args(&launch.args);
        cmd.stdin(Stdio::piped()).stdout(stdout).stderr(Stdio::piped());
        cmd.spawn().context("cannot start the monitor `mayfly run`")
    };
    // Subscribed before the spawn: the reaper may see the exit before we look.
    let exits = monitor_subscribe(Topic::Pid).context("cannot watch for the monitor's exit")?;
    let mut child = match &netns {
        Some(netns) => pod_net::spawn_in_pod(netns, spawn)?,
        None => spawn(Vec::new())?,
    };
    let pid = child.id();
    let stderr = child.stderr.take().context("the monitor's stderr")?;
    let go = child.stdin.take();
    let monitor = Monitor { pid, go, exits: Some(exits), netns };
    match wait_standby(stderr, open_output(&stdio.stderr)?) {
        Ok(()) => Ok(monitor),
        Err(error) => {
            kill(pid, libc::SIGKILL);
            release(&monitor);
            Err(error)
        }
    }
}

/// Starts the process that holds a pod's sandbox in the pod's namespace at `netns`.
pub fn start_holder(netns: &Path, bundle: &Path) -> Result<Monitor> {
    let exits = monitor_subscribe(Topic::Pid).context("cannot watch for the holder's exit")?;
    let child = pod_net::spawn_holder(netns, bundle)?;
    Ok(Monitor { pid: child.id(), go: None, exits: Some(exits), netns: None })
}

/// Gives back what the monitor held outside its process: the pod's eth0, if it took it.
pub fn release(monitor: &Monitor) {
    if let Some(netns) = &monitor.netns {
        pod_net::release(netns);
    }
}

/// Reads the monitor's stderr until it says it stands by; then a thread relays the rest to the
/// container's stderr, leaving out the standby protocol's own lines.
fn wait_standby(stderr: ChildStderr, out: Option<File>) -> Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel::<std::result::Result<(), String>>();
    let mut out: Box<dyn Write + Send> = match out {
        Some(file) => Box::new(file),
        None => Box::new(std::io::sink()),
    };
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            match MonitorLine::parse(&line) {
                Some(MonitorLine::Standby) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Some(_) => {}
                None => {
                    if ready.is_some() {
                        said.push(line.clone());
                    }
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        if let Some(tx) = ready {
            let _ = tx.send(Err(said.join("; ")));
        }
    });
    match ready_rx.recv_timeout(PREPARE_DEADLINE) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(said)) if said.is_empty() => bail!("the monitor stopped before its VM was ready"),
        Ok(Err(said)) => bail!("{said}"),
        Err(_) => bail!("the monitor did not prepare its VM within {PREPARE_DEADLINE:?}"),
    }
}

/// Sends `go`: the guest starts running (a pod holder runs already).
pub fn go(monitor: &mut Monitor) -> Result<()> {
    let Some(mut stdin) = monitor.go.take() else { return Ok(()) };
    stdin.write_all(standby::GO).context("the monitor is gone")?;
    Ok(())
}

/// Waits for the monitor's exit; its status as containerd expects it.
pub fn wait_exit(pid: u32, exits: Subscription) -> u32 {
    let code = wait_pid(i32::try_from(pid).unwrap_or(i32::MAX), exits);
    u32::try_from(code).unwrap_or(255)
}

/// Sends `signal` to a monitor process.
pub fn kill(pid: u32, signal: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    let Ok(signal) = nix::sys::signal::Signal::try_from(signal) else { return false };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}
