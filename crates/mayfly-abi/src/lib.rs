//! The guest/monitor contract: hypercall numbers and argument structs, boot info, manifest, NIC
//! ring layout, ABI version.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! This crate is the whole guest/monitor interface, shared by both sides so that they cannot
//! drift. It has no dependencies and no `unsafe`: it only names numbers and lays out the plain-data
//! structures that cross the boundary.
//!
//! # How a hypercall is made
//! The guest runs in ring 3. It fills the argument structure of the hypercall (one
//! `#[repr(C)]` struct per hypercall, below), then stores the guest-physical address of that
//! structure (0 for hypercalls without arguments) as a 32-bit value at the hypercall's doorbell,
//! `layout::DOORBELL_ADDR + 4 * number` ([`Hypercall::doorbell`]). The monitor copies the structure out of guest memory,
//! validates the copy, acts, and writes the `OUT` fields back. Guest memory is identity-mapped
//! (virtual address = physical address), and all of it lies below 4 GiB, so 32 bits suffice.
//!
//! Every field below says whether it is `IN` (written by the guest, read by the monitor) or `OUT`
//! (written by the monitor), and its unit.
//!
//! # Versioning
//! [`ABI_VERSION`] is recorded in every image's manifest ([`manifest`]) and checked by the monitor
//! before boot; a mismatch is refused with a message naming both versions.
//!
//! **Rule for bumping it:** any change that an existing image or monitor could misread (a
//! hypercall renumbered or removed, a field moved, resized or given a new meaning, a layout
//! constant changed) bumps the version. Appending a new hypercall number, or appending a field at
//! the end of a structure that the other side is told the size of, does not.

#![no_std]
#![forbid(unsafe_code)]

pub mod block;
pub mod boot;
pub mod console;
pub mod hypercall;
pub mod layout;
pub mod manifest;
pub mod net;
pub mod status;

pub use boot::BootInfo;
pub use console::ConsoleBuffer;
pub use hypercall::{ExitArgs, ExitReason, Hypercall, WaitArgs};
pub use manifest::Manifest;
pub use status::Status;

/// Version of this interface. See the crate documentation for when it changes.
/// 3: `BootInfo` gained `generation` and `wall_clock_tsc` (snapshots and clones); the argument
/// block after it moved.
/// 4: `BootInfo` gained `block` (volumes); the argument block after it moved. The `Block`
/// hypercall and the `Block` device bit were appended.
pub const ABI_VERSION: u32 = 4;

/// A guest-physical address (equal to the guest-virtual address: memory is identity-mapped).
///
/// The monitor never dereferences it: it is a number to be checked against guest memory.
pub type GuestAddr = u64;
