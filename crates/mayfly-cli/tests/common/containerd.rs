//! A private containerd for the tests: its own root, state, sockets and config in a temp dir,
//! with the runtime `io.containerd.mayfly.v2` resolved to the shim built from this workspace.
//! Stopped, and its directory removed, when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The runtime name containerd resolves to `containerd-shim-mayfly-v2` on its PATH.
pub const RUNTIME: &str = "io.containerd.mayfly.v2";

/// Fails the test, saying why, when a program the containerd tests need is missing.
pub fn require_program(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: the containerd tests run a real containerd 1.6 and ctr \
         (Debian: apt-get install containerd runc skopeo); .ci/run installs them"
    );
}

/// The shim binary, built beside the `mayfly` binary under test (where the shim looks for it).
pub fn shim_binary() -> PathBuf {
    let mayfly = Path::new(env!("CARGO_BIN_EXE_mayfly"));
    let dir = mayfly.parent().expect("the mayfly binary's directory");
    let shim = dir.join("containerd-shim-mayfly-v2");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", "mayfly-shim", "--manifest-path"]);
    cargo.arg(crate::common::repo().join("Cargo.toml"));
    if dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build -p mayfly-shim");
    assert!(status.success(), "cargo build -p mayfly-shim failed");
    assert!(shim.is_file(), "{} is missing after building mayfly-shim", shim.display());
    shim
}

pub struct Containerd {
    pub dir: PathBuf,
    child: Child,
    /// containerd's namespace ctr works in: `default`, or CRI's `k8s.io`.
    namespace: &'static str,
}

/// The CRI plugin's setup: containerd runs in network namespace `netns` (a path), where the
/// CNI bridge network `cni_conf` (a conflist, in `<dir>/cni`; `{dir}` in it is replaced by
/// containerd's directory) puts the pods; runtime handler
/// `mayfly` is the Mayfly shim; `sandbox_image` is the pod sandbox's image (imported, never
/// pulled).
pub struct Cri<'a> {
    pub netns: &'a Path,
    pub cni_conf: &'a str,
    pub sandbox_image: &'a str,
    /// Where the CNI plugins are (`{dir}` replaced as in `cni_conf`); `/usr/lib/cni` if `None`.
    pub cni_bin_dir: Option<&'a str>,
}

impl Containerd {
    /// Starts containerd and waits (at most 20 s) until `ctr version` reaches it.
    #[allow(dead_code)] // tests/containerd.rs only
    pub fn start() -> Containerd {
        Containerd::launch(None)
    }

    /// Starts containerd with its CRI plugin (see [`Cri`]); `ctr` then works in `k8s.io`.
    #[allow(dead_code)] // tests/cri.rs only
    pub fn start_cri(cri: &Cri<'_>) -> Containerd {
        Containerd::launch(Some(cri))
    }

    /// CRI's gRPC socket (the kubelet's `--container-runtime-endpoint`).
    #[allow(dead_code)] // tests/cri.rs only
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn launch(cri: Option<&Cri<'_>>) -> Containerd {
        require_program("containerd");
        require_program("ctr");
        crate::common::require_kvm();
        let shim_dir = shim_binary().parent().unwrap().to_owned();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mayfly-ctd-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let mut config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n"
        );
        match cri {
            None => config.insert_str(0, "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"),
            Some(cri) => {
                std::fs::create_dir_all(dir.join("cni")).unwrap();
                let conf = cri.cni_conf.replace("{dir}", &d.to_string());
                std::fs::write(dir.join("cni/10-mayfly.conflist"), conf).unwrap();
                let cri_plugin = "plugins.\"io.containerd.grpc.v1.cri\"";
                config.push_str(&format!(
                    "[{cri_plugin}]\n  sandbox_image = \"{image}\"\n  stream_server_port = \"0\"\n\
                     [{cri_plugin}.cni]\n  bin_dir = \"{bin_dir}\"\n  conf_dir = \"{d}/cni\"\n\
                     [{cri_plugin}.containerd]\n  default_runtime_name = \"mayfly\"\n\
                     [{cri_plugin}.containerd.runtimes.mayfly]\n  runtime_type = \"{RUNTIME}\"\n",
                    image = cri.sandbox_image,
                    bin_dir =
                        cri.cni_bin_dir.unwrap_or("/usr/lib/cni").replace("{dir}", &d.to_string()),
                ));
            }
        }
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![shim_dir];
        paths.extend(std::env::split_paths(&path));
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        // Under CRI, containerd (and the CNI plugins it runs) live in the test's network
        // namespace: the bridge and the pods' traffic never reach the host's.
        let mut command = match cri {
            None => Command::new("containerd"),
            Some(cri) => {
                let mut nsenter = Command::new("nsenter");
                nsenter.arg(format!("--net={}", cri.netns.display())).arg("containerd");
                nsenter
            }
        };
        let child = command
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", std::env::join_paths(paths).unwrap())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let namespace = if cri.is_some() { "k8s.io" } else { "default" };
        let mut containerd = Containerd { dir, child, namespace };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if containerd.ctr(&["version"]).status.success() {
                return containerd;
            }
            if let Ok(Some(status)) = containerd.child.try_wait() {
                panic!("containerd exited ({status}) at start:\n{}", containerd.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd not ready in 20 s:\n{}",
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.dir.join("containerd.sock"));
        cmd.args(["--namespace", self.namespace]).args(args);
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("run ctr")
    }

    /// Runs `ctr` and fails the test if it fails; its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The socket of the shim of container `id`, where containerd-shim puts it:
    /// /run/containerd/s/<sha256 of "<containerd address>/<namespace>/<id>">.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let socket = self.dir.join("containerd.sock");
        let key = format!("{}/{}/{id}", socket.display(), self.namespace);
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sha256sum");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), key.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let hex = String::from_utf8_lossy(&out.stdout);
        Path::new("/run/containerd/s").join(hex.split_whitespace().next().unwrap_or_default())
    }

    /// What is left behind: containers, tasks, mounts under our directory, monitor and shim
    /// processes whose command line names our directory, the shim sockets of containers `ids`.
    /// Empty when all is clean.
    pub fn leftovers(&self, ids: &[&str]) -> Vec<String> {
        let mut left = Vec::new();
        for id in ids {
            let socket = self.shim_socket(id);
            if socket.exists() {
                left.push(format!("shim socket {} of {id}", socket.display()));
            }
        }
        let containers = self.ctr_ok(&["containers", "list", "--quiet"]);
        left.extend(containers.lines().map(|c| format!("container {c}")));
        let tasks = self.ctr_ok(&["tasks", "list", "--quiet"]);
        left.extend(tasks.lines().map(|t| format!("task {t}")));
        let dir = self.dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        left.extend(mounts.lines().filter(|m| m.contains(&dir)).map(|m| format!("mount {m}")));
        for (pid, cmdline) in our_processes(&dir) {
            left.push(format!("process {pid}: {cmdline}"));
        }
        left
    }

    /// Fails the test unless nothing of `ids` is left within 10 s. containerd reaps a shim
    /// asynchronously after `ctr run --rm` or a sandbox's removal returns, so what is left is
    /// polled until it is gone (or the deadline says it never goes), never read once.
    pub fn assert_nothing_left(&self, ids: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.leftovers(ids);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind after 10 s: {left:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After a failed test: kills the shims and monitors left under our directory and
    /// unmounts what is still mounted there, so that one failure does not leak into the next.
    fn clean_up_after_failure(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        for (pid, _) in our_processes(&dir) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for target in mounts.lines().filter_map(|m| m.split(' ').nth(1)) {
            if target.contains(&dir) {
                let _ = Command::new("umount").args(["-l", target]).status();
            }
        }
    }
}

/// Monitors (`mayfly run ...`) and shims (`containerd-shim-mayfly-v2 ...`) whose command line
/// names `dir`: pid and command line.
fn our_processes(dir: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let argv: Vec<&str> = cmdline.split('\0').collect();
        let program = argv.first().map_or("", |p| p.rsplit('/').next().unwrap_or(p));
        let monitor = program == "mayfly" && argv.get(1) == Some(&"run");
        if (monitor || program == "containerd-shim-mayfly-v2") && cmdline.contains(dir) {
            found.push((pid, argv.join(" ")));
        }
    }
    found
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SIGTERM: containerd stops cleanly (its shims are stopped by the tests themselves).
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.clean_up_after_failure();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
