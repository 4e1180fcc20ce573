//! The admin API's JSON types, served by the gateway (`mayfly serve`) and read by its clients
//! (`mayfly ps`, `deploy`, `rm`, `logs`), and where the gateway keeps its token.
//!
//! | method and path | request body | response body |
//! |---|---|---|
//! | `GET /services` | | `[ServiceInfo]` |
//! | `PUT /services/<name>` | a service spec (JSON, as a `[[service]]` table) | `{"deployed": name}` |
//! | `DELETE /services/<name>` | | `{"removed": name}` |
//! | `GET /instances` | | `[InstanceInfo]` |
//! | `GET /services/<name>/logs?lines=N` | | `[String]` |
//! | any error | | [`ErrorBody`] |

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A service, as `GET /services` lists it. `Spec` is the full service spec on the gateway's
/// side; a client that needs only its name and mode reads it as [`SpecSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo<Spec = SpecSummary> {
    /// The spec.
    pub spec: Spec,
    /// The image in use.
    pub image: PathBuf,
    /// Instances by state (`starting`, `standby`, `ready`, `draining`).
    pub instances: BTreeMap<String, usize>,
    /// Requests waiting.
    pub queued: usize,
    /// Cold starts so far.
    pub cold_starts: u64,
    /// Seconds of crash-loop back-off left.
    pub backoff_seconds: f64,
    /// The last crash's diagnosis.
    pub last_crash: Option<String>,
}

/// The part of a service spec that clients show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecSummary {
    /// The service's name.
    pub name: String,
    /// `shared` or `per-request`.
    pub mode: String,
}

/// An instance, as `GET /instances` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The service.
    pub service: String,
    /// Instance name (`<service>-<n>`).
    pub name: String,
    /// ready, draining or standby.
    pub state: String,
    /// Seconds since it started (or was prepared).
    pub age_seconds: f64,
    /// Requests answered.
    pub requests: u64,
    /// Requests in flight.
    pub in_flight: u32,
    /// Resident memory of its monitor process, KiB.
    pub memory_kib: Option<u64>,
    /// Its published address.
    pub addr: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong, in one line.
    pub error: String,
}

/// Where `mayfly serve` keeps its state (the admin token): `$MAYFLY_STATE_DIR`, else
/// `$HOME/.mayfly`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("MAYFLY_STATE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".mayfly")
        }
    }
}

/// The admin token's file in the state directory.
pub fn token_path() -> PathBuf {
    state_dir().join("admin-token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spec_reads_as_a_summary() {
        let info = ServiceInfo {
            spec: serde_json::json!({"name": "kv", "mode": "per-request", "mem_mib": 32}),
            image: "/k.img".into(),
            instances: BTreeMap::from([("ready".to_owned(), 2)]),
            queued: 1,
            cold_starts: 3,
            backoff_seconds: 0.5,
            last_crash: Some("guest panicked".into()),
        };
        let text = serde_json::to_string(&info).unwrap();
        let read: ServiceInfo = serde_json::from_str(&text).unwrap();
        assert_eq!(read.spec, SpecSummary { name: "kv".into(), mode: "per-request".into() });
        assert_eq!((read.instances, read.queued, read.cold_starts), (info.instances, 1, 3));
        assert_eq!(read.last_crash, info.last_crash);
    }

    #[test]
    fn instances_round_trip() {
        let info = InstanceInfo {
            service: "kv".into(),
            name: "kv-3".into(),
            state: "ready".into(),
            age_seconds: 1.5,
            requests: 7,
            in_flight: 1,
            memory_kib: None,
            addr: "127.0.0.1:4000".into(),
        };
        let text = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<InstanceInfo>(&text).unwrap(), info);
    }
}
