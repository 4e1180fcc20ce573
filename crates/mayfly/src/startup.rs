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
