//! The orchestrator: the services, the control-plane actions on them (deploy, remove, list,
//! shut down), the request path's acquire/release, and the housekeeping loop.

use crate::config::{Mode, ServiceSpec};
use crate::instance::{Exited, Launch, Shell, rss_kib};
use crate::metrics::Metrics;
use crate::service::{Action, Failure, Lease, Service};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often idle instances are looked for and shells refilled.
const HOUSEKEEPING: Duration = Duration::from_millis(50);

/// Why a request got no instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    #[error("no such service")]
    NotFound,
    #[error("the request queue is full")]
    QueueFull,
    #[error("no instance became free in time")]
    Timeout,
    #[error("the service is crash-looping ({0}); retrying in {1:?}")]
    Backoff(String, Duration),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("its instance failed to start: {0}")]
    StartFailed(String),
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Spec(#[from] crate::config::SpecError),
    #[error("service {service:?}: building {krate} failed: {message}")]
    Build { service: String, krate: PathBuf, message: String },
    #[error("service {service:?}: image {image} does not exist; build it with `mayfly build`")]
    NoImage { service: String, image: PathBuf },
    #[error(
        "service {service:?}: taking its snapshot failed: {message}; a service with \
         `snapshot = true` must wait for I/O (listen) after starting"
    )]
    Snapshot { service: String, message: String },
    #[error("service {service:?}: cannot create the volume directory: {reason}")]
    Volume { service: String, reason: String },
}

/// A service, as listed by the admin API (the type is the admin API's contract).
pub type ServiceInfo = mayfly_protocol::admin::ServiceInfo<ServiceSpec>;
/// An instance, as listed by the admin API.
pub use mayfly_protocol::admin::InstanceInfo;

/// The orchestrator, shared by the gateway, the admin API and the housekeeping task.
pub struct Orchestrator {
    services: Mutex<BTreeMap<String, Service>>,
    /// Metrics.
    pub metrics: Metrics,
    mayfly: PathBuf,
    exits: mpsc::UnboundedSender<Exited>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
}

fn instance_name(service: &str, id: u64) -> String {
    format!("{service}-{id}")
}

impl Orchestrator {
    /// Creates the orchestrator and starts its housekeeping and exit-watching tasks.
    pub fn start(mayfly: PathBuf) -> Arc<Orchestrator> {
        let (exits, mut exit_rx) = mpsc::unbounded_channel();
        let orch = Arc::new(Orchestrator {
            services: Mutex::new(BTreeMap::new()),
            metrics: Metrics::new(),
            mayfly,
            exits,
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        });
        let watcher = Arc::downgrade(&orch);
        tokio::spawn(async move {
            while let Some(exit) = exit_rx.recv().await {
                let Some(orch) = watcher.upgrade() else { break };
                orch.on_exit(exit);
            }
        });
        let keeper = Arc::downgrade(&orch);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(orch) = keeper.upgrade() else { break };
                orch.housekeeping();
            }
        });
        orch
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Service>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates `spec`, builds its image if it names a crate (progress on stderr), and puts it
    /// in service, replacing (and draining) a previous version.
    pub async fn deploy(self: &Arc<Self>, spec: ServiceSpec) -> Result<(), DeployError> {
        spec.validate()?;
        let image = match (&spec.image, &spec.guest_crate) {
            (Some(image), _) => {
                if !image.is_file() {
                    return Err(DeployError::NoImage { service: spec.name, image: image.clone() });
                }
                image.clone()
            }
            (None, Some(krate)) => self.build(&spec.name, krate).await?,
            (None, None) => unreachable_spec(&spec)?,
        };
        // A new snapshot at every deploy: a new image (or new arguments) is a new deploy.
        let from_snapshot =
            if spec.snapshot { Some(self.snapshot(&spec, &image).await?) } else { None };
        let volume = match &spec.volume {
            Some(volume) => {
                let dir = crate::volume::volume_dir().map_err(|e| DeployError::Volume {
                    service: spec.name.clone(),
                    reason: e.to_string(),
                })?;
                let file = volume.file(&dir);
                Some((volume.monitor_spec(&file), crate::volume::gate(&file)))
            }
            None => None,
        };
        let launch = Launch {
            volume,
            from_snapshot,
            mayfly: self.mayfly.clone(),
            image: image.clone(),
            mem_mib: spec.mem_mib,
            guest_port: spec.guest_port,
            args: spec.args.clone(),
            env: spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            tap: spec.tap.clone(),
            allow_host_ports: spec.allow_host_ports.clone(),
            cpu_limit_s: spec.cpu_limit_s,
            console_limit_kib: spec.console_limit_kib,
            console_rate: spec.console_rate,
            max_connections: spec.max_connections,
        };
        let mut services = self.lock();
        let logs = services.get(&spec.name).map(|s| s.logs().clone()).unwrap_or_default();
        let mut fresh = Service::new(spec.clone(), launch, logs);
        fresh.home(Arc::downgrade(self));
        if let Some(old) = services.remove(&spec.name) {
            // In-flight requests finish on the old instances; new ones go to the new version.
            fresh.take_over(old);
        }
        tracing::info!(service = %spec.name, image = %image.display(), "deployed");
        services.insert(spec.name.clone(), fresh);
        drop(services);
        self.housekeeping();
        Ok(())
    }

    async fn build(&self, service: &str, krate: &Path) -> Result<PathBuf, DeployError> {
        tracing::info!(service, krate = %krate.display(), "building");
        eprintln!("mayfly serve: building {service} from {} ...", krate.display());
        let out = tokio::process::Command::new(&self.mayfly)
            .arg("build")
            .arg(krate)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .map_err(|e| DeployError::Build {
                service: service.into(),
                krate: krate.into(),
                message: e.to_string(),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().last().map(PathBuf::from) {
            Some(path) if out.status.success() && path.is_file() => Ok(path),
            _ => Err(DeployError::Build {
                service: service.into(),
                krate: krate.into(),
                message: "see the compiler's errors above".into(),
            }),
        }
    }

    /// Boots `image` as `spec` says up to its first wait for I/O and snapshots it there, in the
    /// gateway's private directory (removed at shutdown), for the service's instances to be
    /// cloned from.
    async fn snapshot(&self, spec: &ServiceSpec, image: &Path) -> Result<PathBuf, DeployError> {
        let fail = |message: String| DeployError::Snapshot { service: spec.name.clone(), message };
        let dir = crate::sockets::socket_dir().map_err(|e| fail(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{id}.snap", spec.name));
        let mut cmd = tokio::process::Command::new(&self.mayfly);
        cmd.arg("run").arg(image).args(["--timeout", "30", "--mem"]);
        cmd.arg(spec.mem_mib.to_string()).arg("--snapshot-out").arg(&path);
        for (key, value) in &spec.env {
            cmd.arg("--env").arg(format!("{key}={value}"));
        }
        cmd.arg("--").args(&spec.args);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let out = cmd.output().await.map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(fail(stderr.lines().last().unwrap_or("no message").to_owned()));
        }
        tracing::info!(service = %spec.name, snapshot = %path.display(), "snapshot taken");
        Ok(path)
    }

    /// Takes `name` out of service: no new requests, its instances finish theirs and go.
    pub fn remove(&self, name: &str) -> bool {
        let mut services = self.lock();
        let Some(service) = services.get_mut(name) else { return false };
        service.remove();
        tracing::info!(service = name, "removed");
        true
    }

    /// The service a request goes to: longest matching path prefix, optionally by host.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<String> {
        let services = self.lock();
        let mut best: Option<(usize, &Service)> = None;
        for service in services.values().filter(|s| !s.is_removed()) {
            let spec = service.spec();
            let host_ok = match (&spec.host, host) {
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
                (None, _) => true,
            };
            let prefix_len = match &spec.path_prefix {
                Some(prefix) => {
                    let matches = path == prefix
                        || path.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                            prefix.ends_with('/') || rest.starts_with('/') || rest.starts_with('?')
                        });
                    if !matches {
                        continue;
                    }
                    prefix.len()
                }
                None => 0,
            };
            let score = prefix_len + if spec.host.is_some() { 10_000 } else { 0 };
            if host_ok && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, service));
            }
        }
        best.map(|(_, s)| s.spec().name.clone())
    }

    /// Waits for an instance of `service` with room for one more request.
    pub async fn acquire(self: &Arc<Self>, service: &str) -> Result<Lease, AcquireError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(AcquireError::ShuttingDown);
        }
        let now = Instant::now();
        let (rx, timeout) = {
            let mut services = self.lock();
            let svc = services
                .get_mut(service)
                .filter(|s| !s.is_removed())
                .ok_or(AcquireError::NotFound)?;
            if let Some(lease) = svc.try_lease() {
                return Ok(lease);
            }
            if let Some(left) = svc.backoff_left(now)
                && !svc.serving()
            {
                let why = svc.last_crash().unwrap_or_default().to_owned();
                return Err(AcquireError::Backoff(why, left));
            }
            let (tx, rx) = oneshot::channel();
            let Some(timeout) = svc.enqueue(tx, now) else {
                return Err(AcquireError::QueueFull);
            };
            let mut actions = Vec::new();
            svc.scale_up(now, &mut actions);
            drop(services);
            self.run_actions(service, actions);
            (rx, timeout)
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(_)) if self.shutting_down.load(Ordering::Acquire) => {
                Err(AcquireError::ShuttingDown)
            }
            // Our waiter was dropped: the instance started for it failed to start.
            Ok(Err(_)) => {
                let services = self.lock();
                let why = services.get(service).and_then(|s| s.last_crash().map(str::to_owned));
                Err(AcquireError::StartFailed(why.unwrap_or_default()))
            }
            _ => {
                let services = self.lock();
                match services
                    .get(service)
                    .and_then(|s| s.backoff_left(Instant::now()).map(|l| (s, l)))
                {
                    Some((s, left)) => {
                        let why = s.last_crash().unwrap_or_default().to_owned();
                        Err(AcquireError::Backoff(why, left))
                    }
                    None => Err(AcquireError::Timeout),
                }
            }
        }
    }

    /// Takes back a lease being dropped (see [`Lease`]): the request ended, answered or not,
    /// or its client went away. `failure` says why the instance failed it, if it did: then it
    /// takes no more requests (if its process died, the exit watcher records the crash; if not,
    /// it is destroyed shortly).
    pub(crate) fn give_back(&self, lease: &Lease, failure: Option<Failure>) {
        let now = Instant::now();
        let mut services = self.lock();
        let Some(svc) = services.get_mut(&lease.service) else { return };
        match failure {
            Some(Failure::Crashed) => svc.crash_seen(lease.id, now),
            Some(Failure::Unhealthy(why)) => {
                tracing::warn!(service = %lease.service, instance = lease.id, "instance failed: {why}");
                self.metrics.instance_failed(&lease.service, why);
                svc.fail(lease.id, now);
            }
            None => {}
        }
        svc.release(lease, now);
    }

    fn run_actions(self: &Arc<Self>, service: &str, actions: Vec<Action>) {
        for action in actions {
            let orch = self.clone();
            let service = service.to_owned();
            tokio::spawn(async move {
                match action {
                    Action::Go(shell) => orch.go(&service, shell).await,
                    Action::Prepare { start } => orch.prepare(&service, start).await,
                }
            });
        }
    }

    async fn go(self: &Arc<Self>, service: &str, shell: Shell) {
        let running = shell.go().await;
        self.metrics.boot();
        {
            let mut services = self.lock();
            if let Some(svc) = services.get_mut(service) {
                svc.started(running, Instant::now());
            }
        }
        self.housekeeping();
    }

    async fn prepare(self: &Arc<Self>, service: &str, start: bool) {
        let (launch, logs) = {
            let services = self.lock();
            let Some(svc) = services.get(service) else { return };
            (svc.launch().clone(), svc.logs().clone())
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stale_until = Instant::now() + crate::volume::STALE_HOLDER_WAIT;
        let result = loop {
            let logs = logs.clone();
            let result =
                Shell::prepare(id, instance_name(service, id), &launch, logs, self.exits.clone())
                    .await;
            // A volume still locked by a monitor this gateway never started (one of a gateway
            // killed just before): wait for it to go rather than fail the request.
            if crate::volume::held_elsewhere(&result) && Instant::now() < stale_until {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            break result;
        };
        let to_start = {
            let mut services = self.lock();
            let Some(svc) = services.get_mut(service) else { return };
            match result {
                Ok(shell) => {
                    if start {
                        self.metrics.cold_phase(service, "spawn", shell.prepare_time.as_secs_f64());
                    }
                    svc.prepared(shell, start)
                }
                Err(e) => {
                    tracing::error!(service, "instance failed to start: {e}");
                    svc.logs().push(&instance_name(service, id), &format!("failed to start: {e}"));
                    svc.prepare_failed(start, &e.to_string(), Instant::now());
                    self.metrics.crash(service);
                    None
                }
            }
        };
        if let Some(shell) = to_start {
            self.go(service, shell).await;
        }
    }

    fn on_exit(&self, exit: Exited) {
        let mut services = self.lock();
        // The instance may already be gone from the service (taken out after failing a
        // request); its exit still counts as a crash unless we killed it.
        let Some(svc) = services.get_mut(&exit.service) else { return };
        if svc.exited(exit.id, exit.killed, &exit.last_words, Instant::now()) {
            tracing::warn!(service = %exit.service, instance = exit.id, code = ?exit.code,
                "instance stopped on its own: {}", exit.last_words);
            self.metrics.crash(&exit.service);
        }
    }

    /// Idle instances out, shells refilled, scale-out retried, gone services dropped.
    fn housekeeping(self: &Arc<Self>) {
        let now = Instant::now();
        let mut todo = Vec::new();
        let mut services = self.lock();
        for (name, svc) in services.iter_mut() {
            svc.reap(now);
            let mut actions = Vec::new();
            if !self.shutting_down.load(Ordering::Acquire) {
                svc.scale_up(now, &mut actions);
                svc.refill_shells(now, &mut actions);
                svc.dispatch(now);
            }
            for (state, count) in svc.counts() {
                self.metrics.set_instances(name, state, count);
            }
            if !actions.is_empty() {
                todo.push((name.clone(), actions));
            }
        }
        services.retain(|_, s| !s.is_gone());
        drop(services);
        for (name, actions) in todo {
            self.run_actions(&name, actions);
        }
    }

    /// The services.
    pub fn services(&self) -> Vec<ServiceInfo> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|s| !s.is_removed())
            .map(|s| ServiceInfo {
                spec: s.spec().clone(),
                image: s.launch().image.clone(),
                instances: s.counts().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                queued: s.queued(),
                cold_starts: s.cold_starts(),
                backoff_seconds: s.backoff_left(now).map_or(0.0, |d| d.as_secs_f64()),
                last_crash: s.last_crash().map(str::to_owned),
            })
            .collect()
    }

    /// Every instance and shell.
    pub fn instances(&self) -> Vec<InstanceInfo> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (name, svc) in self.lock().iter() {
            for i in svc.instances() {
                out.push(InstanceInfo {
                    service: name.clone(),
                    name: instance_name(name, i.run.id),
                    state: i.state.name().into(),
                    age_seconds: now.duration_since(i.started).as_secs_f64(),
                    requests: i.served,
                    in_flight: i.in_flight,
                    memory_kib: i.run.pid.and_then(rss_kib),
                    addr: i.run.addr.to_string(),
                });
            }
            for s in svc.shells() {
                out.push(InstanceInfo {
                    service: name.clone(),
                    name: instance_name(name, s.id),
                    state: "standby".into(),
                    age_seconds: now.duration_since(s.spawned).as_secs_f64(),
                    requests: 0,
                    in_flight: 0,
                    memory_kib: s.pid.and_then(rss_kib),
                    addr: s.addr.to_string(),
                });
            }
        }
        out
    }

    /// The last `lines` log lines of `service`.
    pub fn logs(&self, service: &str, lines: usize) -> Option<Vec<String>> {
        self.lock().get(service).map(|s| s.logs().tail(lines))
    }

    /// Whether `service`'s mode is per-request.
    pub fn is_per_request(&self, service: &str) -> bool {
        self.lock().get(service).is_some_and(|s| s.spec().mode == Mode::PerRequest)
    }

    /// Stops taking requests, waits (up to `grace`) for those in flight, then destroys every
    /// instance and shell and waits for their processes to exit.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        for svc in self.lock().values_mut() {
            svc.clear_waiters();
        }
        let deadline = Instant::now() + grace;
        loop {
            let busy: u32 = self.lock().values().map(Service::in_flight).sum();
            if busy == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pids: Vec<u32> = {
            let mut services = self.lock();
            let pids = services.values().flat_map(Service::pids).collect();
            for svc in services.values_mut() {
                svc.destroy_all();
            }
            pids
        };
        // Wait for the processes to be gone (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|pid| Path::new(&format!("/proc/{pid}")).exists())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn unreachable_spec(spec: &ServiceSpec) -> Result<PathBuf, DeployError> {
    Err(DeployError::Spec(crate::config::SpecError {
        service: spec.name.clone(),
        field: "image",
        reason: "is missing: give `image` or `crate`".into(),
    }))
}
