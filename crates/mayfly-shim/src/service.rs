//! The shim v2 task service: containerd's requests for the containers of this shim.

use crate::container::{self, Monitor, Stdio3};
use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::topics::TASK_EXIT_EVENT_TOPIC;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts, TtrpcContext};
use containerd_shim::{Context as TtrpcCallContext, TtrpcResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Exit status reported when the shim cleans up after a container it did not see exit.
const KILLED: u32 = 128 + 9;

struct Container {
    bundle: PathBuf,
    stdio: Stdio3,
    /// The monitor's (or pod holder's) pid; the shim's own for a sandbox without a process.
    pid: u32,
    /// The monitor, or a pod sandbox's holder; `None` for a sandbox without a process.
    monitor: Option<Monitor>,
    status: Status,
    exit: Option<(u32, Timestamp)>,
}

#[derive(Default)]
struct Shared {
    containers: Mutex<HashMap<String, Container>>,
    exited: Condvar,
}

/// The shim: one per container (containerd starts it with the container's id).
#[derive(Clone)]
pub struct Shim {
    shared: Arc<Shared>,
    exit: Arc<ExitSignal>,
    namespace: String,
    publisher: Option<Arc<Mutex<RemotePublisher>>>,
}

/// A ttrpc error containerd shows to the user (`ctr: <message>`).
fn failed(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

impl Shim {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.shared.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a monitor's exit in a thread; records it and tells containerd.
    fn watch(&self, id: String, pid: u32, exits: containerd_shim::monitor::Subscription) {
        let shim = self.clone();
        std::thread::spawn(move || {
            let status = container::wait_exit(pid, exits);
            let at = now();
            {
                let mut containers = shim.lock();
                if let Some(c) = containers.get_mut(&id) {
                    c.status = Status::STOPPED;
                    c.exit = Some((status, at.clone()));
                }
            }
            shim.shared.exited.notify_all();
            shim.publish_exit(&id, pid, status, at);
        });
    }

    fn publish_exit(&self, id: &str, pid: u32, status: u32, at: Timestamp) {
        let Some(publisher) = &self.publisher else { return };
        let event = TaskExit {
            container_id: id.to_owned(),
            id: id.to_owned(),
            pid,
            exit_status: status,
            exited_at: Some(at).into(),
            ..Default::default()
        };
        let publisher = publisher.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = publisher.publish(
            TtrpcCallContext::default(),
            TASK_EXIT_EVENT_TOPIC,
            &self.namespace,
            Box::new(event),
        ) {
            log::warn!("cannot publish the exit of {id}: {error}");
        }
    }
}

impl Shim {
    /// A pod's sandbox: no VM. Under CRI (the spec names the pod's network namespace) a holder
    /// process lives in that namespace, since CRI joins the pod's containers to the namespace
    /// of the sandbox's pid; else the task has no process (its pid is the shim's).
    fn create_sandbox(
        &self,
        id: String,
        bundle: PathBuf,
        stdio: Stdio3,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let fail = |error: anyhow::Error| {
            let _ = container::unmount_rootfs(&bundle.join("rootfs"));
            failed(Code::FAILED_PRECONDITION, format!("mayfly: {error:#}"))
        };
        let netns = mayfly_oci::bundle_network_namespace(&bundle).map_err(fail)?;
        let mut holder = match &netns {
            Some(netns) => Some(container::start_holder(netns, &bundle).map_err(fail)?),
            None => None,
        };
        let pid = holder.as_ref().map_or_else(std::process::id, |h| h.pid);
        let exits = holder.as_mut().and_then(|h| h.exits.take());
        let container =
            Container { bundle, stdio, pid, monitor: holder, status: Status::CREATED, exit: None };
        self.lock().insert(id.clone(), container);
        if let Some(exits) = exits {
            self.watch(id, pid, exits);
        }
        Ok(api::CreateTaskResponse { pid, ..Default::default() })
    }
}

impl containerd_shim::Shim for Shim {
    type T = Shim;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Shim {
            shared: Arc::default(),
            exit: Arc::default(),
            namespace: args.namespace.clone(),
            publisher: None,
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = opts.id.clone();
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        // Read back by the server when it stops, to remove its socket (in the bundle directory).
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    /// `containerd-shim-mayfly-v2 delete`: containerd cleans up after a shim that is gone.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        if let Ok(bundle) = std::env::current_dir() {
            let _ = container::unmount_rootfs(&bundle.join("rootfs"));
        }
        Ok(DeleteResponse {
            exit_status: KILLED,
            exited_at: Some(now()).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        Shim { publisher: Some(Arc::new(Mutex::new(publisher))), ..self.clone() }
    }
}

impl containerd_shim::Task for Shim {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if req.terminal {
            return Err(failed(
                Code::INVALID_ARGUMENT,
                "mayfly: no terminal: run without -t/--tty",
            ));
        }
        if self.lock().contains_key(&req.id) {
            return Err(failed(Code::ALREADY_EXISTS, format!("container {} exists", req.id)));
        }
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        if !req.rootfs.is_empty() {
            container::mount_rootfs(&req.rootfs, &rootfs)
                .map_err(|e| failed(Code::INTERNAL, format!("mayfly: {e:#}")))?;
        }
        let stdio = Stdio3 {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        let sandbox = match mayfly_oci::is_pod_sandbox(&bundle) {
            Ok(sandbox) => sandbox,
            Err(error) => {
                let _ = container::unmount_rootfs(&rootfs);
                return Err(failed(Code::INVALID_ARGUMENT, format!("mayfly: {error:#}")));
            }
        };
        if sandbox {
            return self.create_sandbox(req.id, bundle, stdio);
        }
        let preparing = std::time::Instant::now();
        let mut monitor = match container::prepare_monitor(&bundle, &stdio) {
            Ok(monitor) => {
                // In containerd's log (the shim's log FIFO): Mayfly's share of a container start.
                let micros = preparing.elapsed().as_micros();
                log::info!("mayfly: {}: VM prepared in {micros} us", req.id);
                monitor
            }
            Err(error) => {
                let _ = container::unmount_rootfs(&rootfs);
                return Err(failed(Code::FAILED_PRECONDITION, format!("mayfly: {error:#}")));
            }
        };
        let pid = monitor.pid;
        let exits = monitor.exits.take();
        self.lock().insert(
            req.id.clone(),
            Container {
                bundle,
                stdio,
                pid,
                monitor: Some(monitor),
                status: Status::CREATED,
                exit: None,
            },
        );
        if let Some(exits) = exits {
            self.watch(req.id.clone(), pid, exits);
        }
        Ok(api::CreateTaskResponse { pid, ..Default::default() })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let mut containers = self.lock();
        let c = containers
            .get_mut(&req.id)
            .ok_or_else(|| failed(Code::NOT_FOUND, format!("no container {}", req.id)))?;
        if let Some(monitor) = &mut c.monitor {
            container::go(monitor)
                .map_err(|e| failed(Code::FAILED_PRECONDITION, format!("mayfly: {e:#}")))?;
        }
        if c.status == Status::CREATED {
            c.status = Status::RUNNING;
        }
        Ok(api::StartResponse { pid: c.pid, ..Default::default() })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let containers = self.lock();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| failed(Code::NOT_FOUND, format!("no container {}", req.id)))?;
        let (exit_status, exited_at) = c.exit.clone().unwrap_or_default();
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: c.pid,
            status: c.status.into(),
            stdin: c.stdio.stdin.clone(),
            stdout: c.stdio.stdout.clone(),
            stderr: c.stdio.stderr.clone(),
            exit_status,
            exited_at: c.exit.as_ref().map(|_| exited_at).into(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let mut containers = self.lock();
        let c = containers
            .get_mut(&req.id)
            .ok_or_else(|| failed(Code::NOT_FOUND, format!("no container {}", req.id)))?;
        if c.exit.is_some() {
            return Ok(api::Empty::default());
        }
        let signal = i32::try_from(req.signal).unwrap_or(libc::SIGKILL);
        if c.monitor.is_some() {
            container::kill(c.pid, signal);
            return Ok(api::Empty::default());
        }
        // A pod sandbox has no process: any signal but 0 ends it, as it ends `pause`.
        if signal != 0 {
            let (status, at) = (128 + req.signal, now());
            c.status = Status::STOPPED;
            c.exit = Some((status, at.clone()));
            let pid = c.pid;
            drop(containers);
            self.shared.exited.notify_all();
            self.publish_exit(&req.id, pid, status, at);
        }
        Ok(api::Empty::default())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let mut containers = self.lock();
        loop {
            let c = containers
                .get(&req.id)
                .ok_or_else(|| failed(Code::NOT_FOUND, format!("no container {}", req.id)))?;
            if let Some((exit_status, at)) = &c.exit {
                return Ok(api::WaitResponse {
                    exit_status: *exit_status,
                    exited_at: Some(at.clone()).into(),
                    ..Default::default()
                });
            }
            containers = self
                .shared
                .exited
                .wait(containers)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let mut containers = self.lock();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| failed(Code::NOT_FOUND, format!("no container {}", req.id)))?;
        let Some((exit_status, exited_at)) = c.exit.clone() else {
            return Err(failed(
                Code::FAILED_PRECONDITION,
                format!("container {} is still running: kill it first", req.id),
            ));
        };
        let pid = c.pid;
        let rootfs = c.bundle.join("rootfs");
        if let Some(monitor) = containers.remove(&req.id).and_then(|c| c.monitor) {
            container::release(&monitor);
        }
        drop(containers);
        container::unmount_rootfs(&rootfs)
            .map_err(|e| failed(Code::INTERNAL, format!("mayfly: {e:#}")))?;
        Ok(api::DeleteResponse {
            pid,
            exit_status,
            exited_at: Some(exited_at).into(),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let containers = self.lock();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| failed(Code::NOT_FOUND, format!("no container {}", req.id)))?;
        let info =
            containerd_shim::protos::types::task::ProcessInfo { pid: c.pid, ..Default::default() };
        Ok(api::PidsResponse { processes: vec![info], ..Default::default() })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.lock().get(&req.id).map_or(0, |c| c.pid);
        Ok(api::ConnectResponse { shim_pid: std::process::id(), task_pid, ..Default::default() })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        let containers = self.lock();
        if containers.is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }
}
