//! Files packed into a std image (`[package.metadata.mayfly] files`): tests/guests/std-files
//! reads its crate's files natively (from the crate's directory) and, unchanged, from the
//! read-only tree packed into its image; writing them fails with EROFS while /tmp stays
//! writable.

mod common;

use common::*;
use std::process::Command;

#[test]
fn packed_files_read_like_the_crates_files_natively() {
    let native: Run = Command::new(native_binary("tests/guests/std-files", "std-files"))
        .arg("read")
        .current_dir(repo().join("tests/guests/std-files"))
        .output()
        .expect("run natively")
        .into();
    assert_eq!(native.status, Some(0), "native stderr: {}", native.stderr);
    assert!(native.stdout.contains("big.txt: 70000 bytes"), "{}", native.stdout);
    require_kvm();
    let unikernel =
        run_image(&guest_image("tests/guests/std-files"), &["--timeout", "10"], &["read"]);
    assert_eq!(unikernel.stdout, native.stdout, "unikernel stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0), "stderr: {}", unikernel.stderr);
}

#[test]
fn packed_files_are_read_only_and_tmp_stays_writable() {
    require_kvm();
    let run = run_image(&guest_image("tests/guests/std-files"), &["--timeout", "10"], &["write"]);
    let erofs = r#"Err("Read-only file system (os error 30)")"#;
    let expected = format!(
        "write static/hello.txt: {erofs}\ncreate static/new.txt: {erofs}\n\
         remove notes.txt: {erofs}\nrename static/hello.txt: {erofs}\n\
         static/hello.txt: hello from a packed file\n/tmp: the writable tree stays\n"
    );
    assert_eq!(run.stdout, expected, "stderr: {}", run.stderr);
    assert_eq!(run.status, Some(0));
}

#[test]
fn a_packed_path_outside_the_crate_or_missing_is_refused_in_one_line() {
    for (files, needle) in [
        (r#"["../outside"]"#, r#"files: "../outside" leaves the crate"#),
        (r#"["static/"]"#, r#"files: "static/" does not exist in"#),
        (r#""static/""#, "files must be a list"),
    ] {
        let dir = guest_target_dir().join(format!("bad-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"bad-files\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                 [workspace]\n\n[package.metadata.mayfly]\nfiles = {files}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        let out = mayfly()
            .arg("build")
            .arg(&dir)
            .arg("--target-dir")
            .arg(guest_target_dir())
            .output()
            .expect("run mayfly build");
        let _ = std::fs::remove_dir_all(&dir);
        let run = Run::from(out);
        assert_ne!(run.status, Some(0), "{files}");
        run.assert_one_line_error(needle);
    }
}

/// `mayfly run <crate dir> [options] -- alloc <mib>` (built into the tests' guest target dir).
fn run_crate_alloc(options: &[&str], mib: &str) -> Run {
    require_kvm();
    mayfly()
        .arg("run")
        .arg(repo().join("tests/guests/std-files"))
        .args(options)
        .args(["--timeout", "10", "--", "alloc", mib])
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .output()
        .expect("run mayfly run")
        .into()
}

#[test]
fn a_crates_memory_mib_is_its_default_guest_memory() {
    // tests/guests/std-files asks for 16 MiB.
    let small = run_crate_alloc(&[], "4");
    assert_eq!((small.status, small.stdout.as_str()), (Some(0), "allocated 4 MiB\n"));
    let too_big = run_crate_alloc(&[], "32");
    assert_eq!(too_big.status, Some(101), "16 MiB cannot hold 32: {}", too_big.stdout);
    assert!(too_big.stdout.contains("memory allocation of 33554432 bytes failed"));
    let given = run_crate_alloc(&["--mem", "64"], "32");
    assert_eq!((given.status, given.stdout.as_str()), (Some(0), "allocated 32 MiB\n"));

    let dir = guest_target_dir().join(format!("bad-memory-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"bad-memory\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [workspace]\n\n[package.metadata.mayfly]\nmemory_mib = 3\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let run: Run = mayfly().arg("run").arg(&dir).output().expect("run mayfly run").into();
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(run.status, Some(0));
    run.assert_one_line_error("memory_mib = 3 in");
}
