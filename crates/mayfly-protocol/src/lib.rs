//! The contracts between processes: the standby protocol, the admin API's JSON types, one small
//! blocking HTTP client.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! The contracts between Mayfly's processes, each written once and used by both sides.
//! Room: a new boundary (e.g. an OCI runtime / containerd shim talking to the gateway) adds its
//! own module here; the crates on either side of it do not reach into each other.
//!
//! - [`standby`]: the monitor (`mayfly run --standby`) and the gateway that starts it: the flags
//!   passed, the lines printed, the `go` command.
//! - [`admin`]: the admin API's JSON types (the gateway serves them, `mayfly ps` reads them),
//!   its token file's location.
//! - [`http`]: a minimal blocking HTTP/1.1 client (the admin CLI, the benchmarks, the tests).
//!
//! Std only, plus serde: the `mayfly` binary, which every monitor process runs, links this crate
//! and must stay free of async runtimes.

#![forbid(unsafe_code)]

pub mod admin;
pub mod http;
pub mod standby;
