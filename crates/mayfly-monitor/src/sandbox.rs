//! The monitor's sandbox: once the guest is set up, and before its first instruction, the
//! monitor allows itself only the system calls its run loop needs (a seccomp-BPF filter, with
//! `no_new_privs`). A call outside the list raises SIGSYS, whose handler reports it on stderr
//! and ends the process with status 159 (128 + SIGSYS): a violation is never silent.
//!
//! The list follows the instance ([`Grants`]): [`ALWAYS`], plus [`PUBLISHED`] and [`CARRIED`]
//! for published ports, plus [`OUTBOUND`] and [`CARRIED`] for outbound grants, plus [`VOLUME`]
//! for a volume; an instance with no outbound grant cannot even create a socket, one without a
//! volume cannot read or write a file. The lists and their sizes are documented in
//! docs/security.md; a unit test checks that the two agree.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Exit status of a monitor stopped by its filter.
pub const EXIT_SECCOMP: i32 = 159;

/// The system calls every run loop may make, with why.
pub const ALWAYS: [(&str, i64, &str); 17] = [
    ("read", libc::SYS_read, "tap frames"),
    ("write", libc::SYS_write, "console, diagnoses, tap frames"),
    ("close", libc::SYS_close, "finished connections"),
    ("ppoll", libc::SYS_ppoll, "waiting for I/O or a deadline in the Wait hypercall"),
    (
        "ioctl",
        libc::SYS_ioctl,
        "only KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS (and FIONBIO with published ports)",
    ),
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

/// Added for an instance with published ports (TCP or Unix socket).
pub const PUBLISHED: [(&str, i64, &str); 1] =
    [("accept4", libc::SYS_accept4, "connections to published ports")];

/// Added for an instance that carries connections (published ports or outbound grants).
pub const CARRIED: [(&str, i64, &str); 4] = [
    ("recvfrom", libc::SYS_recvfrom, "reading carried connections"),
    ("sendto", libc::SYS_sendto, "writing carried connections"),
    ("setsockopt", libc::SYS_setsockopt, "TCP_NODELAY on carried connections"),
    ("shutdown", libc::SYS_shutdown, "half-closing carried connections"),
];

/// Added only for an instance with an outbound grant (`--allow-host-port`).
pub const OUTBOUND: [(&str, i64, &str); 2] = [
    (
        "socket",
        libc::SYS_socket,
        "only AF_INET, SOCK_STREAM: outbound TCP connections to allowed host ports",
    ),
    ("connect", libc::SYS_connect, "outbound connections to allowed host ports"),
];

/// Added for an instance published on a Unix socket: removing its socket file at exit, only
/// relative to the socket's own directory descriptor.
pub const UNIX_SOCKET: [(&str, i64, &str); 1] = [(
    "unlinkat",
    libc::SYS_unlinkat,
    "only relative to a published Unix socket's directory: removing the socket file at exit",
)];

/// Added only for an instance with a volume (`--volume`), opened before the filter.
pub const VOLUME: [(&str, i64, &str); 3] = [
    ("pread64", libc::SYS_pread64, "reading the volume (Block hypercall)"),
    ("pwrite64", libc::SYS_pwrite64, "writing the volume (Block hypercall)"),
    ("fdatasync", libc::SYS_fdatasync, "flushing the volume (Block hypercall)"),
];

/// What an instance was granted, and so which system calls its filter allows beyond
/// [`ALWAYS`]: the filter follows the instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// It has published ports: [`PUBLISHED`] and [`CARRIED`].
    pub published: bool,
    /// It may connect to allowed host ports: [`OUTBOUND`] and [`CARRIED`].
    pub outbound: bool,
    /// Directory descriptors of its published Unix sockets: [`UNIX_SOCKET`], for these only.
    pub unix_dirs: Vec<i32>,
    /// It has a volume: [`VOLUME`].
    pub volume: bool,
}

impl Grants {
    /// Every system call the filter allows for these grants, with why.
    pub fn allowed(&self) -> Vec<(&'static str, i64, &'static str)> {
        let mut all = ALWAYS.to_vec();
        if self.published {
            all.extend(PUBLISHED);
        }
        if self.published || self.outbound {
            all.extend(CARRIED);
        }
        if self.outbound {
            all.extend(OUTBOUND);
        }
        if !self.unix_dirs.is_empty() {
            all.extend(UNIX_SOCKET);
        }
        if self.volume {
            all.extend(VOLUME);
        }
        all
    }
}

/// The most system calls any instance is allowed.
pub const MOST: usize = ALWAYS.len()
    + PUBLISHED.len()
    + CARRIED.len()
    + OUTBOUND.len()
    + UNIX_SOCKET.len()
    + VOLUME.len();

/// A forbidden variant of a system call, made once the filter is installed (`mayfly run
/// --sandbox-selftest CALL`, a hidden test hook): the filter must stop and report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// `getppid`: in no list.
    Getppid,
    /// `ioctl(TIOCGWINSZ)` on stdout: not one of the allowed requests.
    Ioctl,
    /// `ioctl(FIONBIO)` on stdout: allowed only with published ports.
    IoctlFionbio,
    /// `socket(AF_INET, SOCK_STREAM)`: allowed only with an outbound grant.
    SocketTcp,
    /// `socket(AF_INET, SOCK_DGRAM)`: never (UDP is not carried).
    SocketUdp,
    /// `socket(AF_UNIX, SOCK_STREAM)`: never.
    SocketUnix,
    /// `connect`: allowed only with an outbound grant.
    Connect,
    /// `mmap` of executable memory: never.
    MmapExec,
    /// `fcntl(F_GETFL)`: only `F_GETFD` is allowed.
    Fcntl,
    /// `openat`: setup is over, no file may be opened.
    Open,
}

impl SelfTest {
    /// Every self-test, by the name the CLI takes.
    pub const ALL: [(&'static str, SelfTest); 10] = [
        ("getppid", SelfTest::Getppid),
        ("ioctl", SelfTest::Ioctl),
        ("ioctl-fionbio", SelfTest::IoctlFionbio),
        ("socket-tcp", SelfTest::SocketTcp),
        ("socket-udp", SelfTest::SocketUdp),
        ("socket-unix", SelfTest::SocketUnix),
        ("connect", SelfTest::Connect),
        ("mmap-exec", SelfTest::MmapExec),
        ("fcntl", SelfTest::Fcntl),
        ("open", SelfTest::Open),
    ];
}

impl std::str::FromStr for SelfTest {
    type Err = String;

    fn from_str(name: &str) -> Result<SelfTest, String> {
        SelfTest::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| {
            let names: Vec<&str> = SelfTest::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown self-test {name:?}; one of {}", names.join(", "))
        })
    }
}

/// The ioctl requests always allowed.
const KVM_IOCTLS: [u64; 3] = [
    0xae80,      // KVM_RUN
    0x8090_ae81, // KVM_GET_REGS
    0x8138_ae83, // KVM_GET_SREGS
];
/// Allowed with published ports: making accepted connections non-blocking.
const FIONBIO: u64 = 0x5421;

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

/// Builds the filter program for an instance with `grants`.
pub fn program(grants: &Grants) -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, number, _) in grants.allowed() {
        rules.insert(number, Vec::new());
    }
    let fionbio = grants.published.then_some(FIONBIO);
    let ioctls = KVM_IOCTLS
        .iter()
        .copied()
        .chain(fionbio)
        .map(|request| rule(vec![condition(1, SeccompCmpOp::Eq, request)?]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    if grants.outbound {
        // Exactly the socket `sys::connect_nonblocking` opens: IPv4, TCP, nothing else.
        let af_inet = u64::try_from(libc::AF_INET).unwrap_or(2);
        let stream = u64::try_from(crate::sys::OUTBOUND_SOCKET_TYPE).unwrap_or(u64::MAX);
        rules.insert(
            libc::SYS_socket,
            vec![rule(vec![
                condition(0, SeccompCmpOp::Eq, af_inet)?,
                condition(1, SeccompCmpOp::Eq, stream)?,
                condition(2, SeccompCmpOp::Eq, 0)?,
            ])?],
        );
    }
    if !grants.unix_dirs.is_empty() {
        let in_dir = |fd: &i32| {
            let fd = u64::try_from(*fd).unwrap_or(u64::MAX);
            rule(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, fd)
                    .map_err(|e| SandboxError(e.to_string()))?,
            ])
        };
        let rules_in_dirs = grants.unix_dirs.iter().map(in_dir).collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_unlinkat, rules_in_dirs);
    }
    let getfd = u64::try_from(libc::F_GETFD).unwrap_or(1);
    rules.insert(libc::SYS_fcntl, vec![rule(vec![condition(1, SeccompCmpOp::Eq, getfd)?])?]);
    let exec = u64::try_from(libc::PROT_EXEC).unwrap_or(4);
    rules.insert(libc::SYS_mmap, vec![rule(vec![condition(2, SeccompCmpOp::MaskedEq(exec), 0)?])?]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)
            .map_err(|e| SandboxError(e.to_string()))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| SandboxError(e.to_string()))
}

/// Installs the SIGSYS reporter and the filter for `grants` on this (the only) thread.
pub fn enter(grants: &Grants) -> Result<(), SandboxError> {
    let program = program(grants)?;
    crate::sys::report_sigsys(EXIT_SECCOMP).map_err(|e| SandboxError(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| SandboxError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_builds_and_the_documented_list_matches_the_code() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md"))
                .expect("docs/security.md");
        let section = doc
            .split("## The monitor's system-call allowlist")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/security.md has the allowlist section");
        let rows = |group: &[(&str, i64, &str)], when: &str| {
            for (name, _, _) in group {
                let row = format!("| `{name}` | {when} |");
                assert!(section.contains(&row), "docs/security.md lacks the row {row:?}");
            }
        };
        rows(&ALWAYS, "always");
        rows(&PUBLISHED, "published ports");
        rows(&CARRIED, "published ports or `--allow-host-port`");
        rows(&OUTBOUND, "`--allow-host-port`");
        rows(&UNIX_SOCKET, "a `unix:` published port");
        rows(&VOLUME, "`--volume`");
        let table_rows = section.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(table_rows, MOST, "the table lists exactly the calls of the code");
        let count = format!("{} system calls always, at most {MOST}", ALWAYS.len());
        assert!(section.contains(&count), "the counts in the doc: {count:?}");
    }

    #[test]
    fn the_filter_follows_the_instance() {
        let names = |grants: Grants| -> Vec<&str> {
            assert!(program(&grants).is_ok());
            grants.allowed().iter().map(|(name, _, _)| *name).collect()
        };
        let none = names(Grants::default());
        assert_eq!(none.len(), ALWAYS.len());
        for call in ["socket", "connect", "accept4", "recvfrom", "sendto"] {
            assert!(!none.contains(&call), "{call} allowed without any network grant");
        }
        let published = names(Grants { published: true, ..Grants::default() });
        assert!(published.contains(&"accept4") && published.contains(&"sendto"));
        assert!(!published.contains(&"socket") && !published.contains(&"connect"));
        let outbound = names(Grants { outbound: true, ..Grants::default() });
        assert!(outbound.contains(&"socket") && outbound.contains(&"connect"));
        assert!(!outbound.contains(&"accept4"));
        assert!(!outbound.contains(&"unlinkat"));
        for call in ["pread64", "pwrite64", "fdatasync"] {
            assert!(!none.contains(&call) && !outbound.contains(&call), "{call} without a volume");
        }
        let volume = names(Grants { volume: true, ..Grants::default() });
        assert_eq!(volume.len(), ALWAYS.len() + VOLUME.len());
        let all = Grants { published: true, outbound: true, unix_dirs: vec![3, 4], volume: true };
        assert_eq!(names(all).len(), MOST);
    }
}
