//! Property tests of the guest boundary: whatever a guest writes into its memory, the hypercall
//! dispatch, the NIC's rings and the ELF validator never panic, never act outside guest memory,
//! and give the answer their contracts promise. Cases are structured (valid headers with fuzzed
//! fields, argument structures placed at every edge) and decoded from bytes by `boundary`, which
//! the cargo-fuzz targets in fuzz/ share. `cargo test` runs them on stable; they need no KVM.

mod boundary;

use proptest::prelude::*;
use std::collections::BTreeMap;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every hypercall number, store width and argument placement: the stop or answer the
    /// oracle demands, and no guest memory changed but a Wait's OUT fields.
    #[test]
    fn hypercall_dispatch_answers_every_input_as_documented(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        boundary::hypercall::check_bytes(&bytes);
    }

    /// Any counters and slot contents in the rings: no frame longer than a slot, no count above
    /// the ring's size, no write outside the rings.
    #[test]
    fn rings_survive_any_guest_writes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        boundary::rings::check_bytes(&bytes);
    }

    /// Valid ELF headers with fuzzed program headers: no panic, an accepted image is sound, and
    /// an honestly laid out file gets the oracle's verdict.
    #[test]
    fn image_validation_judges_any_program_headers(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        boundary::elf::check_bytes(&bytes);
    }

    /// Any bytes at all as an image: validation answers and never panics.
    #[test]
    fn image_validation_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = mayfly_monitor::Image::parse(&bytes);
    }
}

proptest! {
    // Each case maps 8 MiB of guest memory and writes a volume file: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any batch of volume requests: a malformed one stops the guest and touches nothing, a
    /// valid one does what a model of the file does.
    #[test]
    fn block_batches_are_served_or_refused_as_documented(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        boundary::block::check_bytes(&bytes);
    }
}

/// Runs `check` over `count` pseudo-random inputs and counts the paths taken.
fn paths(
    seed: u64,
    count: usize,
    max_len: usize,
    check: fn(&[u8]) -> String,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for input in boundary::inputs(seed, count, max_len) {
        *seen.entry(check(&input)).or_default() += 1;
    }
    eprintln!("paths taken: {seen:?}");
    seen
}

fn assert_reached(seen: &BTreeMap<String, usize>, expected: &[&str]) {
    let missing: Vec<&&str> = expected.iter().filter(|p| !seen.contains_key(**p)).collect();
    assert!(missing.is_empty(), "paths never taken: {missing:?}; taken: {seen:?}");
}

/// The generated cases reach every check of the program-header loop, and accepted images.
#[test]
fn image_cases_reach_every_check() {
    let seen = paths(1, 3000, 300, boundary::elf::check_bytes);
    assert_reached(
        &seen,
        &[
            "accepted",
            "not static",
            "not executable",
            "wrong arch",
            "no manifest",
            "abi mismatch",
            "overlaps reserved",
            "not identity-mapped",
            "bad segment",
            "overlapping segments",
            "writable and executable page",
            "bad entry",
            "truncated",
        ],
    );
    assert!(seen["accepted"] >= 100, "too few accepted images: {seen:?}");
}

/// The generated cases reach every hypercall's argument parsing and every verdict.
#[test]
fn hypercall_cases_reach_every_verdict() {
    let seen = paths(2, 3000, 160, boundary::hypercall::check_bytes);
    assert_reached(
        &seen,
        &[
            "no hypercall",
            "bad store width",
            "console flush",
            "exit: bad arguments",
            "exit",
            "panic",
            "panic: bad message",
            "exit: unknown reason",
            "wait: bad arguments",
            "wait: arguments in read-only memory",
            "wait: forever without a device",
            "wait: answered",
            "wait: run deadline",
        ],
    );
    assert!(seen["exit"] + seen["panic"] + seen["wait: answered"] >= 300, "{seen:?}");
}

/// The generated block cases are served and refused both ways.
#[test]
fn block_cases_reach_every_path() {
    let seen = paths(4, 400, 200, boundary::block::check_bytes);
    assert_reached(&seen, &["refused", "served", "served, write refused (read-only)"]);
    assert!(seen["served"] >= 20, "too few valid batches: {seen:?}");
}

/// The generated ring cases reach rejected and accepted rings both ways.
#[test]
fn ring_cases_reach_every_path() {
    let seen = paths(3, 2000, 400, boundary::rings::check_bytes);
    assert_reached(
        &seen,
        &["tx rejected", "tx empty, rx pushed", "tx frames, rx pushed", "tx frames, rx not pushed"],
    );
}
