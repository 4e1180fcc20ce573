//! The console buffer: console output without an exit per write.
//!
//! The guest appends bytes to `data` and advances `len`. On **every** exit to the monitor (any
//! hypercall, a fault, a timeout) the monitor copies `data[..len]` to the console and sets `len`
//! back to 0. Only one vCPU exists and it is stopped while the monitor runs, so there is no race.
//! When the buffer is full, the guest makes the [`crate::Hypercall::ConsoleFlush`] hypercall.
//! A `len` larger than [`CONSOLE_CAPACITY`] is clamped by the monitor.

/// Bytes of console data the buffer holds.
pub const CONSOLE_CAPACITY: usize = 4096 - 8;

/// Layout of the console page (at [`crate::layout::CONSOLE_ADDR`]).
///
/// Plain data: no padding, any bit pattern is valid.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ConsoleBuffer {
    /// IN/OUT: bytes of `data` in use. Guest advances it; monitor resets it to 0 after draining.
    pub len: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// IN: the pending console bytes (UTF-8 by convention, not enforced).
    pub data: [u8; CONSOLE_CAPACITY],
}

/// Byte offset of [`ConsoleBuffer::data`] within the buffer.
pub const CONSOLE_DATA_OFFSET: u64 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_buffer_is_one_page_with_data_at_offset_8() {
        assert_eq!(core::mem::size_of::<ConsoleBuffer>(), 4096);
        assert_eq!(core::mem::offset_of!(ConsoleBuffer, data) as u64, CONSOLE_DATA_OFFSET);
    }
}
