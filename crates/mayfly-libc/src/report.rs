//! Saying once, on the console, that a call is not available in a unikernel.

use core::sync::atomic::{AtomicBool, Ordering};

/// Prints `mayfly: <what> is not available in a unikernel (<errno name>)` the first time
/// `reported` is seen unset.
pub(crate) fn once(reported: &AtomicBool, what: &[u8], errno_name: &[u8]) {
    if !reported.swap(true, Ordering::Relaxed) {
        let console = mayfly::libc_host::console_write;
        console(b"mayfly: ");
        console(what);
        console(b" is not available in a unikernel (");
        console(errno_name);
        console(b")\n");
    }
}

/// Reports (once per call site) that C function `$name` is not available, sets `errno` to
/// `$errno` and evaluates to `$ret`.
macro_rules! unavailable {
    ($name:literal, $errno:ident, $ret:expr) => {{
        static REPORTED: core::sync::atomic::AtomicBool =
            core::sync::atomic::AtomicBool::new(false);
        $crate::report::once(&REPORTED, $name.as_bytes(), stringify!($errno).as_bytes());
        $crate::errno::set($crate::errno::$errno);
        $ret
    }};
}
