//! cargo-fuzz target: `cargo +nightly fuzz run hypercall_dispatch` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mayfly_fuzz::boundary::hypercall::check_bytes(data);
});
