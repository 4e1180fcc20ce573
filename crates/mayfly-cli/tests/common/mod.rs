//! Helpers for the integration tests: build guests once, run the real `mayfly` binary on real
//! KVM, and inspect what it printed and how it exited.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The `mayfly` binary under test.
pub fn mayfly() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mayfly"))
}

/// Fails the test, saying why, when the machine has no usable KVM: these tests boot real
/// guests and are never skipped silently.
pub fn require_kvm() {
    let path = Path::new("/dev/kvm");
    assert!(
        path.exists(),
        "/dev/kvm is missing: Mayfly's integration tests boot real guests on KVM; run them on a \
         Linux host with KVM enabled"
    );
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(path) {
        panic!("/dev/kvm cannot be opened ({e}): run the tests as a user with access to it");
    }
}

/// The shared target directory for guest builds (so that the library OS compiles once).
pub fn guest_target_dir() -> PathBuf {
    repo().join("target/guests")
}

/// Builds the guest crate at `rel` (relative to the repository root) once per test binary,
/// returning its image path.
pub fn guest_image(rel: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(name, _)| name == rel) {
        return path.clone();
    }
    let out = mayfly()
        .arg("build")
        .arg(repo().join(rel))
        .arg("--target-dir")
        .arg(guest_target_dir())
        .output()
        .expect("run mayfly build");
    assert!(
        out.status.success(),
        "mayfly build {rel} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let path = PathBuf::from(stdout.lines().last().expect("build prints the image path"));
    assert!(path.is_file(), "build printed {path:?}, which is not a file");
    built.push((rel.to_owned(), path.clone()));
    path
}

/// Result of one `mayfly` invocation.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts that stderr is exactly one line mentioning `needle`, without a panic or backtrace.
    pub fn assert_one_line_error(&self, needle: &str) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got: {:?}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr {:?} lacks {needle:?}", self.stderr);
        assert!(!self.stderr.contains("panicked at"), "mayfly panicked: {}", self.stderr);
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "backtrace hint: {}", self.stderr);
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `mayfly run <image> <options> -- <guest_args>`.
pub fn run_image(image: &Path, options: &[&str], guest_args: &[&str]) -> Run {
    let mut cmd = mayfly();
    cmd.arg("run").arg(image).args(options);
    if !guest_args.is_empty() {
        cmd.arg("--").args(guest_args);
    }
    cmd.output().expect("run mayfly").into()
}

/// Boots the probe guest in `mode` (with a 10 s safety limit).
pub fn probe(args: &[&str]) -> Run {
    require_kvm();
    run_image(&guest_image("tests/guests/probe"), &["--timeout", "10"], args)
}
