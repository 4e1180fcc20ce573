//! The console: `print!`/`println!` and a `log` backend.
//!
//! Output goes to a buffer shared with the monitor and reaches the host on the guest's next exit
//! to the monitor (any hypercall, the end of the run, or a fault), so printing costs no exit.

use crate::platform;
use core::fmt;

/// A `fmt::Write` sink for the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        platform::console_write(s.as_bytes());
        Ok(())
    }
}

/// Writes raw bytes to the console.
pub fn write_bytes(bytes: &[u8]) {
    platform::console_write(bytes);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = fmt::Write::write_fmt(&mut Console, args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let ms = crate::time::Instant::now().since_boot().as_micros() as f64 / 1000.0;
            _print(format_args!(
                "[{ms:10.3} {:5} {}] {}\n",
                record.level(),
                record.target(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the `log` backend; the level comes from the `MAYFLY_LOG` (or `RUST_LOG`)
/// environment entry: off, error, warn, info (the default), debug or trace.
pub(crate) fn init_logger() {
    let level = crate::env::var("MAYFLY_LOG")
        .or_else(|| crate::env::var("RUST_LOG"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
