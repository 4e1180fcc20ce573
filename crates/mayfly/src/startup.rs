//! Startup sequencing, in safe code: what happens between the monitor's jump to `_start` (in
//! `platform`, which only reads the boot info and hands it over) and the application's `main`,
//! and what happens after it returns.

use crate::platform;
use mayfly_abi::BootInfo;

/// Brings the library OS up from the boot info, runs the application's `main` and exits with
/// its status.
pub(crate) fn run(info: BootInfo) -> ! {
    // The clock first: everything after may log with a timestamp.
    crate::time::init(platform::read_tsc(), info.tsc_hz, info.wall_clock_ns);
    platform::keep_boot_info(info);
    #[cfg(feature = "net")]
    platform::nic::attach();
    platform::claim_heap();
    crate::console::init_logger();
    let status = platform::app_main();
    crate::process::exit(status)
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
