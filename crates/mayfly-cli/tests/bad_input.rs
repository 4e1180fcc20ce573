//! Bad input to `mayfly run` and `mayfly build`: a one-line error, a non-zero exit, no panic.

mod common;

use common::*;
use std::path::PathBuf;

const EXIT_MAYFLY_ERROR: i32 = 125;

/// A scratch directory for this test binary.
fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a copy of the hello image with `patch` applied and returns its path.
fn patched_hello(name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(guest_image("examples/hello")).unwrap();
    patch(&mut bytes);
    let path = scratch("images").join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

const PHDR: usize = 64; // program headers follow the ELF header in images we build
const PHDR_SIZE: usize = 56;

fn run_fails(image: &std::path::Path, options: &[&str], needle: &str) {
    let run = run_image(image, options, &[]);
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR), "stderr: {}", run.stderr);
    run.assert_one_line_error(needle);
    assert!(run.stdout.is_empty(), "nothing was booted, nothing printed: {}", run.stdout);
}

#[test]
fn missing_file() {
    run_fails(&repo().join("no/such/image"), &[], "cannot read");
}

#[test]
fn directory_instead_of_file() {
    run_fails(&repo().join("crates"), &[], "is not a file");
}

#[test]
fn text_file_is_not_elf() {
    run_fails(&repo().join("Cargo.toml"), &[], "not an ELF file");
}

#[test]
fn empty_file_is_not_elf() {
    let path = scratch("images").join("empty");
    std::fs::write(&path, b"").unwrap();
    run_fails(&path, &[], "not an ELF file");
}

#[test]
fn host_executable_is_refused() {
    let exe = std::fs::canonicalize("/bin/true").unwrap();
    run_fails(&exe, &[], "position-independent or dynamic ELF");
}

#[test]
fn elf_for_another_architecture_is_refused() {
    let image = patched_hello("aarch64", |b| b[18..20].copy_from_slice(&183u16.to_le_bytes()));
    run_fails(&image, &[], "ELF for AArch64, not x86-64");
}

#[test]
fn segment_in_the_reserved_area_is_refused() {
    let image = patched_hello("reserved", |b| {
        put_u64(b, PHDR + 16, 0x1000); // p_vaddr of the text segment
        put_u64(b, PHDR + 24, 0x1000); // p_paddr
    });
    run_fails(&image, &[], "overlaps the monitor's reserved area");
}

#[test]
fn image_larger_than_memory_is_refused() {
    // Grow the data segment's bss to 100 MiB.
    let image = patched_hello("huge-bss", |b| put_u64(b, PHDR + 2 * PHDR_SIZE + 40, 100 << 20));
    run_fails(&image, &["--mem", "16"], "raise --mem");
}

#[test]
fn image_for_another_abi_version_is_refused() {
    let image = patched_hello("abi", |b| {
        let at = b.windows(8).position(|w| w == b"Mayfly\0\0").expect("manifest note") + 8;
        b[at..at + 4].copy_from_slice(&999u32.to_le_bytes());
    });
    run_fails(&image, &[], "built for Mayfly ABI version 999");
}

#[test]
fn memory_too_small_or_too_large_or_odd() {
    let hello = guest_image("examples/hello");
    run_fails(&hello, &["--mem", "2"], "too small");
    run_fails(&hello, &["--mem", "8192"], "too large");
    run_fails(&hello, &["--mem", "5"], "not a multiple of 2 MiB");
}

#[test]
fn bad_timeout_is_refused() {
    let hello = guest_image("examples/hello");
    run_fails(&hello, &["--timeout", "0"], "not a positive number of seconds");
}

#[test]
fn missing_kvm_device_says_how_to_fix() {
    let hello = guest_image("examples/hello");
    let run: Run = mayfly()
        .arg("run")
        .arg(&hello)
        .env("MAYFLY_KVM_DEVICE", "/nonexistent/kvm")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR));
    run.assert_one_line_error("/nonexistent/kvm does not exist");
}

#[test]
fn kvm_permission_denied_says_how_to_fix() {
    require_kvm();
    let hello = guest_image("examples/hello");
    // Run as `nobody`, who may not open /dev/kvm (needs root to switch users, as CI has).
    let run: Run = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mayfly"))
        .arg("run")
        .arg(&hello)
        .output()
        .expect("setpriv (util-linux) is needed for this test")
        .into();
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR), "{}", run.stderr);
    run.assert_one_line_error("permission denied opening /dev/kvm: add your user");
}

#[test]
fn build_of_a_crate_that_does_not_compile_shows_the_compiler_errors() {
    let dir = scratch("broken-guest");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let lib = repo().join("crates/mayfly");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nmayfly = {{ path = {:?} }}\n\n[workspace]\n",
            lib.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "#![no_std]\n#![no_main]\nmayfly::main!(main);\nfn main() { let x: u32 = \"not a number\"; }\n",
    )
    .unwrap();
    let run: Run = mayfly()
        .arg("build")
        .arg(&dir)
        .arg("--target-dir")
        .arg(guest_target_dir())
        .output()
        .unwrap()
        .into();
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR));
    assert!(run.stderr.contains("error[E0308]: mismatched types"), "{}", run.stderr);
    assert!(run.stderr.contains("src/main.rs:4"), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.starts_with("mayfly: error: building") && last.contains("failed"), "{last}");
}

#[test]
fn build_of_a_directory_without_a_crate_is_refused() {
    let dir = scratch("not-a-crate");
    let run: Run = mayfly().arg("build").arg(&dir).output().unwrap().into();
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR));
    run.assert_one_line_error("no Cargo.toml in");
}
