//! Pod networking: the guest's NIC joins the pod's network namespace in place of its `eth0`.
//!
//! The CNI plugin gave the pod's namespace a veth `eth0` holding the pod's IP. The shim makes a
//! tap ([`TAP`]) in that namespace and redirects every frame both ways between `eth0` and the
//! tap with tc (an ingress qdisc and a `mirred egress redirect` filter on each), as Kata and
//! urunc do; the guest takes eth0's IPv4 address, prefix, MAC and default gateway, read from
//! the namespace. The kernel's own stack in the namespace sees no frame of eth0 any more: the
//! guest answers ARP and TCP for the pod IP. A tap (rather than an AF_PACKET socket on eth0, as
//! gVisor does) keeps the monitor's tap backend and its sandbox unchanged: the monitor opens a
//! tap by name, and the redirect is done in the kernel without a copy through the shim.
//!
//! Everything runs in a thread that entered the namespace (`setns` applies to the calling
//! thread only), so the `ip`/`tc` commands and the monitor it spawns are born inside it.

use anyhow::{Context, Result, bail};
use containerd_shim::monitor::{Topic, monitor_subscribe, wait_pid};
use serde::Deserialize;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The tap's name inside the pod's namespace: one Mayfly guest per pod takes its `eth0`.
pub const TAP: &str = "mayfly0";
/// The pod interface CNI made (the name CRI asks CNI for).
const POD_IF: &str = "eth0";

/// What the guest takes from the pod's `eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// `ADDR/PREFIX`.
    pub cidr: String,
    pub gateway: Option<String>,
    pub mac: String,
    pub mtu: u32,
}

impl PodAddress {
    /// The monitor's arguments for this address on [`TAP`].
    pub fn monitor_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--net=tap={TAP}"),
            format!("--ip={}", self.cidr),
            format!("--mac={}", self.mac),
        ];
        if let Some(gateway) = &self.gateway {
            args.push(format!("--gateway={gateway}"));
        }
        args
    }
}

#[derive(Deserialize)]
struct Link {
    address: Option<String>,
    mtu: Option<u32>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Deserialize)]
struct AddrInfo {
    family: Option<String>,
    local: Option<String>,
    prefixlen: Option<u8>,
}

#[derive(Deserialize)]
struct Route {
    gateway: Option<String>,
}

/// Runs a command (in the calling thread's namespace); its stdout, or an error with its stderr.
/// Its exit comes through containerd-shim's reaper (which reaps every child of the shim), not
/// `waitpid`.
fn run(program: &str, args: &[&str]) -> Result<String> {
    use std::io::Read;
    let exits = monitor_subscribe(Topic::Pid).context("cannot watch for a command's exit")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{program}` (install iproute2)"))?;
    let mut stderr = child.stderr.take().context("a command's stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let stderr = errors.join().unwrap_or_default();
    let code = wait_pid(i32::try_from(child.id()).unwrap_or(i32::MAX), exits);
    if code != 0 {
        bail!(
            "`{program} {}` failed in the pod's network namespace: {}",
            args.join(" "),
            stderr.trim()
        );
    }
    Ok(stdout)
}

/// Reads eth0's IPv4 address, MAC and MTU and the default gateway (in the current namespace).
fn read_pod_address() -> Result<PodAddress> {
    let links: Vec<Link> =
        serde_json::from_str(&run("ip", &["-j", "addr", "show", "dev", POD_IF])?)
            .context("cannot parse `ip -j addr`")?;
    let link = links.first().context("the pod's network namespace has no eth0")?;
    let inet = link
        .addr_info
        .iter()
        .find(|a| a.family.as_deref() == Some("inet"))
        .context("the pod's eth0 has no IPv4 address (is CNI configured?)")?;
    let (Some(local), Some(prefix)) = (&inet.local, inet.prefixlen) else {
        bail!("the pod's eth0 has an incomplete IPv4 address");
    };
    let routes: Vec<Route> =
        serde_json::from_str(&run("ip", &["-j", "-4", "route", "show", "default"])?)
            .context("cannot parse `ip -j route`")?;
    let mtu = link.mtu.context("the pod's eth0 has no MTU")?;
    if mtu < mayfly_abi::net::MTU {
        bail!(
            "the pod's eth0 has MTU {mtu}; a Mayfly guest needs {} (raise the CNI network's mtu)",
            mayfly_abi::net::MTU
        );
    }
    Ok(PodAddress {
        cidr: format!("{local}/{prefix}"),
        gateway: routes.into_iter().find_map(|r| r.gateway),
        mac: link.address.clone().context("the pod's eth0 has no MAC address")?,
        mtu,
    })
}

/// Makes [`TAP`] and the tc redirects between it and eth0.
fn plumb(address: &PodAddress) -> Result<()> {
    if run("ip", &["link", "show", "dev", TAP]).is_ok() {
        bail!("the pod has a Mayfly guest already: one Mayfly container per pod takes its eth0");
    }
    let mtu = address.mtu.to_string();
    run("ip", &["tuntap", "add", "dev", TAP, "mode", "tap"])?;
    run("ip", &["link", "set", "dev", TAP, "mtu", &mtu, "up"])?;
    for (from, to) in [(POD_IF, TAP), (TAP, POD_IF)] {
        run("tc", &["qdisc", "add", "dev", from, "ingress"])?;
        run(
            "tc",
            &[
                "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match",
                "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
            ],
        )?;
    }
    Ok(())
}

/// Removes the tap and eth0's redirect (in the current namespace); what is gone already is fine.
fn unplumb() {
    let _ = run("tc", &["qdisc", "del", "dev", POD_IF, "ingress"]);
    let _ = run("ip", &["link", "del", "dev", TAP]);
}

/// Runs `work` in a thread that entered the network namespace at `netns`.
fn in_namespace<T: Send + 'static>(
    netns: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let file = std::fs::File::open(netns)
        .with_context(|| format!("cannot open the pod's network namespace {}", netns.display()))?;
    let thread = std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("cannot enter the pod's network namespace")?;
        work()
    });
    thread.join().unwrap_or_else(|_| bail!("the pod network thread panicked"))
}

/// In the pod's namespace: plumbs the tap to eth0, then calls `spawn` with the monitor's
/// network arguments (`--net`, `--ip`, `--mac`, `--gateway`), so the monitor is born there.
/// Undoes the plumbing if anything fails.
pub fn spawn_in_pod(
    netns: &Path,
    spawn: impl FnOnce(Vec<String>) -> Result<Child> + Send + 'static,
) -> Result<Child> {
    in_namespace(netns, move || {
        let address = read_pod_address()?;
        let spawned = plumb(&address).and_then(|()| spawn(address.monitor_args()));
        if spawned.is_err() {
            unplumb();
        }
        spawned
    })
}

/// The argument that makes the shim binary a pod holder.
pub const HOLD: &str = "hold";

/// A pod holder: waits, doing nothing, until a signal ends it. CRI gives a pod's containers
/// the network namespace of the sandbox task's pid (`/proc/PID/ns/net`), so the sandbox task
/// needs a process living in the pod's namespace: this one, not a VM.
pub fn hold() -> ! {
    loop {
        nix::unistd::pause();
    }
}

/// Starts a pod holder (`<this binary> hold <bundle>`) inside the pod's namespace at `netns`.
pub fn spawn_holder(netns: &Path, bundle: &Path) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the shim's own binary")?;
    let bundle = bundle.to_owned();
    in_namespace(netns, move || {
        Command::new(exe)
            .arg(HOLD)
            .arg(bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the pod holder")
    })
}

/// Removes the guest's tap and redirects from the pod's namespace (when its container is
/// deleted), so the pod can run its container again; a namespace that is gone is fine.
pub fn release(netns: &Path) {
    if netns.exists() {
        let _ = in_namespace(netns, || {
            unplumb();
            Ok(())
        });
    }
}
