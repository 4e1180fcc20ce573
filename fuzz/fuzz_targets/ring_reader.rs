//! cargo-fuzz target: `cargo +nightly fuzz run ring_reader` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mayfly_fuzz::boundary::rings::check_bytes(data);
});
