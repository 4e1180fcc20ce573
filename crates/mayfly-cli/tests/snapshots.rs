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
