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

#[test]
fn guests_run_under_the_sandbox_by_default_and_without_it_on_request() {
    require_kvm();
    let hello = guest_image("examples/hello");
    // The same guest, with and without the filter: both succeed (the filter allows the run loop).
    assert_eq!(run_image(&hello, &[], &["5"]).status, Some(5));
    assert_eq!(run_image(&hello, &["--no-sandbox"], &["5"]).status, Some(5));
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

#[test]
fn the_monitor_holds_only_the_descriptors_it_needs_while_the_guest_runs() {
    require_kvm();
    // While the guest sleeps, list the monitor's descriptors: no /dev/kvm, no image file.
    let probe_image = guest_image("tests/guests/probe");
    let mut child = mayfly()
        .arg("run")
        .arg(&probe_image)
        .args(["--timeout", "10", "--", "sleep", "1500"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut targets = Vec::new();
    // Wait until the VM exists (an anon_inode:kvm-vm descriptor), then look.
    while Instant::now() < deadline {
        targets = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if targets.iter().any(|t: &String| t.contains("kvm-vcpu")) {
            break;
        }
        std::thread::yield_now();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(targets.iter().any(|t| t.contains("kvm-vcpu")), "{targets:?}");
    assert!(!targets.iter().any(|t| t == "/dev/kvm"), "/dev/kvm still open: {targets:?}");
    assert!(!targets.iter().any(|t| t.contains("probe")), "the image still open: {targets:?}");
    assert!(targets.len() <= 6, "{targets:?}");
}
