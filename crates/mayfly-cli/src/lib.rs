//! The `mayfly` binary: build, run (the monitor), ps/deploy/rm/logs; `serve` and `bench` run the
//! binaries beside it.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! The `mayfly` command's library: building guest crates into images (the benchmarks use it too).
//! The binary (`main.rs`, `commands/`) only parses arguments and calls into this, the monitor
//! (`mayfly run`), or the binaries beside it (`mayfly serve`, `mayfly bench`).
//! Room: the `mayfly` binary runs every monitor process, so it links no async runtime, no HTTP
//! server and no gateway; new commands that need them get their own binary, dispatched like
//! `serve` and `bench`.

#![deny(unsafe_code)]

pub mod builder;
/// The one small HTTP client (kept under its old name for the tests).
pub use mayfly_protocol::http as http_client;
