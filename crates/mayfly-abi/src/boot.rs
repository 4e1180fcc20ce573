//! What the monitor tells the guest at boot.
//!
//! On entry, `rdi` holds the address of a [`BootInfo`] (at [`crate::layout::BOOT_INFO_ADDR`]),
//! `rsp` points 8 bytes below the top of the stack, and the CPU is in 64-bit mode, ring 3, with
//! interrupts off and SSE enabled. The boot-info region is read-only for the guest.

use crate::GuestAddr;

/// Value of [`BootInfo::magic`]: "MAYFLYBI".
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"MAYFLYBI");

/// Longest argument block (arguments and environment) the monitor passes, in bytes.
pub const ARGS_MAX: usize = 0x2000 - core::mem::size_of::<BootInfo>();

/// Boot information. Plain data: no padding, any bit pattern is valid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// The monitor's [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// Number of arguments in the argument block (the first is the program name).
    pub argc: u32,
    /// Bytes of guest memory (all of it, from address 0).
    pub mem_size: u64,
    /// First byte of the heap (page-aligned, just after the image).
    pub heap_start: GuestAddr,
    /// One past the last byte of the heap (page-aligned).
    pub heap_end: GuestAddr,
    /// One past the highest byte of the stack (the end of memory).
    pub stack_top: GuestAddr,
    /// Frequency of the time-stamp counter (`rdtsc`), in Hz.
    pub tsc_hz: u64,
    /// Wall-clock time when the guest was entered, in nanoseconds since the Unix epoch (UTC).
    pub wall_clock_ns: u64,
    /// Address of the argument block: `argc` arguments then `envc` `KEY=VALUE` entries, each
    /// NUL-terminated.
    pub args: GuestAddr,
    /// Length of the argument block in bytes.
    pub args_len: u32,
    /// Number of environment entries after the arguments.
    pub envc: u32,
    /// Address of the [`crate::ConsoleBuffer`].
    pub console: GuestAddr,
    /// Bit `n` set: device `n` (see [`crate::manifest::Device`]) is attached.
    pub devices: u64,
    /// 32 random bytes from the host, to seed the guest's random number generator.
    pub entropy: [u8; 32],
    /// The network interface, if `devices` has [`crate::manifest::Device::Net`].
    pub net: crate::net::NetInfo,
    /// Which life of the guest this is: 0 for a guest booted from its image; a clone made from
    /// a snapshot gets a fresh non-zero value, written before it runs any instruction. The
    /// library OS compares it after every `Wait` and, when it changed, takes the new `entropy`
    /// (reseeding its generator) and the new wall clock (`wall_clock_ns` at `wall_clock_tsc`).
    pub generation: u64,
    /// The guest's time-stamp counter at the moment `wall_clock_ns` was read, for a clone; 0 at
    /// a cold boot (the wall clock then holds at the guest's first instruction).
    pub wall_clock_tsc: u64,
    /// The volume, if `devices` has [`crate::manifest::Device::Block`].
    pub block: crate::block::BlockInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_has_no_implicit_padding_and_fits_its_page() {
        assert_eq!(
            core::mem::size_of::<BootInfo>(),
            8 + 4 + 4 + 8 * 7 + 4 + 4 + 8 + 8 + 32 + 32 + 8 + 8 + 16
        );
        assert!(core::mem::size_of::<BootInfo>() < 4096);
        const { assert!(ARGS_MAX > 7000) };
    }
}
