//! Mayfly under Kubernetes' CRI: a private containerd 1.6 with its CRI plugin, runtime handler
//! `mayfly` = containerd-shim-mayfly-v2, and a CNI bridge network, all inside a network
//! namespace the test creates (no traffic leaves it). A Rust client speaks CRI gRPC as the
//! kubelet does (k8s-cri): RunPodSandbox (CNI sets up the pod network), CreateContainer,
//! StartContainer; the unikernel answers HTTP on the pod IP; StopPodSandbox and
//! RemovePodSandbox leave nothing behind. These tests FAIL, saying why, when containerd or the
//! CNI plugins are missing (apt-get install containerd containernetworking-plugins).

mod common;
#[path = "common/cri.rs"]
mod cri;
#[path = "common/containerd.rs"]
mod private_containerd;

use cri::{Kubelet, Netns};
use k8s_cri::v1 as api;
use private_containerd::{Containerd, Cri};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const SANDBOX_IMAGE: &str = "mayfly.local/pause:cri";
const WEB_IMAGE: &str = "mayfly.local/http-hello:cri";
const CRASH_IMAGE: &str = "mayfly.local/probe-crash:cri";
const WEB_PORT: u16 = 8080;

/// The CNI network: a bridge with a gateway address, pods on 10.231.0.0/24 (host-local keeps
/// its leases in containerd's directory, `{dir}`).
const CNI_CONF: &str = r#"{"cniVersion": "0.4.0", "name": "mayfly-cri", "plugins": [{
  "type": "bridge", "bridge": "mfcri0", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "dataDir": "{dir}/ipam",
           "ranges": [[{"subnet": "10.231.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}
}]}"#;

/// A private containerd with CRI in a fresh namespace, the images imported into `k8s.io`.
/// Fields drop in order: containerd stops before its namespace goes.
struct Node {
    containerd: Containerd,
    netns: Netns,
    kubelet: Kubelet,
}

fn node() -> Node {
    node_with(None)
}

fn node_with(cni_bin_dir: Option<&str>) -> Node {
    assert!(
        Path::new("/usr/lib/cni/bridge").is_file(),
        "the CNI plugins are not installed (/usr/lib/cni/bridge): apt-get install \
         containernetworking-plugins; .ci/run installs them"
    );
    let netns = Netns::create();
    let containerd = Containerd::start_cri(&Cri {
        netns: &netns.path,
        cni_conf: CNI_CONF,
        sandbox_image: SANDBOX_IMAGE,
        cni_bin_dir,
    });
    import(&containerd, "examples/hello", SANDBOX_IMAGE, &[]);
    import(&containerd, "examples/http-hello", WEB_IMAGE, &["--port", "8080", "--", "8080"]);
    import(&containerd, "tests/guests/probe", CRASH_IMAGE, &["--", "panic"]);
    let kubelet = Kubelet::connect(&containerd.socket());
    Node { containerd, netns, kubelet }
}

fn import(containerd: &Containerd, rel: &str, reference: &str, options: &[&str]) {
    let image = common::guest_image(rel);
    let tar = containerd.dir.join("image.tar");
    let out = common::mayfly()
        .arg("image")
        .arg(&image)
        .arg("-o")
        .arg(&tar)
        .args(["--name", reference])
        .args(options)
        .output()
        .unwrap();
    assert!(out.status.success(), "mayfly image: {}", String::from_utf8_lossy(&out.stderr));
    containerd.ctr_ok(&["images", "import", tar.to_str().unwrap()]);
}

fn pod_config(node: &Node, name: &str) -> api::PodSandboxConfig {
    let logs = node.containerd.dir.join("pods").join(name);
    std::fs::create_dir_all(&logs).unwrap();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        ..Default::default()
    }
}

/// The pod's network namespace path, from its sandbox container's spec.
fn pod_netns(containerd: &Containerd, sandbox: &str) -> String {
    let info = containerd.ctr_ok(&["containers", "info", sandbox]);
    let at = info.find("/var/run/netns/").expect("the sandbox spec names a network namespace");
    info[at..].split('"').next().unwrap().to_owned()
}

impl Node {
    /// RunPodSandbox with handler `mayfly`: the sandbox id and the pod IP.
    fn run_pod(&mut self, config: &api::PodSandboxConfig) -> (String, Ipv4Addr) {
        let request = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "mayfly".into(),
        };
        let id = match self.kubelet.rt.block_on(self.kubelet.client.run_pod_sandbox(request)) {
            Ok(reply) => reply.into_inner().pod_sandbox_id,
            Err(status) => panic!("RunPodSandbox: {status}\n{}", self.containerd.log()),
        };
        let request = api::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false };
        let status = self.kubelet.rt.block_on(self.kubelet.client.pod_sandbox_status(request));
        let status = status.expect("PodSandboxStatus").into_inner().status.unwrap();
        let ip = status.network.expect("the pod has a network").ip;
        (id, ip.parse().unwrap_or_else(|_| panic!("pod IP {ip:?}")))
    }

    /// CreateContainer (`image`, `command` if not empty) then StartContainer: the container's
    /// id, or StartContainer's error.
    fn start_container(
        &mut self,
        pod: &str,
        config: &api::PodSandboxConfig,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> (String, Result<(), tonic::Status>) {
        let request = api::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }),
                image: Some(api::ImageSpec { image: image.into(), ..Default::default() }),
                command: command.iter().map(|c| (*c).to_owned()).collect(),
                log_path: format!("{name}.log"),
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        };
        let created = self.kubelet.rt.block_on(self.kubelet.client.create_container(request));
        let id = created.expect("CreateContainer").into_inner().container_id;
        let request = api::StartContainerRequest { container_id: id.clone() };
        let started = self.kubelet.rt.block_on(self.kubelet.client.start_container(request));
        (id, started.map(|_| ()))
    }

    fn container_status(&mut self, id: &str) -> api::ContainerStatus {
        let request = api::ContainerStatusRequest { container_id: id.into(), verbose: false };
        let reply = self.kubelet.rt.block_on(self.kubelet.client.container_status(request));
        reply.expect("ContainerStatus").into_inner().status.expect("a container status")
    }

    /// StopPodSandbox then RemovePodSandbox.
    fn remove_pod(&mut self, id: &str) {
        let stop = api::StopPodSandboxRequest { pod_sandbox_id: id.into() };
        let stopped = self.kubelet.rt.block_on(self.kubelet.client.stop_pod_sandbox(stop));
        stopped.unwrap_or_else(|s| panic!("StopPodSandbox: {s}\n{}", self.containerd.log()));
        let remove = api::RemovePodSandboxRequest { pod_sandbox_id: id.into() };
        let removed = self.kubelet.rt.block_on(self.kubelet.client.remove_pod_sandbox(remove));
        removed.unwrap_or_else(|s| panic!("RemovePodSandbox: {s}"));
    }

    /// Waits (at most 30 s) for the first HTTP response from `addr`, from inside the namespace.
    fn first_response(&self, addr: SocketAddr) -> common::HttpReply {
        self.netns.run(|| {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let timeout = Duration::from_millis(500);
                if let Some(reply) = common::http_request(addr, "GET", "/", &[], b"", timeout) {
                    return reply;
                }
                assert!(Instant::now() < deadline, "no HTTP answer from {addr} within 30 s");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }
}

impl Drop for Node {
    /// After a failed test, removes the pods still there (CNI deletes their network, containerd
    /// their namespace) before containerd stops.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let listed = self.kubelet.rt.block_on(
            self.kubelet.client.list_pod_sandbox(api::ListPodSandboxRequest { filter: None }),
        );
        for pod in listed.map(|r| r.into_inner().items).unwrap_or_default() {
            let stop = api::StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() };
            let _ = self.kubelet.rt.block_on(self.kubelet.client.stop_pod_sandbox(stop));
            let remove = api::RemovePodSandboxRequest { pod_sandbox_id: pod.id };
            let _ = self.kubelet.rt.block_on(self.kubelet.client.remove_pod_sandbox(remove));
        }
    }
}

/// Links in the network namespace at `path` (`ip -o link`).
fn links_in(path: &str) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={path}"))
        .args(["ip", "-o", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pod_serves_http_on_its_pod_ip_and_leaves_nothing_behind() {
    let mut node = node();
    let config = pod_config(&node, "web");
    let started = Instant::now();
    let (pod, ip) = node.run_pod(&config);
    let sandbox_ready = started.elapsed();
    let pod_ns = pod_netns(&node.containerd, &pod);
    let (web, result) = node.start_container(&pod, &config, "web", WEB_IMAGE, &[]);
    result.unwrap_or_else(|s| panic!("StartContainer: {s}\n{}", node.containerd.log()));
    let container_started = started.elapsed();
    let reply = node.first_response(SocketAddr::from((ip, WEB_PORT)));
    let answered = started.elapsed();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(String::from_utf8_lossy(&reply.body), "Hello from a Mayfly unikernel!\n");
    eprintln!(
        "cri: pod start {answered:?} (RunPodSandbox {sandbox_ready:?}, + Create/StartContainer \
         {:?}, + first response {:?})",
        container_started - sandbox_ready,
        answered - container_started
    );
    let status = node.container_status(&web);
    assert_eq!(status.state, api::ContainerState::ContainerRunning as i32, "{status:?}");
    // The guest took eth0 through the tap in the pod's namespace.
    let links = links_in(&pod_ns);
    assert!(links.contains(" mayfly0:"), "no tap in the pod's namespace: {links}");
    assert!(node.netns.links().iter().any(|l| l.starts_with("veth")), "no pod veth");
    // The pod IP's neighbour entry (learnt from the guest's ARP answer) is eth0's MAC.
    let eth0 = links_in(&pod_ns);
    let eth0 = eth0.lines().find(|l| l.contains(" eth0@")).expect("the pod's eth0");
    let mac = eth0.split("link/ether ").nth(1).and_then(|m| m.split(' ').next()).unwrap();
    let neigh = std::process::Command::new("ip")
        .args(["-n", &node.netns.name, "neigh", "show", &ip.to_string()])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        neigh.contains(&format!("lladdr {mac}")),
        "the guest is not at eth0's MAC {mac}: {neigh}"
    );

    node.remove_pod(&pod);
    node.containerd.assert_nothing_left(&[&pod, &web]);
    assert!(!Path::new(&pod_ns).exists(), "the pod's namespace {pod_ns} is left");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&pod_ns), "the pod's namespace is still mounted");
    let veths: Vec<String> =
        node.netns.links().into_iter().filter(|l| l.starts_with("veth")).collect();
    assert!(veths.is_empty(), "pod veths left: {veths:?}");
}

#[test]
fn a_crashing_container_reports_its_exit_code_and_reason() {
    let mut node = node();
    let config = pod_config(&node, "crash");
    let (pod, _) = node.run_pod(&config);
    let (id, result) = node.start_container(&pod, &config, "crash", CRASH_IMAGE, &[]);
    result.unwrap_or_else(|s| panic!("StartContainer: {s}\n{}", node.containerd.log()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = node.container_status(&id);
        if status.state == api::ContainerState::ContainerExited as i32 {
            break status;
        }
        assert!(Instant::now() < deadline, "not exited after 30 s: {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.exit_code, 101, "{status:?}");
    assert_eq!(status.reason, "Error", "{status:?}");
    let log = std::fs::read_to_string(&status.log_path).unwrap_or_default();
    assert!(log.contains("mayfly: guest panicked: probe panicked on purpose"), "log: {log}");
    node.remove_pod(&pod);
    node.containerd.assert_nothing_left(&[&pod, &id]);
}

#[test]
fn a_container_that_is_not_a_mayfly_image_is_refused_saying_why() {
    let mut node = node();
    let config = pod_config(&node, "other");
    let (pod, _) = node.run_pod(&config);
    // What a non-Mayfly image runs (its own program, not /mayfly/image).
    let (id, result) = node.start_container(&pod, &config, "sh", WEB_IMAGE, &["/bin/sh"]);
    let error = result.expect_err("a container that is no unikernel started").message().to_owned();
    assert!(error.contains("not a Mayfly image"), "{error}");
    let status = node.container_status(&id);
    assert_ne!(status.state, api::ContainerState::ContainerRunning as i32, "{status:?}");
    node.remove_pod(&pod);
    node.containerd.assert_nothing_left(&[&pod, &id]);
}

/// Wrappers for the CNI plugins in `<containerd dir>/cni-bin` that log each call's duration
/// (`PLUGIN COMMAND NANOS` lines in `<dir>/cni-times`); their own cost (a shell and two `date`)
/// is counted as CNI's.
fn timed_cni_plugins(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for plugin in ["bridge", "host-local", "loopback"] {
        let script = format!(
            "#!/bin/sh\ns=$(date +%s%N)\n/usr/lib/cni/{plugin} \"$@\"\nrc=$?\n\
             echo \"{plugin} $CNI_COMMAND $(( $(date +%s%N) - s ))\" >> {}/cni-times\nexit $rc\n",
            dir.display()
        );
        let path = bin.join(plugin);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// CRI pod start, RunPodSandbox to the first HTTP response from the pod IP, `MAYFLY_CRI_RUNS`
/// times (default 20, one pod at a time), with the shares of CNI (the plugins' run time),
/// Mayfly (the shim preparing the VM, from its log, plus `go` to the first response) and
/// containerd (the rest: CRI, the shim processes' start, task and container records).
#[test]
#[ignore = "a measurement: cargo test --release -p mayfly-cli --test cri -- --ignored --nocapture"]
fn cri_pod_start_p50() {
    let runs: usize =
        std::env::var("MAYFLY_CRI_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let mut node = node_with(Some("{dir}/cni-bin"));
    timed_cni_plugins(&node.containerd.dir);
    let times = node.containerd.dir.join("cni-times");
    let (mut totals, mut cnis, mut mayflies, mut others) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let _ = std::fs::remove_file(&times);
        let config = pod_config(&node, &format!("web{run}"));
        let begin = Instant::now();
        let (pod, ip) = node.run_pod(&config);
        let (web, result) = node.start_container(&pod, &config, "web", WEB_IMAGE, &[]);
        result.unwrap_or_else(|s| panic!("StartContainer: {s}"));
        let started = begin.elapsed();
        let reply = node.first_response(SocketAddr::from((ip, WEB_PORT)));
        let total = begin.elapsed();
        assert_eq!(reply.status, 200);
        let cni_ns: u64 = std::fs::read_to_string(&times)
            .unwrap_or_default()
            .lines()
            // host-local runs inside bridge (its IPAM): counted in bridge's time already.
            .filter(|l| l.contains(" ADD ") && !l.starts_with("host-local"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        let log = node.containerd.log();
        let needle = format!("mayfly: {web}: VM prepared in ");
        let prepared_us: u64 = log
            .lines()
            .find_map(|l| l.split(&needle).nth(1)?.split(' ').next()?.parse().ok())
            .expect("the shim logs its VM preparation in containerd's log");
        let cni = Duration::from_nanos(cni_ns);
        let mayfly = Duration::from_micros(prepared_us) + (total - started);
        totals.push(total);
        cnis.push(cni);
        mayflies.push(mayfly);
        others.push(total.saturating_sub(cni + mayfly));
        node.remove_pod(&pod);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpu.lines().find_map(|l| l.strip_prefix("model name\t: ")).unwrap_or("?").to_owned();
    eprintln!(
        "cri pod start, {runs} runs on {cpu}: p50 {:?} (shares, each a p50: CNI {:?}, Mayfly {:?}, \
         containerd {:?})",
        median(totals),
        median(cnis),
        median(mayflies),
        median(others)
    );
}
