//! Hostile guests: every misuse of the interface ends that guest with a report, never the
//! monitor (no panic, one line on stderr), and the host's memory stays bounded by the guest's.

mod common;

use common::*;

fn hostile(options: &[&str], mode: &str) -> Run {
    require_kvm();
    let image = guest_image("tests/guests/hostile");
    let mut all = vec!["--timings"];
    all.extend_from_slice(options);
    if !options.contains(&"--timeout") {
        all.extend_from_slice(&["--timeout", "10"]);
    }
    run_image(&image, &all, &[mode])
}

/// The diagnosis line (the timings line is the other one on stderr).
fn diagnosis(run: &Run) -> String {
    let lines: Vec<&str> =
        run.stderr.lines().filter(|l| !l.starts_with("mayfly-timings:")).collect();
    assert_eq!(lines.len(), 1, "one diagnosis line expected: {:?}", run.stderr);
    assert!(!run.stderr.contains("panicked at"), "the monitor panicked: {}", run.stderr);
    lines[0].to_owned()
}

fn peak_rss_kib(run: &Run) -> u64 {
    run.stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.parse().ok())
        .expect("timings with peak RSS")
}

/// Guest memory of a hostile run without `--mem` (`mayfly run`'s default), MiB.
const DEFAULT_MEM_MIB: u64 = 64;
/// What the monitor may hold beyond its guest's memory, MiB.
const MONITOR_OVERHEAD_MIB: u64 = 8;

/// The monitor's whole footprint stayed within its guest's memory plus its own few MiB.
fn assert_memory_bounded(run: &Run, mode: &str, mem_mib: u64) {
    let rss = peak_rss_kib(run);
    let bound = (mem_mib + MONITOR_OVERHEAD_MIB) * 1024;
    assert!(rss < bound, "{mode}: peak RSS {rss} KiB, above {bound} KiB");
}

fn expect(mode: &str, status: i32, needle: &str) {
    let run = hostile(&[], mode);
    assert_memory_bounded(&run, mode, DEFAULT_MEM_MIB);
    assert_eq!(run.status, Some(status), "{mode}: stdout {} stderr {}", run.stdout, run.stderr);
    let line = diagnosis(&run);
    assert!(line.contains(needle), "{mode}: {line:?} lacks {needle:?}");
    assert!(!run.stdout.contains("the monitor let"), "{mode} got through: {}", run.stdout);
}

#[test]
fn hypercall_arguments_outside_memory_or_in_the_reserved_area_stop_the_guest() {
    expect("args-outside-memory", 139, "hypercall Exit: arguments at 0xfffffff0");
    expect("args-in-reserved-area", 139, "hypercall Wait: arguments at 0x4000");
    expect("args-null", 139, "hypercall Exit: arguments at 0x0");
}

#[test]
fn wait_results_are_never_written_into_read_only_guest_memory() {
    expect(
        "wait-args-in-text",
        139,
        "are not in the guest's read-write memory (the monitor writes the result there)",
    );
}

#[test]
fn an_absurd_message_pointer_and_length_are_refused() {
    expect(
        "absurd-message",
        101,
        "guest panicked: (message at invalid address 0xfffffffffffffffb)",
    );
}

#[test]
fn unknown_hypercalls_wrong_widths_and_unknown_ports_stop_the_guest() {
    expect("unknown-hypercall", 139, "guest wrote to 0x7134, which is no hypercall");
    expect("misaligned-hypercall", 139, "guest wrote to 0x7006, which is no hypercall");
    expect("wrong-width", 139, "hypercall Exit made with a 1-byte store; use 32 bits");
    expect("read-doorbell", 139, "guest read the hypercall doorbell at 0x7000; it is write-only");
    expect("unknown-port", 139, "general protection fault");
    expect("old-hypercall-port", 139, "general protection fault");
    // Claims a page fault (vector 14) through the exception port: refused, not believed.
    expect("fake-fault-report", 139, "guest tried to forge an exception report");
    expect("fake-fault-report", 139, "the report was rejected");
    expect("fake-fault-report-imm", 139, "the report was rejected");
    for mode in ["fake-fault-report", "fake-fault-report-imm"] {
        let forged = diagnosis(&hostile(&[], mode));
        assert!(!forged.contains("page fault"), "{mode}: the forgery was believed: {forged}");
    }
}

#[test]
fn a_garbage_console_length_is_clamped() {
    let run = hostile(&[], "console-garbage");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_memory_bounded(&run, "console-garbage", DEFAULT_MEM_MIB);
    assert!(run.stdout.contains("still alive after a garbage console length"));
    assert!(run.stdout.len() < 64 * 1024, "the clamp bounds what was printed");
}

#[test]
fn garbage_ring_counters_and_lengths_stop_the_guest() {
    expect("ring-garbage", 139, "NIC TX ring corrupted: the guest claims");
    expect("ring-bad-length", 139, "frame of 1000000 bytes");
}

#[test]
fn a_hypercall_flood_is_stopped_by_the_time_limit() {
    let run = hostile(&["--timeout", "1"], "hypercall-flood");
    assert_eq!(run.status, Some(124), "{}", run.stderr);
    assert!(diagnosis(&run).contains("time limit"), "{}", run.stderr);
    assert_memory_bounded(&run, "hypercall-flood", DEFAULT_MEM_MIB);
}

#[test]
fn writes_to_protected_memory_and_executing_data_fault() {
    expect("rewrite-page-tables", 139, "write to address 0x8000 (not mapped)");
    expect("write-gdt", 139, "write to address 0x1000 (access not permitted)");
    expect("write-boot-info", 139, "write to address 0x4000 (access not permitted)");
    expect("write-text", 139, "(access not permitted)");
    expect("jump-into-heap", 139, "instruction fetch from address");
}

#[test]
fn exhausting_memory_is_a_reported_panic_and_the_host_memory_stays_bounded() {
    let run = hostile(&["--mem", "32"], "exhaust-memory");
    assert_eq!(run.status, Some(101), "{}", run.stderr);
    assert!(diagnosis(&run).contains("memory allocation of 1048576 bytes failed"));
    // The monitor's whole footprint: at most the guest's 32 MiB plus a few MiB of its own.
    assert_memory_bounded(&run, "exhaust-memory", 32);
}

#[test]
fn a_guest_exit_status_is_not_dressed_up_as_a_monitor_verdict() {
    // The status is the guest's to choose; only the monitor's stderr line says it stopped it.
    let image = guest_image("tests/guests/hostile");
    for code in [124, 139, 152, 159] {
        let arg = code.to_string();
        let run = run_image(&image, &["--timeout", "10"], &["exit-with", &arg]);
        assert_eq!(run.status, Some(code), "{}", run.stderr);
        assert!(run.stderr.is_empty(), "exit {code} printed a verdict: {:?}", run.stderr);
    }
    // The monitor's own verdict for the same status says so.
    let run = hostile(&["--timeout", "1"], "hypercall-flood");
    assert_eq!(run.status, Some(124), "{}", run.stderr);
    assert!(diagnosis(&run).starts_with("mayfly: guest stopped: time limit"), "{}", run.stderr);
}

/// Boots the hostile guest (which declares a NIC) with `options`, making the forbidden call
/// `call` once the filter is installed; returns the run.
fn selftest(options: &[&str], call: &str) -> Run {
    require_kvm();
    let image = guest_image("tests/guests/hostile");
    let mut all = vec!["--timeout", "10", "--sandbox-selftest", call];
    all.extend_from_slice(options);
    run_image(&image, &all, &["exit-with", "0"])
}

fn assert_stopped(run: &Run, what: &str, number: u32) {
    assert_eq!(run.status, Some(159), "{what}: stdout {} stderr {}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
    // The report is the last line (`--publish` prints the published address before).
    let last = run.stderr.lines().last().unwrap_or_default();
    let report = format!(
        "mayfly: monitor stopped by its seccomp filter: system call {number} is not in its \
         allowlist"
    );
    assert!(last.starts_with(&report), "{what}: {:?}", run.stderr);
}

#[test]
fn every_filtered_call_is_stopped_in_its_forbidden_variant_and_reported() {
    // (self-test, system call number) without any network grant.
    let forbidden = [
        ("getppid", 110),
        ("ioctl", 16),
        ("ioctl-fionbio", 16),
        ("mmap-exec", 9),
        ("fcntl", 72),
        ("open", 257),
        ("socket-tcp", 41),
        ("socket-udp", 41),
        ("socket-unix", 41),
        ("connect", 42),
    ];
    for (call, number) in forbidden {
        assert_stopped(&selftest(&[], call), call, number);
    }
}

#[test]
fn the_filter_follows_the_instance_s_network_grants() {
    // Published ports only: still no socket or connect of its own.
    let publish = ["--publish", "127.0.0.1:0:80"];
    assert_stopped(&selftest(&publish, "socket-tcp"), "socket-tcp with --publish", 41);
    assert_stopped(&selftest(&publish, "connect"), "connect with --publish", 42);
    let fionbio = selftest(&publish, "ioctl-fionbio");
    assert_eq!(fionbio.status, Some(0), "FIONBIO with published ports: {}", fionbio.stderr);
    // An outbound grant allows exactly a non-blocking IPv4 TCP socket: not UDP, not Unix.
    let outbound = ["--allow-host-port", "9"];
    assert_stopped(&selftest(&outbound, "socket-udp"), "socket-udp with a grant", 41);
    assert_stopped(&selftest(&outbound, "socket-unix"), "socket-unix with a grant", 41);
    let allowed = selftest(&outbound, "socket-tcp");
    assert_eq!(allowed.status, Some(0), "the granted socket is allowed: {}", allowed.stderr);
}
