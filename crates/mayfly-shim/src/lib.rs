//! The containerd shim v2 (`containerd-shim-mayfly-v2` binary): one monitor process (`mayfly run`) per container, its console on containerd's stdio FIFOs, its exit status reported back.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! Built on the `containerd-shim` crate (its synchronous API: no async runtime). `create` mounts
//! the container's root file system, reads what to run from the bundle (`mayfly-oci`) and starts
//! `mayfly run --standby` beside this binary, so the VM is prepared before containerd calls
//! `start`, which only sends `go`. The shim reaps the monitor (containerd-shim's reaper) and
//! reports its status: the guest's, or 128+N when a signal N ended it (137 after SIGKILL).
//! A pod's sandbox ("pause") container, marked by CRI's `io.kubernetes.cri.container-type`
//! annotation, gets no VM: the shim holds it until it is killed.
//! Pod networking (`pod_net`): when the spec names a network namespace (CRI's pod), the guest's
//! NIC is a tap there, redirected to and from eth0 with tc; the guest takes eth0's address.
//! Room: exec, stats.

#![deny(unsafe_code)]

mod container;
mod pod_net;
mod service;

pub use pod_net::{HOLD, hold};
pub use service::Shim;

/// containerd's name for this runtime (`ctr run --runtime io.containerd.mayfly.v2`).
pub const RUNTIME_ID: &str = "io.containerd.mayfly.v2";
