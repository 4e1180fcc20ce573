//! The `mayfly` command's library: building guest crates into images, and the benchmarks.
//! The binary (`main.rs`, `commands/`) only parses arguments and calls into this.

#![deny(unsafe_code)]

pub mod bench;
pub mod builder;
pub mod http_client;
pub mod serve_cli;
