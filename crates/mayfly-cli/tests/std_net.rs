//! std networking beyond TCP in unikernels: UDP sockets (datagrams between the program's own
//! sockets on 127.0.0.1) and poll(2) on sockets. tests/guests/std-net-probe is built natively
//! and as a Mayfly image; both must print the same.

mod common;

use common::*;
use std::process::Command;

/// Runs `mode` natively and as a unikernel; asserts both succeed with the same output, which
/// contains `expected`.
fn same_as_native(mode: &str, expected: &str) {
    let native: Run = Command::new(native_binary("tests/guests/std-net-probe", "std-net-probe"))
        .arg(mode)
        .output()
        .expect("run natively")
        .into();
    assert_eq!(native.status, Some(0), "native stderr: {}", native.stderr);
    assert!(native.stdout.contains(expected), "{}", native.stdout);
    require_kvm();
    let unikernel =
        run_image(&guest_image("tests/guests/std-net-probe"), &["--timeout", "10"], &[mode]);
    assert_eq!(unikernel.stdout, native.stdout, "unikernel stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0), "stderr: {}", unikernel.stderr);
}

#[test]
fn std_udp_over_loopback_matches_native() {
    same_as_native("udp", "100 datagrams in order: true");
}

#[test]
fn poll_on_sockets_waits_for_readiness_like_native() {
    same_as_native("poll", "woken by another thread: (1, 1)");
}
