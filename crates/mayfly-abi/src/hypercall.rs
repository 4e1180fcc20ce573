//! Hypercall numbers and their argument structures.
//!
//! A hypercall is `out dx, eax` with `dx = HYPERCALL_PORT_BASE + number` and `eax` = the
//! guest-physical address of the argument structure (see the crate documentation). Every argument
//! structure is plain data: `#[repr(C)]`, no implicit padding, any bit pattern valid.
//!
//! Where the hypervisor honours IOPL 3 in ring 3 (hardware KVM), the `out` exits to the monitor
//! directly. Where it does not (PVM clears IOPL), the `out` raises a general-protection fault
//! whose monitor-provided stub re-issues the same `out` from ring 0 on
//! `port | TRAPPED_PORT_FLAG`, and returns to the instruction after the guest's `out` once the
//! monitor has stepped the saved instruction pointer. The guest sees no difference.

use crate::GuestAddr;

/// The port of hypercall number 0; hypercall `n` uses port `HYPERCALL_PORT_BASE + n`.
pub const HYPERCALL_PORT_BASE: u16 = 0x500;

/// The hypercalls. Numbers are stable; new ones are appended (see the versioning rule).
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypercall {
    /// Stop the guest for good. Argument: [`ExitArgs`]. Never returns.
    Exit = 0,
    /// Block until I/O is ready on a granted device or a timeout passes: the only way a guest
    /// idles. Argument: [`WaitArgs`].
    Wait = 1,
    /// Drain the console buffer now (it is full). No argument (`eax` = 0).
    ConsoleFlush = 2,
}

/// Number of hypercalls defined.
pub const HYPERCALL_COUNT: u16 = 3;

impl Hypercall {
    /// The I/O port this hypercall is made on.
    pub const fn port(self) -> u16 {
        HYPERCALL_PORT_BASE + self as u16
    }

    /// Decodes the hypercall made on `port`, if any.
    pub fn from_port(port: u16) -> Option<Hypercall> {
        match port.checked_sub(HYPERCALL_PORT_BASE)? {
            0 => Some(Hypercall::Exit),
            1 => Some(Hypercall::Wait),
            2 => Some(Hypercall::ConsoleFlush),
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
    fn ports_round_trip_and_unknown_ports_are_rejected() {
        for call in [Hypercall::Exit, Hypercall::Wait, Hypercall::ConsoleFlush] {
            assert_eq!(Hypercall::from_port(call.port()), Some(call));
        }
        assert_eq!(Hypercall::from_port(HYPERCALL_PORT_BASE + HYPERCALL_COUNT), None);
        assert_eq!(Hypercall::from_port(HYPERCALL_PORT_BASE - 1), None);
        assert_eq!(Hypercall::from_port(0), None);
    }

    #[test]
    fn exit_reasons_decode() {
        assert_eq!(ExitReason::from_raw(0), Some(ExitReason::Normal));
        assert_eq!(ExitReason::from_raw(1), Some(ExitReason::Panic));
        assert_eq!(ExitReason::from_raw(7), None);
    }
}
