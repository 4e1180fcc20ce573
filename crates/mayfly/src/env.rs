//! Arguments and environment, as passed by `mayfly run <image> -- <args>` and `--env`.

use crate::platform;

fn entries() -> impl Iterator<Item = &'static str> {
    platform::args_block().split(|b| *b == 0).map(|entry| core::str::from_utf8(entry).unwrap_or(""))
}

/// The arguments; the first is the program name.
pub fn args() -> impl Iterator<Item = &'static str> {
    entries().take(platform::boot_info().argc as usize)
}

/// The environment, as `(name, value)` pairs.
pub fn vars() -> impl Iterator<Item = (&'static str, &'static str)> {
    let info = platform::boot_info();
    entries()
        .skip(info.argc as usize)
        .take(info.envc as usize)
        .filter_map(|entry| entry.split_once('='))
}

/// The value of environment entry `name`.
pub fn var(name: &str) -> Option<&'static str> {
    vars().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Bytes of guest memory, heap range, and stack top, as the monitor laid them out.
pub fn memory() -> crate::abi::BootInfo {
    platform::boot_info()
}
