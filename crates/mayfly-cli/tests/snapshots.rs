//! Snapshots and clones on real KVM: `mayfly run --snapshot-out` captures a guest at its first
//! Wait, `mayfly run --from-snapshot` resumes clones of it. Clones must not share entropy, time
//! or written memory, a cloned service must answer, and a bad snapshot must be refused.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fresh scratch directory for test `name`.
fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(format!("snapshots-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a snapshot of `image` (with guest `args`) at `out`.
fn snapshot(image: &Path, out: &Path, args: &[&str]) {
    let out_arg = out.to_str().unwrap();
    let run = run_image(image, &["--timeout", "20", "--snapshot-out", out_arg], args);
    assert_eq!(run.status, Some(0), "snapshot failed: {}", run.stderr);
    assert!(run.stderr.contains("mayfly: snapshot written to "), "{}", run.stderr);
}

fn clone_of(image: &Path, template: &Path) -> Run {
    run_image(image, &["--timeout", "20", "--from-snapshot", template.to_str().unwrap()], &[])
}

/// What a clone of the probe's `snapshot-point` mode printed.
struct CloneLine {
    random: String,
    wall_ms: u128,
    counter: u64,
}

fn parse_clone(run: &Run) -> CloneLine {
    assert_eq!(run.status, Some(0), "clone failed: {} {}", run.stdout, run.stderr);
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("clone: random "))
        .unwrap_or_else(|| panic!("no clone line in {:?}", run.stdout));
    let (random, rest) = line.split_once(" wall_ms ").expect("wall_ms");
    let (wall, counter) = rest.split_once(" counter ").expect("counter");
    CloneLine {
        random: random.to_owned(),
        wall_ms: wall.parse().expect("wall_ms number"),
        counter: counter.parse().expect("counter number"),
    }
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[test]
fn clones_draw_their_own_random_bytes_and_never_see_another_clones_writes() {
    require_kvm();
    let dir = scratch("random");
    let image = guest_image("tests/guests/probe");
    let template = dir.join("probe.snap");
    snapshot(&image, &template, &["snapshot-point"]);
    let before = std::fs::read(&template).unwrap();
    const CLONES: usize = 200;
    // Four at a time: clones of one template run side by side, as a service's would.
    let lines: Vec<CloneLine> = (0..CLONES / 4)
        .flat_map(|_| {
            let batch: Vec<_> = (0..4)
                .map(|_| {
                    let (image, template) = (image.clone(), template.clone());
                    std::thread::spawn(move || clone_of(&image, &template))
                })
                .collect();
            batch.into_iter().map(|t| parse_clone(&t.join().unwrap())).collect::<Vec<_>>()
        })
        .collect();
    let mut randoms: Vec<&str> = lines.iter().map(|l| l.random.as_str()).collect();
    randoms.sort_unstable();
    randoms.dedup();
    assert_eq!(randoms.len(), CLONES, "clones repeated random bytes: {randoms:?}");
    // Every clone incremented the counter it found: each must have found the template's 0.
    for line in &lines {
        assert_eq!(line.counter, 0, "a clone saw another clone's write");
    }
    assert!(std::fs::read(&template).unwrap() == before, "a clone wrote to the snapshot file");
}

#[test]
fn a_clone_reads_the_current_wall_clock_after_its_snapshot_sat_for_seconds() {
    require_kvm();
    let dir = scratch("clock");
    let image = guest_image("tests/guests/probe");
    let template = dir.join("probe.snap");
    snapshot(&image, &template, &["snapshot-point"]);
    // The snapshot must sit: this is the time the clone's clock has to account for.
    std::thread::sleep(Duration::from_secs(3));
    let start = now_ms();
    let line = parse_clone(&clone_of(&image, &template));
    let end = now_ms();
    assert!(
        line.wall_ms + 200 >= start && line.wall_ms <= end + 200,
        "the clone's wall clock {} is outside the run [{start}, {end}] ms",
        line.wall_ms
    );
}

#[test]
fn clones_of_a_listening_service_answer_http_side_by_side() {
    require_kvm();
    let dir = scratch("http");
    let image = guest_image("examples/http-hello");
    let template = dir.join("hello.snap");
    snapshot(&image, &template, &[]);
    let options = ["--timeout", "30", "--publish", "0:80", "--from-snapshot"];
    let mut options = options.to_vec();
    options.push(template.to_str().unwrap());
    let clones: Vec<Running> = (0..3).map(|_| Running::start(&image, &options, &[])).collect();
    for clone in &clones {
        for _ in 0..2 {
            let reply = http(clone.addr, "GET", "/", b"");
            assert_eq!(reply.status, 200, "{}", reply.head);
            assert_eq!(reply.body, b"Hello from a Mayfly unikernel!\n");
        }
    }
}

/// Runs a clone of `image` from `template` and expects a one-line refusal mentioning `needle`.
fn refused(image: &Path, template: &Path, needle: &str) {
    let run = clone_of(image, template);
    assert_ne!(run.status, Some(0), "accepted: {}", run.stdout);
    run.assert_one_line_error(needle);
}

#[test]
fn bad_snapshots_are_refused_in_one_line() {
    require_kvm();
    let dir = scratch("bad");
    let probe = guest_image("tests/guests/probe");
    let template = dir.join("probe.snap");
    snapshot(&probe, &template, &["snapshot-point"]);
    let good = std::fs::read(&template).unwrap();
    let tampered = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        edit(&mut bytes);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // Offsets in the header: magic 8, versions 8, four u64, then rax.. r15, rip, rflags.
    let regs = 8 + 8 + 32;
    let rip = regs + 16 * 8;
    let rflags = rip + 8;
    let put = |at: usize, value: u64| {
        move |b: &mut Vec<u8>| b[at..at + 8].copy_from_slice(&value.to_le_bytes())
    };

    refused(
        &probe,
        &tampered("garbage", &|b| b[..8].copy_from_slice(b"NOTASNAP")),
        "not a Mayfly snapshot",
    );
    refused(&probe, &tampered("short", &|b| b.truncate(100)), "not a Mayfly snapshot");
    refused(&probe, &tampered("cut", &|b| b.truncate(8192 + 4096)), "cut short");
    refused(&probe, &tampered("rip", &put(rip, 0x7000)), "not in the image's code");
    refused(&probe, &tampered("rflags", &put(rflags, 0x3202)), "not a ring-3 value");
    refused(&guest_image("examples/http-hello"), &template, "made from another image");
    refused(&probe, &dir.join("missing.snap"), "cannot open the snapshot");

    // A clone keeps the snapshot's arguments: giving others is an error, not silently ignored.
    let run = run_image(&probe, &["--from-snapshot", template.to_str().unwrap()], &["random"]);
    run.assert_one_line_error("keeps the snapshot's arguments");
}

#[test]
fn a_guest_that_never_waits_leaves_no_snapshot() {
    require_kvm();
    let dir = scratch("never-waits");
    let out = dir.join("exit.snap");
    let run = run_image(
        &guest_image("tests/guests/probe"),
        &["--timeout", "20", "--snapshot-out", out.to_str().unwrap()],
        &["exit", "0"],
    );
    assert_ne!(run.status, Some(0));
    run.assert_one_line_error("no snapshot was written");
    assert!(!out.exists());
}

#[test]
fn clones_run_under_the_monitors_seccomp_filter() {
    require_kvm();
    let dir = scratch("sandbox");
    let image = guest_image("tests/guests/probe");
    let template = dir.join("probe.snap");
    snapshot(&image, &template, &["snapshot-point"]);
    let options = ["--timeout", "20", "--from-snapshot", template.to_str().unwrap()];
    let mut with_selftest = options.to_vec();
    with_selftest.extend(["--sandbox-selftest", "getppid"]);
    let run = run_image(&image, &with_selftest, &[]);
    assert_eq!(run.status, Some(159), "stdout {} stderr {}", run.stdout, run.stderr);
    run.assert_one_line_error("monitor stopped by its seccomp filter: system call 110");
}

/// Kills the child when dropped (the test's own monitor only).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a clone of `template` with `--standby` (and `extra` options) and waits until it
/// stands by; returns it and its published address, if any.
fn standby_clone(
    image: &Path,
    template: &Path,
    extra: &[&str],
) -> (Child, Option<std::net::SocketAddr>) {
    use std::io::BufRead;
    let mut child = Child(
        mayfly()
            .arg("run")
            .arg(image)
            .args(["--timeout", "30", "--standby", "--from-snapshot"])
            .arg(template)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn mayfly run"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("the clone stands by within 20 s");
        if let Some(rest) = line.strip_prefix("mayfly: publishing ") {
            addr = rest.split(' ').next().and_then(|a| a.parse().ok());
        }
        if line == "mayfly: standby" {
            return (child, addr);
        }
    }
}

fn go(child: &mut Child) {
    use std::io::Write;
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
}

#[test]
fn a_clone_stands_by_then_answers_once_told_to_go() {
    require_kvm();
    let dir = scratch("standby");
    let image = guest_image("examples/http-hello");
    let template = dir.join("hello.snap");
    snapshot(&image, &template, &[]);
    let (mut child, addr) = standby_clone(&image, &template, &["--publish", "0:80"]);
    go(&mut child);
    let reply = http(addr.expect("a published address"), "GET", "/", b"");
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, b"Hello from a Mayfly unikernel!\n");
}

#[test]
fn a_clone_that_stood_by_for_seconds_reads_the_current_wall_clock() {
    use std::io::Read;
    require_kvm();
    let dir = scratch("standby-clock");
    let image = guest_image("tests/guests/probe");
    let template = dir.join("probe.snap");
    snapshot(&image, &template, &["snapshot-point"]);
    let (mut child, _) = standby_clone(&image, &template, &[]);
    // Standing by is what this test is about: the clone's clock must not start at preparation.
    std::thread::sleep(Duration::from_secs(2));
    let start = now_ms();
    go(&mut child);
    let mut stdout = String::new();
    child.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let end = now_ms();
    let status = child.0.wait().unwrap().code();
    let line = parse_clone(&Run { status, stdout, stderr: String::new() });
    assert!(
        line.wall_ms + 200 >= start && line.wall_ms <= end + 200,
        "the clone's wall clock {} is outside [{start}, {end}] ms",
        line.wall_ms
    );
}

#[test]
fn a_service_with_snapshot_true_answers_from_clones() {
    use common::gateway::{GREETING, Gateway, hello_service, read_proc};
    require_kvm();
    let gw = Gateway::start("snapshot-service", &hello_service("snapshot = true"));
    let reply = gw.get("/hello");
    assert_eq!(reply.status, 200, "{}\n{}", reply.head, gw.stderr());
    assert_eq!(reply.body, GREETING);
    let monitors = gw.monitors(&guest_image(common::gateway::HELLO));
    assert!(!monitors.is_empty(), "no monitors: {}", gw.stderr());
    for pid in monitors {
        let cmdline = read_proc(pid).map(|p| p.cmdline).unwrap_or_default();
        assert!(cmdline.contains("--from-snapshot"), "not a clone: {cmdline}");
    }
}

#[test]
fn a_clone_reports_its_faults_even_from_a_snapshot_with_forged_monitor_pages() {
    require_kvm();
    let dir = scratch("fault");
    let image = guest_image("tests/guests/probe");
    let template = dir.join("probe.snap");
    snapshot(&image, &template, &["snapshot-null-write"]);
    let expect = "page fault at rip ";
    let run = clone_of(&image, &template);
    assert_eq!(run.status, Some(139), "{} {}", run.stdout, run.stderr);
    run.assert_one_line_error(expect);
    assert!(run.stderr.contains("write to address 0x0 (not mapped)"), "{}", run.stderr);
    // The monitor's pages (descriptor tables, exception stubs, page tables: 0x1000-0x10000 of
    // guest memory, after the 8 KiB header) forged in the file: the clone rewrites them from
    // the image, so the fault is still reported, and the same way.
    let mut bytes = std::fs::read(&template).unwrap();
    for (byte, value) in bytes[8192 + 0x1000..8192 + 0x4000].iter_mut().zip((0..=250u8).cycle()) {
        *byte = value;
    }
    for byte in &mut bytes[8192 + 0x8000..8192 + 0x10000] {
        *byte = 0xff;
    }
    let forged = dir.join("forged.snap");
    std::fs::write(&forged, bytes).unwrap();
    let run = clone_of(&image, &forged);
    assert_eq!(run.status, Some(139), "{} {}", run.stdout, run.stderr);
    run.assert_one_line_error(expect);
    assert!(run.stderr.contains("write to address 0x0 (not mapped)"), "{}", run.stderr);
}
