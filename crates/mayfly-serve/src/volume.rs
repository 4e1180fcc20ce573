//! Service volumes: the `volume = { path, size_mib, read_only }` setting, where relative paths
//! live (the state directory's `volumes/`), and the one-writer gate.
//!
//! A writable volume has one writer, ever: its service runs at most one instance and no warm
//! shell ([`crate::config::ServiceSpec::validate`]), and a monitor for it is spawned only once
//! the previous monitor of the same file has exited ([`gate`]: a permit per volume file, taken
//! before the spawn and given back by the watcher after the process is reaped), across
//! redeploys and crash restarts alike. The monitor's own `flock` on the file backs this up.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// A service's volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// The volume file: absolute, or relative to the state directory's `volumes/` (the only
    /// form the admin API accepts).
    pub path: PathBuf,
    /// Size it is created at if missing, MiB.
    #[serde(default = "default_size")]
    pub size_mib: u64,
    /// Attach it read-only (then it may be shared by several instances).
    #[serde(default)]
    pub read_only: bool,
}

fn default_size() -> u64 {
    64
}

/// Largest volume a service may ask for, MiB (1 TiB).
pub const MAX_SIZE_MIB: u64 = 1 << 20;

impl VolumeConfig {
    /// What is wrong with it, if anything: `(field, reason)` for a `SpecError`.
    pub fn problem(&self) -> Option<&'static str> {
        if self.path.as_os_str().is_empty() {
            return Some("`path` is empty; name the volume file, e.g. path = \"kv.img\"");
        }
        if self.path.to_string_lossy().contains(':') {
            return Some("`path` must not contain ':'");
        }
        if !(1..=MAX_SIZE_MIB).contains(&self.size_mib) {
            return Some("`size_mib` must be from 1 to 1048576");
        }
        None
    }

    /// Whether `path` is a plain relative name inside the volume directory (no `..`, not
    /// absolute): what an admin API deploy may name.
    pub fn is_contained(&self) -> bool {
        self.path.is_relative() && self.path.components().all(|c| matches!(c, Component::Normal(_)))
    }

    /// The file, with relative paths resolved under `dir` (the state directory's `volumes/`).
    pub fn file(&self, dir: &Path) -> PathBuf {
        if self.path.is_absolute() { self.path.clone() } else { dir.join(&self.path) }
    }

    /// The monitor's `--volume` value for the file at `file`.
    pub fn monitor_spec(&self, file: &Path) -> String {
        if self.read_only {
            format!("{}:ro", file.display())
        } else {
            format!("{}:size={}M", file.display(), self.size_mib)
        }
    }
}

/// The directory relative volume paths live in: `volumes/` in the state directory, created
/// 0700.
pub fn volume_dir() -> std::io::Result<PathBuf> {
    let dir = crate::state_dir().join("volumes");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(dir)
}

/// How long an instance start waits for a volume file locked by a monitor this gateway did not
/// start (e.g. one of a gateway killed just before, not yet gone).
pub const STALE_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a start failed only because another process holds the volume (the monitor's
/// `flock`; its message says "is in use by another monitor").
pub fn held_elsewhere<T>(result: &Result<T, crate::instance::InstanceError>) -> bool {
    matches!(result, Err(crate::instance::InstanceError::Failed(why))
        if why.contains("is in use by another monitor"))
}

/// The one-writer gate of the volume file `file`: one permit, shared by every service and
/// deploy that names the file.
pub fn gate(file: &Path) -> Arc<Semaphore> {
    static GATES: Mutex<BTreeMap<PathBuf, Arc<Semaphore>>> = Mutex::new(BTreeMap::new());
    let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
    gates.entry(file.to_path_buf()).or_insert_with(|| Arc::new(Semaphore::new(1))).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_settings_are_checked_and_resolved() {
        let v = VolumeConfig { path: "kv.img".into(), size_mib: 64, read_only: false };
        assert_eq!(v.problem(), None);
        assert!(v.is_contained());
        assert_eq!(v.file(Path::new("/s/volumes")), Path::new("/s/volumes/kv.img"));
        assert_eq!(v.monitor_spec(Path::new("/s/kv.img")), "/s/kv.img:size=64M");
        let ro = VolumeConfig { read_only: true, ..v.clone() };
        assert_eq!(ro.monitor_spec(Path::new("/s/kv.img")), "/s/kv.img:ro");
        for bad in ["../x.img", "/etc/x.img", "a/../b"] {
            assert!(!VolumeConfig { path: bad.into(), ..v.clone() }.is_contained(), "{bad}");
        }
        assert!(VolumeConfig { size_mib: 0, ..v.clone() }.problem().is_some());
        assert!(VolumeConfig { path: "".into(), ..v.clone() }.problem().is_some());
        assert!(Arc::ptr_eq(&gate(Path::new("/a")), &gate(Path::new("/a"))));
    }

    #[test]
    fn the_built_in_kv_keeps_its_data_in_a_volume_with_one_writer() {
        let config = crate::config::Config::builtin(Path::new("/repo"));
        let kv = config.services.iter().find(|s| s.name == "kv").expect("kv");
        let volume = kv.volume.as_ref().expect("kv has a volume");
        assert!(!volume.read_only && volume.is_contained());
        assert_eq!((kv.max_instances, kv.warm_shells), (1, 0));
        for spec in &config.services {
            assert!(spec.validate().is_ok(), "{spec:?}");
        }
        let two = crate::config::ServiceSpec { max_instances: 2, ..kv.clone() };
        assert!(two.validate().unwrap_err().to_string().contains("one writer"));
        let shared = crate::config::ServiceSpec {
            max_instances: 2,
            volume: Some(VolumeConfig { read_only: true, ..volume.clone() }),
            ..kv.clone()
        };
        assert!(shared.validate().is_ok(), "read-only volumes may be shared");
    }
}
