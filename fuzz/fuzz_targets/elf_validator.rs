//! cargo-fuzz target: `cargo +nightly fuzz run elf_validator` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mayfly_fuzz::boundary::elf::check_bytes(data);
});
