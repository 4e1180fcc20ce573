//! The monitor's sandbox: once the guest is set up, and before its first instruction, the
//! monitor allows itself only the system calls its run loop needs (a seccomp-BPF filter, with
//! `no_new_privs`). A call outside the list raises SIGSYS, whose handler reports it on stderr
//! and ends the process with status 159 (128 + SIGSYS): a violation is never silent.
//!
//! The list ([`ALLOWED`]) and its size are documented in docs/security.md; a unit test checks
//! that the two agree.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Exit status of a monitor stopped by its filter.
pub const EXIT_SECCOMP: i32 = 159;

/// The system calls the run loop may make, with why.
pub const ALLOWED: [(&str, i64, &str); 24] = [
    ("read", libc::SYS_read, "tap frames"),
    ("write", libc::SYS_write, "console, diagnoses, tap frames"),
    ("close", libc::SYS_close, "finished connections"),
    ("ppoll", libc::SYS_ppoll, "waiting for I/O or a deadline in the Wait hypercall"),
    ("ioctl", libc::SYS_ioctl, "only KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS and FIONBIO"),
    ("accept4", libc::SYS_accept4, "connections to published ports"),
    ("recvfrom", libc::SYS_recvfrom, "reading carried connections"),
    ("sendto", libc::SYS_sendto, "writing carried connections"),
    ("setsockopt", libc::SYS_setsockopt, "TCP_NODELAY on carried connections"),
    ("shutdown", libc::SYS_shutdown, "half-closing carried connections"),
    ("socket", libc::SYS_socket, "only AF_INET: outbound connections to allowed host ports"),
    ("connect", libc::SYS_connect, "outbound connections to allowed host ports"),
    ("brk", libc::SYS_brk, "heap"),
    ("mmap", libc::SYS_mmap, "heap (large blocks), never executable"),
    ("mremap", libc::SYS_mremap, "heap (growing large blocks)"),
    ("munmap", libc::SYS_munmap, "heap"),
    ("madvise", libc::SYS_madvise, "heap (returning memory)"),
    ("futex", libc::SYS_futex, "std's locks (stdout)"),
    ("fcntl", libc::SYS_fcntl, "only F_GETFD: std's descriptor checks in debug builds"),
    ("rt_sigaction", libc::SYS_rt_sigaction, "disarming the timeout timer"),
    ("rt_sigreturn", libc::SYS_rt_sigreturn, "returning from the timer signal"),
    ("setitimer", libc::SYS_setitimer, "disarming the timeout timer"),
    ("sigaltstack", libc::SYS_sigaltstack, "std's cleanup at exit"),
    ("exit_group", libc::SYS_exit_group, "exit"),
];

/// The ioctl requests allowed.
const IOCTLS: [u64; 4] = [
    0xae80,      // KVM_RUN
    0x8090_ae81, // KVM_GET_REGS
    0x8138_ae83, // KVM_GET_SREGS
    0x5421,      // FIONBIO
];

/// Why the sandbox could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the monitor's seccomp filter: {0}")]
pub struct SandboxError(String);

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SandboxError(e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conditions).map_err(|e| SandboxError(e.to_string()))
}

/// Builds the filter program.
pub fn program() -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, number, _) in ALLOWED {
        rules.insert(number, Vec::new());
    }
    let ioctls = IOCTLS
        .iter()
        .map(|&request| rule(vec![condition(1, SeccompCmpOp::Eq, request)?]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    let af_inet = u64::try_from(libc::AF_INET).unwrap_or(2);
    rules.insert(libc::SYS_socket, vec![rule(vec![condition(0, SeccompCmpOp::Eq, af_inet)?])?]);
    let getfd = u64::try_from(libc::F_GETFD).unwrap_or(1);
    rules.insert(libc::SYS_fcntl, vec![rule(vec![condition(1, SeccompCmpOp::Eq, getfd)?])?]);
    let exec = u64::try_from(libc::PROT_EXEC).unwrap_or(4);
    rules.insert(libc::SYS_mmap, vec![rule(vec![condition(2, SeccompCmpOp::MaskedEq(exec), 0)?])?]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)
            .map_err(|e| SandboxError(e.to_string()))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| SandboxError(e.to_string()))
}

/// Installs the SIGSYS reporter and the filter on this (the only) thread.
pub fn enter() -> Result<(), SandboxError> {
    let program = program()?;
    crate::sys::report_sigsys(EXIT_SECCOMP).map_err(|e| SandboxError(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| SandboxError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_builds_and_the_documented_list_matches_the_code() {
        assert!(program().is_ok());
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md"))
                .expect("docs/security.md");
        for (name, _, _) in ALLOWED {
            assert!(doc.contains(&format!("`{name}`")), "docs/security.md does not list {name}");
        }
        assert!(doc.contains(&format!("{} system calls", ALLOWED.len())), "the count in the doc");
    }
}
