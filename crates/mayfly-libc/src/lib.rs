//! The C library of ordinary std Rust programs run as Mayfly unikernels.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! The precompiled `std` of the host target reaches the operating system only through libc.
//! `mayfly build` links a std program against this crate (as `libc.a`, found before the
//! system's) instead of glibc, so a "system call" is a function call into the library OS in the
//! same ring-3 address space. Every function here keeps the C contract std relies on: `-1` (or
//! an error number, where C says so) and `errno` on failure. What a unikernel cannot do returns
//! the proper error and says so once on the console ([`unavailable!`]).
//!
//! All exported names are C ABI; `mayfly build` hides every other symbol of this library (its
//! own copy of `core` and `alloc`) so that they cannot clash with the program's.
#![no_std]

extern crate alloc;

#[macro_use]
mod report;
mod env;
mod epoll;
mod errno;
mod fs;
mod io;
mod math;
mod memory;
mod net;
mod process;
mod sched;
mod spawn;
mod start;
mod string;
mod syscall;
mod thread;
mod time;
mod tls;
mod udp;
mod unwind;

pub use errno::__errno_location;
