//! The library OS linked into every guest: startup, executor, console, time, TCP/IP over the rings,
//! HTTP server.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! An application is an ordinary `no_std` Cargo crate that depends on this one and names its
//! `main` with [`main!`]; `mayfly build <crate>` turns it into a bootable image, and
//! `mayfly run <image>` boots it on KVM. The library provides what a unikernel needs and nothing
//! more: boot ([`platform`]), heap (the global allocator), console ([`println!`], a `log`
//! backend), clocks ([`time`]), blocking ([`time::sleep`], [`wait`]), arguments and
//! environment ([`env`]), entropy ([`random`]), and exit and panic ([`process`]).
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use mayfly::prelude::*;
//!
//! mayfly::main!(main);
//!
//! fn main() {
//!     println!("hello from a unikernel");
//! }
//! ```
#![no_std]

/// The `alloc` crate, for applications that want more than the prelude.
pub extern crate alloc;

#[cfg(feature = "block")]
pub mod block;
pub mod console;
pub mod env;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "net")]
pub mod net;
mod platform;
pub mod process;
pub mod random;
mod startup;
pub mod task;
pub mod time;

pub use mayfly_abi as abi;

/// The platform layer, for mayfly-libc (the C library under std programs, built with the
/// `libc-host` feature, which leaves `_start` and `main!` to it); not for applications.
#[cfg(feature = "libc-host")]
#[doc(hidden)]
pub mod libc_host {
    pub use crate::platform::{args_block, boot_info, console_write, exit, init, wait};

    /// Runs the network stack (if any); returns when it next needs to run.
    pub fn net_poll() -> Option<crate::time::Instant> {
        crate::net_poll()
    }

    /// Whether written TCP data is not all acknowledged yet (see `net::has_unsent`).
    pub fn net_has_unsent() -> bool {
        #[cfg(feature = "net")]
        return crate::net::has_unsent();
        #[cfg(not(feature = "net"))]
        false
    }
}
pub use process::exit;
pub use task::{block_on, spawn};
pub use time::wait;

/// Devices this image asks the monitor for (recorded in the image's manifest).
const DEVICES: u32 = if cfg!(feature = "net") { 1 << abi::manifest::Device::Net as u32 } else { 0 }
    | if cfg!(feature = "block") { 1 << abi::manifest::Device::Block as u32 } else { 0 };

/// Lets the network stack run; returns when it next needs to.
fn net_poll() -> Option<time::Instant> {
    #[cfg(feature = "net")]
    return net::poll();
    #[cfg(not(feature = "net"))]
    None
}

/// Whether frames wait to be sent at the next exit.
fn net_has_output() -> bool {
    #[cfg(feature = "net")]
    return net::has_output();
    #[cfg(not(feature = "net"))]
    false
}

/// What most applications want in scope.
pub mod prelude {
    pub use crate::{print, println};
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

/// Names the application's main function: `mayfly::main!(main);`, or for an `async fn main`,
/// `mayfly::main!(async main);` (run by [`block_on`], with [`spawn`]ed tasks).
///
/// The function takes no arguments (see [`env::args`]) and returns `()`, an `i32` exit status,
/// or a `Result<(), E: Debug>` (an `Err` is printed and exits with status 1).
#[macro_export]
macro_rules! main {
    (async $main:path) => {
        #[unsafe(no_mangle)]
        fn __mayfly_main() -> i32 {
            $crate::process::Termination::report($crate::block_on($main()))
        }
    };
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __mayfly_main() -> i32 {
            $crate::process::Termination::report($main())
        }
    };
}
