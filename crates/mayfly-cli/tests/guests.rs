//! Real guests on real KVM: console, arguments, exit status, memory, clocks, faults, limits.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn hello_prints_its_arguments_and_exits_with_the_status_given() {
    require_kvm();
    let hello = guest_image("examples/hello");
    let run = run_image(&hello, &[], &["7", "a", "b"]);
    assert_eq!(run.status, Some(7), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("Hello from a Mayfly unikernel!"), "{}", run.stdout);
    assert!(run.stdout.contains(r#"args: ["hello", "7", "a", "b"]"#), "{}", run.stdout);
    assert!(run.stdout.contains("allocated 1000 squares, sum 333833500"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "a normal exit prints no diagnosis: {}", run.stderr);
}

#[test]
fn hello_without_arguments_exits_zero() {
    require_kvm();
    let run = run_image(&guest_image("examples/hello"), &[], &[]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
}

#[test]
fn exit_status_propagates_modulo_256() {
    assert_eq!(probe(&["exit", "0"]).status, Some(0));
    assert_eq!(probe(&["exit", "42"]).status, Some(42));
    assert_eq!(probe(&["exit", "300"]).status, Some(300 - 256));
}

#[test]
fn wall_clock_is_close_to_the_hosts() {
    require_kvm();
    let run = run_image(&guest_image("examples/hello"), &[], &[]);
    let line = run.stdout.lines().find(|l| l.starts_with("wall clock: ")).expect("clock line");
    let secs: f64 = line["wall clock: ".len()..].split(' ').next().unwrap().parse().unwrap();
    let host = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!((host.as_secs_f64() - secs).abs() < 5.0, "guest {secs}, host {host:?}");
}

#[test]
fn guest_allocates_and_frees_tens_of_mib() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let run = run_image(&probe_image, &["--mem", "128", "--timeout", "20"], &["alloc", "48"]);
    assert_eq!(run.status, Some(0), "stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("alloc: 48 MiB allocated, checked and freed 3 times"));
}

#[test]
fn running_out_of_memory_is_a_reported_panic() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let run = run_image(&probe_image, &["--mem", "16", "--timeout", "20"], &["alloc", "64"]);
    assert_eq!(run.status, Some(101), "stdout {} stderr {}", run.stdout, run.stderr);
    run.assert_one_line_error("guest panicked: memory allocation of");
}

#[test]
fn panic_is_reported_with_message_and_location() {
    let run = probe(&["panic"]);
    assert_eq!(run.status, Some(101));
    run.assert_one_line_error("guest panicked: probe panicked on purpose: 42 at src/main.rs:");
}

#[test]
fn null_pointer_write_is_a_reported_page_fault() {
    let run = probe(&["null-write"]);
    assert_eq!(run.status, Some(139));
    run.assert_one_line_error("guest fault: page fault at rip 0x");
    assert!(run.stderr.contains("write to address 0x0 (not mapped)"), "{}", run.stderr);
}

#[test]
fn invalid_instruction_is_reported() {
    let run = probe(&["invalid-instruction"]);
    assert_eq!(run.status, Some(139));
    run.assert_one_line_error("guest fault: invalid instruction at rip 0x1");
}

#[test]
fn divide_by_zero_is_reported() {
    let run = probe(&["divide-by-zero"]);
    assert_eq!(run.status, Some(139));
    run.assert_one_line_error("guest fault: divide error at rip 0x1");
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let run = probe(&["stack-overflow"]);
    assert_eq!(run.status, Some(139));
    run.assert_one_line_error("guest fault: page fault");
    assert!(run.stderr.contains("(not mapped)"), "{}", run.stderr);
}

#[test]
fn spinning_guest_is_stopped_by_the_timeout() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let start = Instant::now();
    let run = run_image(&probe_image, &["--timeout", "0.5"], &["spin"]);
    let took = start.elapsed();
    assert_eq!(run.status, Some(124));
    run.assert_one_line_error("guest stopped: time limit of 0.500 s reached");
    assert!(took >= Duration::from_millis(500), "stopped early: {took:?}");
    assert!(took < Duration::from_secs(5), "stopped late: {took:?}");
}

#[test]
fn sleeping_guest_blocks_for_the_time_asked() {
    let run = probe(&["sleep", "30"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let us: u64 = run
        .stdout
        .trim()
        .strip_prefix("slept ")
        .unwrap()
        .strip_suffix(" us")
        .unwrap()
        .parse()
        .unwrap();
    assert!((30_000..2_000_000).contains(&us), "slept {us} us");
}

#[test]
fn console_output_larger_than_the_buffer_arrives_whole_and_in_order() {
    let run = probe(&["print-lots", "2000"]);
    assert_eq!(run.status, Some(0));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("line {i:06} of console output"));
    }
}

#[test]
fn environment_entries_reach_the_guest() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let run = run_image(&probe_image, &["--env", "GREETING=hi there", "-e", "EMPTY="], &["env"]);
    assert_eq!(run.status, Some(0));
    assert!(run.stdout.contains("env GREETING=hi there\n"), "{}", run.stdout);
    assert!(run.stdout.contains("env EMPTY=\n"), "{}", run.stdout);
}

#[test]
fn entropy_differs_between_boots() {
    let a = probe(&["random"]);
    let b = probe(&["random"]);
    assert_eq!((a.status, b.status), (Some(0), Some(0)));
    assert!(a.stdout.starts_with("random: ["));
    assert_ne!(a.stdout, b.stdout);
}

#[test]
fn guest_timings_are_reported_in_order() {
    require_kvm();
    let hello = guest_image("examples/hello");
    let run = run_image(&hello, &["--timings"], &[]);
    assert_eq!(run.status, Some(0));
    let line = run.stderr.lines().find(|l| l.starts_with("mayfly-timings:")).expect("timings");
    let value = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {line}"))
    };
    assert!(value("start_ns") <= value("entered_ns"));
    assert!(value("entered_ns") <= value("stopped_ns"));
}

#[test]
fn a_forbidden_system_call_kills_the_monitor_and_is_reported() {
    require_kvm();
    let hello = guest_image("examples/hello");
    let run = run_image(&hello, &["--sandbox-selftest", "getppid"], &[]);
    assert_eq!(run.status, Some(159), "stdout {} stderr {}", run.stdout, run.stderr);
    run.assert_one_line_error("monitor stopped by its seccomp filter: system call 110");
}

/// The `Seccomp:` mode /proc shows for `pid` (0: none, 2: a filter), once the guest runs.
fn seccomp_mode(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the monitor runs");
    let line = status.lines().find(|l| l.starts_with("Seccomp:")).expect("a Seccomp line");
    line["Seccomp:".len()..].trim().to_owned()
}

#[test]
fn guests_run_under_the_sandbox_by_default_and_without_it_on_request() {
    // The test runner itself is not filtered, so whatever mode the monitor shows is its own.
    assert_eq!(seccomp_mode(std::process::id()), "0", "the test runs under a filter already");
    let sandboxed = RunningProbe::start(&[], &[]);
    assert_eq!(seccomp_mode(sandboxed.pid()), "2", "the monitor runs the guest without its filter");
    let unconfined = RunningProbe::start(&["--no-sandbox"], &[]);
    assert_eq!(seccomp_mode(unconfined.pid()), "0", "--no-sandbox still installed a filter");
}

#[test]
fn a_guest_over_its_cpu_time_limit_is_stopped() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let start = Instant::now();
    let run = run_image(&probe_image, &["--cpu-limit", "1", "--timeout", "20"], &["spin"]);
    assert_eq!(run.status, Some(152), "{}", run.stderr);
    run.assert_one_line_error("guest stopped: CPU time limit reached");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
}

#[test]
fn a_guest_over_its_console_limit_is_stopped_and_the_excess_dropped() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let run = run_image(&probe_image, &["--console-limit", "10000"], &["print-lots", "2000"]);
    assert_eq!(run.status, Some(139), "{}", run.stderr);
    run.assert_one_line_error("console output exceeded its limit of 10000 bytes");
    assert_eq!(run.stdout.len(), 10000);
}

#[test]
fn console_output_over_its_rate_is_dropped_and_said_so() {
    require_kvm();
    let probe_image = guest_image("tests/guests/probe");
    let run = run_image(&probe_image, &["--console-rate", "2000"], &["print-lots", "2000"]);
    assert_eq!(run.status, Some(0), "the guest keeps running: {}", run.stderr);
    assert!(run.stdout.len() < 5000, "at most about one second's worth: {}", run.stdout.len());
    let dropped: u64 = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[mayfly: "))
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(dropped > 55_000, "the drops are counted: {dropped}");
}

#[test]
fn waiting_on_a_device_the_image_did_not_declare_is_reported() {
    // The probe declares no device: nothing can ever wake a wait without a deadline.
    let run = probe(&["wait-forever"]);
    assert_eq!(run.status, Some(139), "{}", run.stderr);
    run.assert_one_line_error("guest waits forever with no device to wake it (deadlock)");
}

/// A probe in `announce-sleep` mode, running: its guest has printed `probe: running` (so the
/// monitor has entered it) and sleeps 3 s. Killed when dropped.
struct RunningProbe {
    child: std::process::Child,
}

impl RunningProbe {
    /// Starts the probe with monitor `options`, each `(from, to)` of `inherit` duplicated to
    /// descriptor `to` without close-on-exec, and waits (at most 20 s) until the guest runs.
    fn start(
        options: &[&str],
        inherit: &[(std::os::fd::RawFd, std::os::fd::RawFd)],
    ) -> RunningProbe {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        require_kvm();
        let mut cmd = mayfly();
        cmd.arg("run").arg(guest_image("tests/guests/probe")).args(options);
        cmd.args(["--timeout", "20", "--", "announce-sleep", "3000"]);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        let inherit = inherit.to_vec();
        // SAFETY: dup2(2) is async-signal-safe and touches only the child's descriptor table;
        // the new descriptor has no close-on-exec flag, so the monitor inherits it.
        unsafe {
            cmd.pre_exec(move || {
                for &(from, to) in &inherit {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn mayfly run");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut probe = RunningProbe { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "probe: running" => return probe,
                Ok(_) => {}
                Err(e) => {
                    probe.kill();
                    panic!("the probe did not say it runs within 20 s: {e}");
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where each of the monitor's descriptors points, by number.
    fn descriptors(&self) -> Vec<(String, String)> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("the monitor runs");
        dir.filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            Some((e.file_name().to_string_lossy().into_owned(), target))
        })
        .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RunningProbe {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn the_monitor_holds_only_the_descriptors_it_needs_while_the_guest_runs() {
    // Once the guest runs (it said so), list the monitor's descriptors: no /dev/kvm, no image.
    let probe = RunningProbe::start(&[], &[]);
    let targets: Vec<String> = probe.descriptors().into_iter().map(|(_, t)| t).collect();
    assert!(targets.iter().any(|t| t.contains("kvm-vcpu")), "{targets:?}");
    assert!(!targets.iter().any(|t| t == "/dev/kvm"), "/dev/kvm still open: {targets:?}");
    assert!(!targets.iter().any(|t| t.contains("probe")), "the image still open: {targets:?}");
    assert!(targets.len() <= 6, "{targets:?}");
}

#[test]
fn the_monitor_closes_every_descriptor_it_inherited() {
    use std::os::fd::AsRawFd;
    // A descriptor the monitor inherits (no close-on-exec) as fd 7 and fd 100.
    let dir = repo().join("target/test-scratch/inherited-fd");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("inherited-marker");
    std::fs::write(&marker, b"an inherited descriptor\n").unwrap();
    let file = std::fs::File::open(&marker).unwrap();
    let fd = file.as_raw_fd();
    let probe = RunningProbe::start(&[], &[(fd, 7), (fd, 100)]);
    let fds = probe.descriptors();
    let kept: Vec<_> = fds
        .iter()
        .filter(|(n, t)| n == "7" || n == "100" || t.contains("inherited-marker"))
        .collect();
    assert!(
        kept.is_empty(),
        "inherited descriptors still open in the monitor: {kept:?} (all: {fds:?})"
    );
}
