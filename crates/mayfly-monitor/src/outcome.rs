//! How a guest run ended, and the one-line diagnosis for each case.

use crate::cpu;
use std::fmt;
use std::time::Duration;

/// A CPU exception that stopped the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector (0-31), or `None` for a triple fault.
    pub vector: Option<u8>,
    /// Address of the faulting instruction.
    pub rip: u64,
    /// The error code the CPU pushed, if any.
    pub error_code: Option<u64>,
    /// For page faults, the address that was accessed (CR2).
    pub address: Option<u64>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(vector) = self.vector else {
            return write!(f, "triple fault at rip {:#x}", self.rip);
        };
        write!(f, "{} at rip {:#x}", cpu::exception_name(vector), self.rip)?;
        if let (Some(address), Some(code)) = (self.address, self.error_code) {
            let access = if code & 0x10 != 0 {
                "instruction fetch from"
            } else if code & 0x2 != 0 {
                "write to"
            } else {
                "read from"
            };
            let why = if code & 0x1 == 0 { "not mapped" } else { "access not permitted" };
            write!(f, ": {access} address {address:#x} ({why})")?;
        } else if let Some(code) = self.error_code.filter(|c| *c != 0) {
            write!(f, " (error code {code:#x})")?;
        }
        Ok(())
    }
}

/// How the guest's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest exited with this status.
    Exited(i32),
    /// The guest panicked.
    Panicked {
        /// The status it asked to exit with.
        status: i32,
        /// The panic message and location.
        message: String,
    },
    /// A CPU exception stopped the guest.
    Faulted(Fault),
    /// The guest ran past its time limit and was stopped.
    TimedOut(Duration),
    /// The guest broke the hypercall protocol (bad arguments, unknown hypercall, ...) and was
    /// stopped.
    Misbehaved(String),
}

/// Process exit status for a guest that panicked (Rust's convention).
pub const EXIT_PANIC: u8 = 101;
/// Process exit status for a guest stopped by its time limit (as `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;
/// Process exit status when the guest faulted or misbehaved (128 + SIGSEGV).
pub const EXIT_FAULT: u8 = 139;

impl Outcome {
    /// The exit status `mayfly run` exits with.
    pub fn exit_status(&self) -> u8 {
        match self {
            Outcome::Exited(status) => (*status & 0xff) as u8,
            Outcome::Panicked { .. } => EXIT_PANIC,
            Outcome::TimedOut(_) => EXIT_TIMEOUT,
            Outcome::Faulted(_) | Outcome::Misbehaved(_) => EXIT_FAULT,
        }
    }

    /// A one-line diagnosis, or `None` for a normal exit.
    pub fn diagnosis(&self) -> Option<String> {
        match self {
            Outcome::Exited(_) => None,
            Outcome::Panicked { message, .. } => Some(format!("guest panicked: {message}")),
            Outcome::Faulted(fault) => Some(format!("guest fault: {fault}")),
            Outcome::TimedOut(after) => {
                Some(format!("guest stopped: time limit of {:.3} s reached", after.as_secs_f64()))
            }
            Outcome::Misbehaved(what) => Some(format!("guest stopped: {what}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_faults_say_what_was_accessed() {
        let fault =
            Fault { vector: Some(14), rip: 0x10_0040, error_code: Some(0x6), address: Some(0) };
        assert_eq!(
            fault.to_string(),
            "page fault at rip 0x100040: write to address 0x0 (not mapped)"
        );
        let fetch = Fault {
            vector: Some(14),
            rip: 0x30_0000,
            error_code: Some(0x15),
            address: Some(0x30_0000),
        };
        assert!(
            fetch
                .to_string()
                .contains("instruction fetch from address 0x300000 (access not permitted)")
        );
    }

    #[test]
    fn exit_statuses_follow_conventions() {
        assert_eq!(Outcome::Exited(7).exit_status(), 7);
        assert_eq!(Outcome::Exited(256 + 3).exit_status(), 3);
        assert_eq!(Outcome::TimedOut(Duration::from_secs(1)).exit_status(), 124);
        let ud = Fault { vector: Some(6), rip: 1, error_code: None, address: None };
        assert_eq!(Outcome::Faulted(ud.clone()).exit_status(), 139);
        assert_eq!(
            Outcome::Faulted(ud).diagnosis().unwrap(),
            "guest fault: invalid instruction at rip 0x1"
        );
    }
}
