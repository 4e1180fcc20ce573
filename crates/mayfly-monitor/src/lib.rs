//! The monitor: image checks, memory plan, page tables, KVM, run loop, hypercalls, virtual NIC,
//! sandbox.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! The boot path lives in [`instance`] (validate, plan, load, set up the vCPU), the run loop in
//! [`run`], the hypercall table in [`hypercalls`]. Unsafe code is denied at the crate root and
//! allowed (`#[allow(unsafe_code)]`) only in three modules:
//! `kvm` (registering guest memory), `guest_memory` (the plain-data contract of ABI structures)
//! and `sys` (timer signal, clock, entropy, tap, poll, the SIGSYS reporter). [`sandbox`] builds
//! the seccomp filter the run loop lives under. Every guest is treated as hostile: see
//! `docs/design.md`.

#![deny(unsafe_code)]

pub mod boot_args;
pub mod console;
pub mod cpu;
#[allow(unsafe_code)]
pub mod guest_memory;
pub mod hypercalls;
pub mod image;
pub mod instance;
#[allow(unsafe_code)]
pub mod kvm;
pub mod net;
pub mod outcome;
pub mod paging;
pub mod plan;
pub mod run;
pub mod sandbox;
pub mod snapshot;
#[allow(unsafe_code)]
pub mod sys;
pub mod volume;

pub use image::{Image, ImageError};
pub use instance::{BootError, Instance, VmConfig};
pub use outcome::{Fault, Outcome};
pub use run::{RunReport, Timings};
