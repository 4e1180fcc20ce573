//! Mayfly images as OCI images: an image-layout tar holding the unikernel as one file on a scratch root, and Mayfly's settings read back from a container bundle.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! The image (`layout.rs`) is an ordinary OCI image, so `skopeo`, registries and containerd's
//! snapshotters handle it: one uncompressed layer with `/mayfly/image` (the unikernel) and
//! `/mayfly/settings.json` (what the runtime needs that a runtime spec does not carry: memory and
//! guest port). The same settings are in the image config (entrypoint, cmd, env, exposed port,
//! labels) and the manifest's annotations (`io.mayfly.*`). `bundle.rs` reads them back from the
//! bundle containerd prepares for a container, for the shim (`containerd-shim-mayfly-v2`).
//! No async runtime here: the `mayfly` binary links this crate.

#![deny(unsafe_code)]

mod bundle;
mod layout;

pub use bundle::{
    CRI_CONTAINER_TYPE, Launch, bundle_network_namespace, is_pod_sandbox, read_bundle,
};
pub use layout::{ImageRequest, WrittenImage, default_reference, write_image};

use serde::{Deserialize, Serialize};

/// Where the unikernel lives in the container's root file system (the image's entrypoint).
pub const UNIKERNEL_PATH: &str = "/mayfly/image";
/// Where the settings file lives in the container's root file system.
pub const SETTINGS_PATH: &str = "/mayfly/settings.json";

/// Annotation and label keys (`io.mayfly.*`).
pub mod keys {
    /// Guest memory in MiB.
    pub const MEMORY_MIB: &str = "io.mayfly.memory-mib";
    /// The guest's TCP port (absent when it serves none).
    pub const GUEST_PORT: &str = "io.mayfly.guest-port";
    /// The unikernel's path in the root file system.
    pub const UNIKERNEL: &str = "io.mayfly.unikernel";
}

/// Mayfly's settings for one image: what `mayfly run` would be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Guest memory in MiB (a multiple of 2, from 4 to 4096, as `mayfly run --mem`).
    pub memory_mib: u64,
    /// The TCP port the guest serves on, if any.
    pub guest_port: Option<u16>,
    /// Arguments after the program name (the image's `Cmd`).
    pub args: Vec<String>,
    /// Environment entries (the image's `Env`).
    pub env: Vec<(String, String)>,
    /// Whether the unikernel declares a network device (its manifest's NIC bit); `None` in
    /// images written before this was recorded (a runtime then gives it the pod's NIC).
    #[serde(default)]
    pub network: Option<bool>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            memory_mib: 64,
            guest_port: None,
            args: Vec::new(),
            env: Vec::new(),
            network: None,
        }
    }
}
