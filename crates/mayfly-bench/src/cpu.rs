//! CPU time a server process spent, read from `/proc`: what a request costs each side, not only
//! how long it takes.

use anyhow::{Context, Result};

/// The unit of `/proc`'s tick counts: `USER_HZ`, 100 on every Linux architecture this runs on.
const USER_HZ: u64 = 100;

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// On-CPU time of all its threads, ns (`/proc/<pid>/task/*/schedstat`, scheduler-exact),
    /// the time its threads spent running a guest (inside `KVM_RUN`) included.
    pub total_ns: u64,
    /// Of that, time accounted as guest time (`/proc/<pid>/stat`, field 43), ns; clock-tick
    /// granular (1/`USER_HZ` s), so only meaningful over seconds of work.
    pub guest_ns: u64,
}

impl CpuTime {
    /// What `pid` has used so far.
    pub fn of(pid: u32) -> Result<CpuTime> {
        let tasks = format!("/proc/{pid}/task");
        let mut total_ns = 0u64;
        for entry in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
            let path =
                entry.with_context(|| format!("cannot list {tasks}"))?.path().join("schedstat");
            // A thread that ended meanwhile has no schedstat any more: its time is gone with it.
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            total_ns += first_number(&text)
                .with_context(|| format!("no run time in {}", path.display()))?;
        }
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path)
            .with_context(|| format!("cannot read {stat_path}"))?;
        let guest_ticks =
            guest_ticks(&stat).with_context(|| format!("no guest time in {stat_path}"))?;
        Ok(CpuTime { total_ns, guest_ns: guest_ticks * (1_000_000_000 / USER_HZ) })
    }

    /// CPU per unit of work between `self` (earlier) and `later`, in µs: (total, guest).
    pub fn per(self, later: CpuTime, units: u64) -> (f64, f64) {
        let units = units.max(1) as f64;
        let total = later.total_ns.saturating_sub(self.total_ns) as f64 / 1e3 / units;
        let guest = later.guest_ns.saturating_sub(self.guest_ns) as f64 / 1e3 / units;
        (total, guest)
    }
}

fn first_number(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Field 43 (`guest_time`) of a `/proc/<pid>/stat` line; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn guest_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come fields 3, 4, ...: field 43 is the 41st.
    after_name.split_whitespace().nth(40)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_time_is_field_43_even_with_a_strange_command_name() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[40] = "777".into();
        let stat = format!("1234 (a (b) c) {}", fields.join(" "));
        assert_eq!(guest_ticks(&stat), Some(777));
        assert_eq!(guest_ticks("1234 (short) 1 2"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let before = CpuTime::of(std::process::id()).expect("read own cpu time");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i * i));
        }
        let after = CpuTime::of(std::process::id()).expect("read own cpu time");
        assert!(after.total_ns > before.total_ns, "{before:?} then {after:?} ({x})");
        let (per, _) = before.per(after, 1);
        assert!(per > 0.0);
    }
}
