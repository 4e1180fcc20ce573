//! Numeric status codes written by the monitor into a hypercall's `status` field (OUT).

/// The result of a hypercall, as an `i32` in the argument structure.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The hypercall succeeded.
    Ok = 0,
    /// An argument was invalid: an address outside guest memory, a length too large, etc.
    Invalid = -1,
    /// The hypercall or device is not available to this guest (not declared in its manifest).
    Unsupported = -2,
    /// Nothing to do right now; try again after waiting.
    Again = -3,
}

impl Status {
    /// Decodes a raw status; unknown values are `None`.
    pub fn from_raw(raw: i32) -> Option<Status> {
        match raw {
            0 => Some(Status::Ok),
            -1 => Some(Status::Invalid),
            -2 => Some(Status::Unsupported),
            -3 => Some(Status::Again),
            _ => None,
        }
    }
}
