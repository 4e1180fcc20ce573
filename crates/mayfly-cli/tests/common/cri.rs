//! The Kubernetes side of the CRI tests: a CRI gRPC client (k8s-cri, tonic) speaking to a
//! private containerd as the kubelet does, and a network namespace for containerd and its pods.

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use tonic::transport::{Channel, Endpoint, Uri};

/// A network namespace of the test's own (`ip netns add`), deleted when dropped.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn create() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("mayfly-cri-{}-{n}", std::process::id());
        let ok = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        ok(&["netns", "add", &name]);
        ok(&["-n", &name, "link", "set", "lo", "up"]);
        let path = Path::new("/var/run/netns").join(&name);
        Netns { name, path }
    }

    /// Runs `work` in a thread inside this namespace (setns applies to that thread only).
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(&self.path).expect("open the test's network namespace");
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns on a descriptor we own; it changes this thread's namespace only.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    work()
                })
                .join()
                .expect("the thread in the test's namespace panicked")
        })
    }

    /// Interfaces in this namespace (`ip -o link` names).
    pub fn links(&self) -> Vec<String> {
        let out = Command::new("ip").args(["-n", &self.name, "-o", "link"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_owned())
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The kubelet's side of CRI: a runtime client on containerd's socket, and the tokio runtime
/// that drives it.
pub struct Kubelet {
    pub rt: tokio::runtime::Runtime,
    pub client: RuntimeServiceClient<Channel>,
}

impl Kubelet {
    pub fn connect(socket: &Path) -> Kubelet {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let socket = socket.to_owned();
        let channel = rt
            .block_on(Endpoint::try_from("http://[::]").unwrap().connect_with_connector(
                tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(socket).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }),
            ))
            .expect("connect to containerd's CRI socket");
        Kubelet { rt, client: RuntimeServiceClient::new(channel) }
    }
}
