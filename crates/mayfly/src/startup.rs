//! Startup sequencing, in safe code: what happens between the monitor's jump to `_start` (in
//! `platform`, or mayfly-libc's for std programs, which only read the boot info and hand it
//! over) and the application's `main`, and what a clone does when it wakes.

use crate::platform;
use mayfly_abi::BootInfo;

/// Brings the library OS up from the boot info: clocks, boot info, NIC, heap, logger. Then the
/// entry point (Mayfly's `_start`, or mayfly-libc's for std programs) runs the application.
pub(crate) fn bring_up(info: BootInfo) {
    // The clock first: everything after may log with a timestamp.
    crate::time::init(platform::read_tsc(), info.tsc_hz, info.wall_clock_ns);
    platform::keep_boot_info(info);
    #[cfg(feature = "net")]
    platform::nic::attach();
    platform::claim_heap();
    crate::console::init_logger();
}

/// A clone resumed from a snapshot: the new boot info's entropy replaces the template's (the
/// generator and the network stack's sequence numbers are reseeded) and its wall clock is
/// rebased; the monotonic clock runs on from the snapshot (the monitor restored the TSC).
pub(crate) fn wake_as_clone(info: BootInfo) {
    platform::keep_boot_info(info);
    crate::time::rebase(info.wall_clock_ns, info.wall_clock_tsc);
    crate::random::reseed(info.entropy);
    #[cfg(feature = "net")]
    crate::net::reseed_on_next_use();
}
