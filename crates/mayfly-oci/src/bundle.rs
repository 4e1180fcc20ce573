//! Reading what to run from a container bundle (`config.json` and the mounted root file system).

use crate::{SETTINGS_PATH, Settings, UNIKERNEL_PATH};
use anyhow::{Context, Result, bail};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// What the runtime runs for one container: `mayfly run IMAGE --mem MEMORY -e ENV -- ARGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The unikernel in the container's root file system.
    pub unikernel: PathBuf,
    /// Guest memory in MiB: the container's memory limit if it has one, else the image's.
    pub memory_mib: u64,
    /// The guest's TCP port, if it serves one.
    pub guest_port: Option<u16>,
    /// Arguments after the program name (the process's arguments after the entrypoint).
    pub args: Vec<String>,
    /// Environment entries of the process.
    pub env: Vec<(String, String)>,
    /// The network namespace the spec names (a pod's, under CRI), if any: the guest's NIC is
    /// attached to that namespace's `eth0`.
    pub netns: Option<PathBuf>,
    /// Whether the unikernel has a NIC to attach (images that do not say: assumed so).
    pub network: bool,
}

/// The annotation CRI puts on a pod's sandbox ("pause") container: `sandbox` or `container`.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// Whether the bundle is a pod's sandbox container, which needs no VM: it only holds the pod.
pub fn is_pod_sandbox(bundle: &Path) -> Result<bool> {
    let spec_path = bundle.join("config.json");
    let spec = Spec::load(&spec_path)
        .with_context(|| format!("cannot read the runtime spec {}", spec_path.display()))?;
    let kind = spec.annotations().as_ref().and_then(|a| a.get(CRI_CONTAINER_TYPE).cloned());
    Ok(kind.as_deref() == Some("sandbox"))
}

/// The network namespace `bundle/config.json` joins, if it names one by path (CRI's pod
/// namespace, pinned under /var/run/netns).
pub fn bundle_network_namespace(bundle: &Path) -> Result<Option<PathBuf>> {
    let spec_path = bundle.join("config.json");
    let spec = Spec::load(&spec_path)
        .with_context(|| format!("cannot read the runtime spec {}", spec_path.display()))?;
    Ok(network_namespace(&spec))
}

/// Reads `bundle/config.json` and the settings file in its (already mounted) root file system.
pub fn read_bundle(bundle: &Path) -> Result<Launch> {
    let spec_path = bundle.join("config.json");
    let spec = Spec::load(&spec_path)
        .with_context(|| format!("cannot read the runtime spec {}", spec_path.display()))?;
    let root = spec.root().as_ref().map_or_else(|| PathBuf::from("rootfs"), |r| r.path().clone());
    let root = if root.is_absolute() { root } else { bundle.join(root) };
    let process = spec.process().as_ref().context("the runtime spec has no process")?;
    let argv = process.args().clone().unwrap_or_default();
    match argv.first() {
        Some(first) if first == UNIKERNEL_PATH => {}
        other => bail!(
            "not a Mayfly image: the container runs {:?}, not {UNIKERNEL_PATH} (make the image \
             with `mayfly image`, or run it with another runtime)",
            other.map_or("nothing", String::as_str)
        ),
    }
    let settings_path = root.join(SETTINGS_PATH.trim_start_matches('/'));
    let text = std::fs::read_to_string(&settings_path).with_context(|| {
        format!("not a Mayfly image: cannot read {SETTINGS_PATH} in its root file system")
    })?;
    let settings: Settings = serde_json::from_str(&text)
        .with_context(|| format!("{SETTINGS_PATH} in the image is not valid"))?;
    let env = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            (!key.is_empty()).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect();
    Ok(Launch {
        unikernel: root.join(UNIKERNEL_PATH.trim_start_matches('/')),
        memory_mib: memory_limit_mib(&spec).unwrap_or(settings.memory_mib),
        guest_port: settings.guest_port,
        args: argv.into_iter().skip(1).collect(),
        env,
        netns: network_namespace(&spec),
        network: settings.network.unwrap_or(true),
    })
}

/// The path of the network namespace the spec joins (`linux.namespaces`, type `network`).
fn network_namespace(spec: &Spec) -> Option<PathBuf> {
    use oci_spec::runtime::LinuxNamespaceType;
    let namespaces = spec.linux().as_ref()?.namespaces().as_ref()?;
    namespaces
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::Network)
        .and_then(|ns| ns.path().clone())
        .filter(|path| !path.as_os_str().is_empty())
}

/// The container's memory limit, in MiB rounded up to the next multiple of 2, if it has one.
fn memory_limit_mib(spec: &Spec) -> Option<u64> {
    let limit = spec.linux().as_ref()?.resources().as_ref()?.memory().as_ref()?.limit()?;
    let bytes = u64::try_from(limit).ok().filter(|b| *b > 0)?;
    let mib = bytes.div_ceil(1 << 20);
    Some(mib.div_ceil(2).saturating_mul(2).clamp(4, 4096))
}
