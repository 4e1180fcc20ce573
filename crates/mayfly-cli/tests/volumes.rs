//! Volumes (`mayfly run --volume`): the block device served by the monitor, the store on it,
//! the sandbox that admits only `pread`/`pwrite`/`fdatasync` for it, and hostile batches.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn scratch() -> tempfile_dir::Dir {
    tempfile_dir::Dir::new()
}

/// A private scratch directory, removed when dropped.
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let base = std::env::temp_dir();
            for n in 0.. {
                let path = base.join(format!("mayfly-vol-test-{}-{n}", std::process::id()));
                if std::fs::create_dir(&path).is_ok() {
                    return Dir(path);
                }
            }
            unreachable!()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn volume_arg(path: &Path, options: &str) -> String {
    format!("{}{options}", path.display())
}

fn probe_with(volume: &str, args: &[&str]) -> Run {
    require_kvm();
    run_image(&guest_image("tests/guests/probe"), &["--timeout", "20", "--volume", volume], args)
}

fn file(dir: &tempfile_dir::Dir, name: &str) -> PathBuf {
    dir.0.join(name)
}

#[test]
fn a_volume_is_created_at_its_size_and_keeps_what_the_store_acknowledged() {
    let dir = scratch();
    let path = file(&dir, "data.img");
    let run = probe_with(&volume_arg(&path, ":size=1M"), &["volume-info"]);
    assert_eq!(run.status, Some(0), "{} {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("volume: 2048 sectors, read-only false"), "{}", run.stdout);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);

    let put = probe_with(&volume_arg(&path, ""), &["volume-put", "paint", "blue"]);
    assert!(put.stdout.contains("stored paint"), "{} {}", put.stdout, put.stderr);
    // A new monitor, sandboxed, finds it; a read-only attach reads it and refuses writes.
    let get = probe_with(&volume_arg(&path, ""), &["volume-get", "paint"]);
    assert!(get.stdout.contains("paint = blue"), "{} {}", get.stdout, get.stderr);
    let ro = probe_with(&volume_arg(&path, ":ro"), &["volume-get", "paint"]);
    assert!(ro.stdout.contains("paint = blue"), "{} {}", ro.stdout, ro.stderr);
    let before = std::fs::read(&path).unwrap();
    let refused = probe_with(&volume_arg(&path, ":ro"), &["volume-write-ro"]);
    assert_eq!(refused.status, Some(0), "{} {}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("Err(ReadOnly)"), "{}", refused.stdout);
    assert_eq!(std::fs::read(&path).unwrap(), before, "a read-only volume was written");
}

#[test]
fn bad_volume_specs_and_missing_files_are_one_line_errors() {
    let dir = scratch();
    let missing = file(&dir, "missing.img");
    let image = guest_image("tests/guests/probe");
    let run = |spec: &str| run_image(&image, &["--volume", spec], &["volume-info"]);
    let missing_spec = volume_arg(&missing, "");
    run(&missing_spec).assert_one_line_error("no such file; give a size to create it");
    assert!(!missing.exists());
    run(&volume_arg(&missing, ":size=12345")).assert_one_line_error("bad size");
    run(&volume_arg(&missing, ":rw")).assert_one_line_error("unknown option \"rw\"");
    run(&volume_arg(&missing, ":ro,size=1M")).assert_one_line_error("cannot be created");
    let odd = file(&dir, "odd.img");
    std::fs::write(&odd, [0u8; 1000]).unwrap();
    run(&volume_arg(&odd, "")).assert_one_line_error("not a positive multiple of 512");
    // An image without the block feature cannot be given a volume.
    let hello = guest_image("examples/hello");
    let ok = volume_arg(&file(&dir, "v.img"), ":size=64K");
    run_image(&hello, &["--volume", &ok], &[]).assert_one_line_error("declares no block device");
}

#[test]
fn a_writable_volume_has_one_monitor_at_a_time() {
    let dir = scratch();
    let path = file(&dir, "locked.img");
    let spec = volume_arg(&path, ":size=64K");
    let image = guest_image("tests/guests/probe");
    // The first monitor holds the volume while it sleeps.
    let mut first = mayfly()
        .args(["run", image.to_str().unwrap(), "--timeout", "20", "--volume", &spec])
        .args(["--", "announce-sleep", "15000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(first.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let second = run_image(&image, &["--volume", &spec], &["volume-info"]);
    let _ = first.kill();
    let _ = first.wait();
    second.assert_one_line_error("is in use by another monitor");
    // Once the first is gone the volume is free again.
    let third = run_image(&image, &["--volume", &spec], &["volume-info"]);
    assert_eq!(third.status, Some(0), "{}", third.stderr);
}

/// The hostile guest's malformed batches: each stops the guest with a one-line report, and the
/// volume's bytes are untouched.
#[test]
fn malformed_block_batches_stop_the_guest_and_touch_nothing() {
    require_kvm();
    let dir = scratch();
    let path = file(&dir, "target.img");
    std::fs::write(&path, vec![0x5a; 64 << 10]).unwrap();
    let image = guest_image("tests/guests/hostile");
    let cases = [
        ("block-past-the-end", "outside the volume of 128 sectors"),
        ("block-sector-overflow", "outside the volume"),
        ("block-buffer-outside-memory", "its buffer is not in the guest's memory"),
        ("block-read-into-text", "its buffer is not in the guest's memory"),
        ("block-bad-op", "unknown operation"),
        ("block-huge-request", "sector count not in 1..=2048"),
        ("block-huge-batch", "100000 requests in one batch; at most 256"),
    ];
    let spec = volume_arg(&path, "");
    for (mode, needle) in cases {
        let run = run_image(&image, &["--timeout", "10", "--volume", &spec], &[mode]);
        assert_eq!(run.status, Some(139), "{mode}: {} {}", run.stdout, run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{mode}: {:?}", run.stderr);
        assert!(lines[0].contains(needle), "{mode}: {:?} lacks {needle:?}", lines[0]);
        assert!(!run.stdout.contains("the monitor served"), "{mode}: {}", run.stdout);
    }
    assert!(std::fs::read(&path).unwrap().iter().all(|b| *b == 0x5a), "the volume was touched");
    // Without a volume, the Block hypercall itself is refused.
    let run = run_image(&image, &["--timeout", "10"], &["block-bad-op"]);
    assert_eq!(run.status, Some(139));
    assert!(run.stderr.contains("hypercall Block without a volume"), "{}", run.stderr);
}
