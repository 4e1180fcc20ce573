//! Configuration: the gateway's addresses and the services, from TOML or the admin API's JSON.
//!
//! Every field has a sane default, unknown fields are refused, and [`ServiceSpec::validate`]
//! names the field and the reason for anything it refuses.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// How a service's instances serve requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Instances live on and serve many requests (up to `concurrency` at once each).
    #[default]
    Shared,
    /// A fresh unikernel for every request, destroyed after its response.
    PerRequest,
}

/// Tap networking for a service's instance (instead of user-mode networking through the
/// monitor). The tap must exist with its host side configured (`ip tuntap add dev NAME mode tap
/// user USER; ip addr add 10.0.0.1/24 dev NAME; ip link set NAME up`); a tap carries one
/// instance, so such a service has `max_instances = 1` and no warm shells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapSpec {
    /// The tap device.
    pub name: String,
    /// The guest's address and prefix, e.g. `10.0.0.2/24`; the gateway connects to it.
    pub ip: String,
    /// The guest's default gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::Ipv4Addr>,
}

impl TapSpec {
    /// The guest's address and prefix length, if `ip` is well formed.
    pub fn address(&self) -> Option<(std::net::Ipv4Addr, u8)> {
        let (addr, prefix) = self.ip.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
        Some((addr.parse().ok()?, prefix))
    }
}

/// One service: what to boot, how to route to it, how to scale it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name (letters, digits, `-`, `_`).
    pub name: String,
    /// A unikernel image built by `mayfly build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PathBuf>,
    /// Or a guest crate to build into one.
    #[serde(default, rename = "crate", skip_serializing_if = "Option::is_none")]
    pub guest_crate: Option<PathBuf>,
    /// Route requests whose Host header is this (without port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Route requests whose path starts with this (at a `/` boundary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Guest memory, MiB.
    #[serde(default = "default_mem")]
    pub mem_mib: u64,
    /// The port the guest listens on.
    #[serde(default = "default_port")]
    pub guest_port: u16,
    /// Guest arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Guest environment.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Instances kept running even when idle (0: scale to zero).
    #[serde(default)]
    pub min_instances: u32,
    /// Most instances at once.
    #[serde(default = "default_max")]
    pub max_instances: u32,
    /// Most requests in flight per instance (shared mode).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// An instance idle this long is destroyed (above `min_instances`), ms.
    #[serde(default = "default_idle")]
    pub idle_timeout_ms: u64,
    /// An instance is retired after this long whatever it does, ms (0: no limit).
    #[serde(default)]
    pub max_lifetime_ms: u64,
    /// Shared or per-request.
    #[serde(default)]
    pub mode: Mode,
    /// VM shells kept prepared ahead of demand (process started, VM created, ports bound).
    #[serde(default = "default_warm")]
    pub warm_shells: u32,
    /// Requests waiting for an instance, at most; more get 503.
    #[serde(default = "default_queue")]
    pub queue_limit: u32,
    /// How long a request may wait for an instance before it gets 503, ms.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_ms: u64,
    /// Attach the instance to a tap device instead of user-mode networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<TapSpec>,
    /// Ports on the host's 127.0.0.1 an instance may connect out to, at 10.0.2.2 in the guest
    /// (`mayfly run --allow-host-port`): a database on the host, say. User-mode networking only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_host_ports: Vec<u16>,
    /// CPU time an instance may use, seconds (0: no limit).
    #[serde(default)]
    pub cpu_limit_s: u64,
    /// Console output an instance may write, KiB (0: no limit).
    #[serde(default)]
    pub console_limit_kib: u64,
    /// Console output shown per second per instance, bytes; the excess is dropped (and said
    /// so). Default [`DEFAULT_CONSOLE_RATE`]; 0: no limit.
    #[serde(default = "default_console_rate")]
    pub console_rate: u64,
    /// Connections carried to an instance at once (0: the monitor's default, 1024).
    #[serde(default)]
    pub max_connections: u64,
    /// Start instances as clones of a snapshot taken at deploy (the guest's first wait for
    /// I/O) instead of booting each: see docs/design.md, "Snapshots and clones".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
    /// A volume for the instances (see `crate::volume`); a writable one allows one instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<crate::volume::VolumeConfig>,
}

fn default_mem() -> u64 {
    32
}
fn default_port() -> u16 {
    80
}
fn default_max() -> u32 {
    4
}
fn default_concurrency() -> u32 {
    64
}
fn default_idle() -> u64 {
    5000
}
fn default_warm() -> u32 {
    1
}
/// The console rate an instance gets unless its service says otherwise, bytes per second: a
/// guest that prints without pause cannot make the gateway log more than this.
pub const DEFAULT_CONSOLE_RATE: u64 = 64 * 1024;

fn default_console_rate() -> u64 {
    DEFAULT_CONSOLE_RATE
}
fn default_queue() -> u32 {
    1000
}
fn default_queue_timeout() -> u64 {
    10_000
}

/// The most instances one service may have.
pub const MAX_INSTANCES: u32 = 4096;
/// The most shells one service may keep prepared.
pub const MAX_WARM_SHELLS: u32 = 64;

/// A field of a service spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service:?}: `{field}` {reason}")]
pub struct SpecError {
    /// The service.
    pub service: String,
    /// The field.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl ServiceSpec {
    /// A spec with defaults for everything but the name and the image.
    pub fn new(name: &str, guest_crate: PathBuf, path_prefix: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: None,
            guest_crate: Some(guest_crate),
            host: None,
            path_prefix: Some(path_prefix.into()),
            mem_mib: default_mem(),
            guest_port: default_port(),
            args: Vec::new(),
            env: Default::default(),
            min_instances: 0,
            max_instances: default_max(),
            concurrency: default_concurrency(),
            idle_timeout_ms: default_idle(),
            max_lifetime_ms: 0,
            mode: Mode::Shared,
            warm_shells: default_warm(),
            queue_limit: default_queue(),
            queue_timeout_ms: default_queue_timeout(),
            tap: None,
            allow_host_ports: Vec::new(),
            cpu_limit_s: 0,
            console_limit_kib: 0,
            console_rate: default_console_rate(),
            max_connections: 0,
            snapshot: false,
            volume: None,
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        let fail = |field, reason: &str| {
            Err(SpecError { service: self.name.clone(), field, reason: reason.into() })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return fail("name", "must be 1-63 letters, digits, '-' or '_'");
        }
        match (&self.image, &self.guest_crate) {
            (Some(_), Some(_)) => return fail("image", "and `crate` are both set; give one"),
            (None, None) => return fail("image", "is missing: give `image` or `crate`"),
            _ => {}
        }
        if self.host.is_none() && self.path_prefix.is_none() {
            return fail("path_prefix", "is missing: give `path_prefix` and/or `host` to route");
        }
        if let Some(prefix) = &self.path_prefix
            && !prefix.starts_with('/')
        {
            return fail("path_prefix", "must start with '/'");
        }
        if !(4..=4096).contains(&self.mem_mib) || !self.mem_mib.is_multiple_of(2) {
            return fail("mem_mib", "must be an even number from 4 to 4096");
        }
        if self.guest_port == 0 {
            return fail("guest_port", "must not be 0");
        }
        if !(1..=MAX_INSTANCES).contains(&self.max_instances) {
            return fail("max_instances", &format!("must be from 1 to {MAX_INSTANCES}"));
        }
        if self.warm_shells > MAX_WARM_SHELLS {
            return fail("warm_shells", &format!("must be at most {MAX_WARM_SHELLS}"));
        }
        if self.min_instances > self.max_instances {
            return fail("min_instances", "must not exceed max_instances");
        }
        if self.concurrency == 0 {
            return fail("concurrency", "must be at least 1");
        }
        if self.queue_timeout_ms == 0 {
            return fail("queue_timeout_ms", "must be at least 1");
        }
        if self.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return fail("env", "names must be non-empty and contain no '='");
        }
        if self.allow_host_ports.contains(&0) {
            return fail("allow_host_ports", "must not contain port 0: name the host's ports");
        }
        if !self.allow_host_ports.is_empty() && self.tap.is_some() {
            return fail(
                "allow_host_ports",
                "is for user-mode networking: with `tap`, route to the host over the tap instead",
            );
        }
        if self.snapshot && !self.allow_host_ports.is_empty() {
            return fail(
                "snapshot",
                "clones would resume the snapshot's connections to the host: remove `snapshot` \
                 or `allow_host_ports`",
            );
        }
        if self.snapshot && self.tap.is_some() {
            return fail("snapshot", "clones use user-mode networking only: remove `tap`");
        }
        if let Some(volume) = &self.volume {
            if let Some(problem) = volume.problem() {
                return fail("volume", problem);
            }
            if self.snapshot {
                return fail(
                    "volume",
                    "cannot be combined with snapshot = true (a clone's store would be stale)",
                );
            }
            if !volume.read_only && (self.max_instances != 1 || self.warm_shells != 0) {
                return fail(
                    "volume",
                    "is writable, so it has one writer: set max_instances = 1 and warm_shells = 0 \
                     (or read_only = true to share it)",
                );
            }
        }
        if let Some(tap) = &self.tap {
            if tap.name.is_empty() || tap.name.len() > 15 {
                return fail("tap", "`name` must be 1-15 characters");
            }
            if tap.address().is_none() {
                return fail("tap", "`ip` must be an IPv4 address with a prefix, e.g. 10.0.0.2/24");
            }
            if self.max_instances != 1 || self.warm_shells != 0 {
                return fail(
                    "tap",
                    "carries one instance: set max_instances = 1 and warm_shells = 0",
                );
            }
        }
        Ok(())
    }
}

/// The gateway's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where requests are served.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the admin API listens (keep it on loopback unless you mean it).
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    /// The admin API's bearer token; generated at start (and written to the state
    /// directory) if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Allow the admin API on a non-loopback address.
    #[serde(default)]
    pub admin_public: bool,
    /// Directories under which a `crate` deployed through the admin API may lie (it is built,
    /// i.e. its build scripts run, on this host). Default: none, so API deploys take images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_roots: Vec<PathBuf>,
    /// Directories under which an `image` deployed through the admin API may lie, besides the
    /// directories of this file's own images. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_roots: Vec<PathBuf>,
    /// Host ports a service deployed through the admin API may name in `allow_host_ports`
    /// (services in this file may name any): a host-port grant reaches a host service, such
    /// as a database, so an admin token grants none unless listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_host_ports: Vec<u16>,
    /// Guest memory all services may reserve together, MiB: the sum over services of
    /// `mem_mib * (max_instances + warm_shells)`.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_mib: u64,
    /// A client must send a whole request head within this, ms.
    #[serde(default = "default_head_timeout")]
    pub head_timeout_ms: u64,
    /// A client sending a request body must send some of it at least this often, ms.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    /// An idle keep-alive connection (nothing received or sent) is closed after this, ms.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_timeout_ms: u64,
    /// Client connections open at once, at most; more are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// The largest request body, bytes (the guest library's own limit is 1 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Request bodies buffered by the gateway at once, all requests together, bytes; a request
    /// whose body does not fit gets 503.
    #[serde(default = "default_body_budget")]
    pub body_budget_bytes: u64,
    /// The largest response an instance may send, bytes; past it the client gets 502.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: u64,
    /// An instance must send its response head within this after the request, ms.
    #[serde(default = "default_upstream_head_timeout")]
    pub upstream_head_timeout_ms: u64,
    /// An instance sending a response body must send some of it at least this often, ms.
    #[serde(default = "default_upstream_body_timeout")]
    pub upstream_body_timeout_ms: u64,
}

fn default_head_timeout() -> u64 {
    10_000
}
fn default_body_timeout() -> u64 {
    10_000
}
fn default_keep_alive() -> u64 {
    60_000
}
fn default_max_connections() -> u32 {
    4096
}
fn default_max_body() -> u64 {
    1 << 20
}
fn default_body_budget() -> u64 {
    256 << 20
}
fn default_max_response() -> u64 {
    64 << 20
}
fn default_upstream_head_timeout() -> u64 {
    60_000
}
fn default_upstream_body_timeout() -> u64 {
    10_000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_memory_budget() -> u64 {
    64 * 1024
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            listen: default_listen(),
            admin_listen: default_admin(),
            admin_token: None,
            admin_public: false,
            build_roots: Vec::new(),
            image_roots: Vec::new(),
            api_host_ports: Vec::new(),
            memory_budget_mib: default_memory_budget(),
            head_timeout_ms: default_head_timeout(),
            body_timeout_ms: default_body_timeout(),
            keep_alive_timeout_ms: default_keep_alive(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body(),
            body_budget_bytes: default_body_budget(),
            max_response_bytes: default_max_response(),
            upstream_head_timeout_ms: default_upstream_head_timeout(),
            upstream_body_timeout_ms: default_upstream_body_timeout(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Gateway settings.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Services, as `[[service]]` tables.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceSpec>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {cause}")]
    Spec { path: PathBuf, cause: SpecError },
    #[error("{path}: two services are named {name:?}")]
    Duplicate { path: PathBuf, name: String },
    #[error("{path}: [gateway] `{field}` {reason}")]
    Gateway { path: PathBuf, field: &'static str, reason: &'static str },
    #[error(
        "{path}: the admin API would listen on {addr}, which is not a loopback address; set \
         `admin_public = true` in [gateway] if you mean it"
    )]
    PublicAdmin { path: PathBuf, addr: SocketAddr },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), cause: source })?;
        Config::parse(&text, path)
    }

    /// Parses and validates TOML `text` (`path` is for messages).
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().replace('\n', " ").trim().to_owned(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks every service and the gateway settings.
    pub fn validate(&self, path: &std::path::Path) -> Result<(), ConfigError> {
        for (i, spec) in self.services.iter().enumerate() {
            spec.validate()
                .map_err(|source| ConfigError::Spec { path: path.into(), cause: source })?;
            if self.services.iter().skip(i + 1).any(|other| other.name == spec.name) {
                return Err(ConfigError::Duplicate { path: path.into(), name: spec.name.clone() });
            }
        }
        let g = &self.gateway;
        let fail = |field, reason| Err(ConfigError::Gateway { path: path.into(), field, reason });
        let timeouts = [
            ("head_timeout_ms", g.head_timeout_ms),
            ("body_timeout_ms", g.body_timeout_ms),
            ("keep_alive_timeout_ms", g.keep_alive_timeout_ms),
            ("upstream_head_timeout_ms", g.upstream_head_timeout_ms),
            ("upstream_body_timeout_ms", g.upstream_body_timeout_ms),
        ];
        for (field, ms) in timeouts {
            if ms == 0 {
                return fail(field, "must be at least 1 (ms)");
            }
        }
        if g.max_connections == 0 {
            return fail("max_connections", "must be at least 1");
        }
        if g.max_body_bytes > u64::from(u32::MAX) || g.body_budget_bytes > u64::from(u32::MAX) {
            return fail("max_body_bytes", "and `body_budget_bytes` must be below 4 GiB");
        }
        if g.max_body_bytes > g.body_budget_bytes {
            return fail("max_body_bytes", "must not exceed `body_budget_bytes`");
        }
        if g.max_response_bytes == 0 {
            return fail("max_response_bytes", "must be at least 1");
        }
        if !self.gateway.admin_listen.ip().is_loopback() && !self.gateway.admin_public {
            return Err(ConfigError::PublicAdmin {
                path: path.into(),
                addr: self.gateway.admin_listen,
            });
        }
        Ok(())
    }

    /// The built-in configuration: http-hello on `/hello`, kv on `/kv` and the std program
    /// axum-hello on `/axum`, all scaling to zero after 3 s idle, built from the examples under
    /// `repo`; kv keeps its data in the volume `kv.img` of the state directory's `volumes/`.
    pub fn builtin(repo: &std::path::Path) -> Config {
        let mut hello = ServiceSpec::new("http-hello", repo.join("examples/http-hello"), "/hello");
        hello.idle_timeout_ms = 3000;
        let mut kv = ServiceSpec::new("kv", repo.join("examples/kv"), "/kv");
        kv.idle_timeout_ms = 3000;
        kv.max_instances = 1; // one writer of its volume
        kv.warm_shells = 0;
        kv.volume = Some(crate::volume::VolumeConfig {
            path: "kv.img".into(),
            size_mib: 64,
            read_only: false,
        });
        // The gateway forwards the whole path: axum-hello serves its routes under the prefix.
        let mut axum = ServiceSpec::new("axum", repo.join("examples/axum-hello"), "/axum");
        axum.idle_timeout_ms = 3000;
        axum.args = vec!["prefix=/axum".into()];
        Config { gateway: GatewayConfig::default(), services: vec![hello, kv, axum] }
    }
}

#[cfg(test)]
mod tests;
