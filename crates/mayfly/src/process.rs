//! Ending the unikernel: `exit`, the return value of `main`, and the panic handler.

use crate::platform;
use core::fmt::{self, Write};
use mayfly_abi::ExitReason;

/// Exit status used for a panic (Rust's convention).
pub const PANIC_STATUS: i32 = platform::PANIC_STATUS;

/// Stops the unikernel with `status` (the `mayfly run` process exits with `status & 0xff`).
pub fn exit(status: i32) -> ! {
    platform::exit(status, ExitReason::Normal, &[])
}

/// What `main` may return.
pub trait Termination {
    /// The exit status.
    fn report(self) -> i32;
}

impl Termination for () {
    fn report(self) -> i32 {
        0
    }
}

impl Termination for i32 {
    fn report(self) -> i32 {
        self
    }
}

impl<E: fmt::Debug> Termination for Result<(), E> {
    fn report(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                crate::println!("Error: {e:?}");
                1
            }
        }
    }
}

/// A fixed buffer for the panic message: formatting it must not allocate (the panic may be an
/// allocation failure).
struct MessageBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl Write for MessageBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut message = MessageBuffer { bytes: [0; 512], len: 0 };
    let _ = match info.location() {
        Some(at) => {
            write!(message, "{} at {}:{}:{}", info.message(), at.file(), at.line(), at.column())
        }
        None => write!(message, "{}", info.message()),
    };
    let text = message.bytes.get(..message.len).unwrap_or_default();
    platform::console_write(b"panicked: ");
    platform::console_write(text);
    platform::console_write(b"\n");
    platform::exit(PANIC_STATUS, ExitReason::Panic, text)
}
