//! The one raw system call the CLI needs: waiting for a child with its resource usage (the
//! benchmark's peak-RSS figure), which `std::process` does not expose.

/// Exit status and peak resident set size of a finished child.
#[derive(Debug, Clone, Copy)]
pub struct ChildUsage {
    /// Exit code, or `None` if killed by a signal.
    pub code: Option<i32>,
    /// Peak resident set size in KiB.
    pub max_rss_kib: u64,
}

/// Waits for process `pid` (a child of ours) and returns its status and peak RSS.
pub fn wait_with_usage(pid: u32) -> std::io::Result<ChildUsage> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, writable, and live for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(ChildUsage {
        code,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}
