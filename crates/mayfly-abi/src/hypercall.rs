//! Hypercall numbers and their argument structures.
//!
//! A hypercall is one 32-bit store to the hypercall doorbell: `mov dword [DOORBELL_ADDR + 4 *
//! number], eax` with `eax` = the guest-physical address of the argument structure (see the
//! crate documentation). The doorbell page is mapped in the guest's page tables but backed by no
//! memory, so the store leaves the guest (an MMIO exit) straight from ring 3, on every
//! hypervisor, without touching any privilege level. On PVM this costs about half of what an
//! `out` does there (PVM clears IOPL, so a ring-3 `out` would have to go through a #GP handler
//! that ring 0 runs in the instruction emulator). Every argument structure is plain data:
//! `#[repr(C)]`, no implicit padding, any bit pattern valid.

use crate::GuestAddr;
use crate::layout::{DOORBELL_ADDR, PAGE_SIZE};

/// Bytes of the doorbell per hypercall: hypercall `n` is a 32-bit store at
/// [`DOORBELL_ADDR`]` + n * HYPERCALL_STRIDE`.
pub const HYPERCALL_STRIDE: u64 = 4;

/// The hypercalls. Numbers are stable; new ones are appended (see the versioning rule).
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypercall {
    /// Stop the guest for good. Argument: [`ExitArgs`]. Never returns.
    Exit = 0,
    /// Block until I/O is ready on a granted device or a timeout passes: the only way a guest
    /// idles. Argument: [`WaitArgs`].
    Wait = 1,
    /// Drain the console buffer now (it is full). No argument (the stored value is 0).
    ConsoleFlush = 2,
    /// Serve a batch of volume requests. Argument: [`crate::block::BlockArgs`].
    Block = 3,
}

/// Number of hypercalls defined.
pub const HYPERCALL_COUNT: u16 = 4;

impl Hypercall {
    /// The guest address the guest stores to for this hypercall.
    pub const fn doorbell(self) -> GuestAddr {
        DOORBELL_ADDR + self as u64 * HYPERCALL_STRIDE
    }

    /// Decodes the hypercall rung at guest address `addr`, if any: `None` for addresses outside
    /// the doorbell, between two doorbells, or of numbers not defined.
    pub fn from_doorbell(addr: GuestAddr) -> Option<Hypercall> {
        let offset = addr.checked_sub(DOORBELL_ADDR)?;
        if offset >= PAGE_SIZE || offset % HYPERCALL_STRIDE != 0 {
            return None;
        }
        match offset / HYPERCALL_STRIDE {
            0 => Some(Hypercall::Exit),
            1 => Some(Hypercall::Wait),
            2 => Some(Hypercall::ConsoleFlush),
            3 => Some(Hypercall::Block),
            _ => None,
        }
    }
}

/// Why the guest exits.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The application returned or called `exit`.
    Normal = 0,
    /// The application panicked; `message` holds the panic message and location.
    Panic = 1,
}

impl ExitReason {
    /// Decodes a raw reason; unknown values are `None`.
    pub fn from_raw(raw: u32) -> Option<ExitReason> {
        match raw {
            0 => Some(ExitReason::Normal),
            1 => Some(ExitReason::Panic),
            _ => None,
        }
    }
}

/// Longest `message` the monitor reads from [`ExitArgs`]; longer ones are truncated.
pub const EXIT_MESSAGE_MAX: u32 = 1024;

/// Arguments of [`Hypercall::Exit`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitArgs {
    /// IN: exit status of the application (the monitor's process exits with `status & 0xff`).
    pub status: i32,
    /// IN: an [`ExitReason`] as `u32`.
    pub reason: u32,
    /// IN: address of a UTF-8 message (the panic message), or 0.
    pub message: GuestAddr,
    /// IN: length of `message` in bytes (at most [`EXIT_MESSAGE_MAX`] are read).
    pub message_len: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// `timeout_ns` value meaning "no deadline": wait for I/O only.
pub const WAIT_FOREVER: u64 = u64::MAX;

/// Arguments of [`Hypercall::Wait`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitArgs {
    /// IN: longest time to block, in nanoseconds; 0 only polls; [`WAIT_FOREVER`] has no deadline.
    pub timeout_ns: u64,
    /// OUT: bit `n` set when device `n` (see [`crate::manifest::Device`]) has I/O ready.
    pub ready: u64,
    /// OUT: a [`crate::Status`] as `i32`.
    pub status: i32,
    /// IN: [`WAIT_TIMER_ONLY`] or 0.
    pub flags: u32,
}

/// `WaitArgs::flags`: return only when the timeout passes, not when I/O is ready (a plain
/// sleep). Frames still move while the guest sleeps.
pub const WAIT_TIMER_ONLY: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn argument_structs_have_no_implicit_padding() {
        assert_eq!(size_of::<ExitArgs>(), 4 + 4 + 8 + 4 + 4);
        assert_eq!(size_of::<WaitArgs>(), 8 + 8 + 4 + 4);
    }

    #[test]
    fn doorbells_round_trip_and_other_addresses_are_rejected() {
        for call in [Hypercall::Exit, Hypercall::Wait, Hypercall::ConsoleFlush, Hypercall::Block] {
            assert_eq!(Hypercall::from_doorbell(call.doorbell()), Some(call));
            assert_eq!(Hypercall::from_doorbell(call.doorbell() + 1), None);
        }
        let past = DOORBELL_ADDR + u64::from(HYPERCALL_COUNT) * HYPERCALL_STRIDE;
        assert_eq!(Hypercall::from_doorbell(past), None);
        assert_eq!(Hypercall::from_doorbell(DOORBELL_ADDR - 4), None);
        assert_eq!(Hypercall::from_doorbell(DOORBELL_ADDR + PAGE_SIZE), None);
        assert_eq!(Hypercall::from_doorbell(0), None);
        assert_eq!(Hypercall::from_doorbell(u64::MAX), None);
    }

    #[test]
    fn exit_reasons_decode() {
        assert_eq!(ExitReason::from_raw(0), Some(ExitReason::Normal));
        assert_eq!(ExitReason::from_raw(1), Some(ExitReason::Panic));
        assert_eq!(ExitReason::from_raw(7), None);
    }
}
