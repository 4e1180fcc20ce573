//! Replays each fuzz target's corpus on the stable toolchain: a generated corpus (deterministic
//! pseudo-random inputs, the same decoders the fuzzer drives) plus whatever `cargo fuzz` saved
//! in fuzz/corpus/<target>/ and fuzz/artifacts/<target>/ (crashes stay reproducible here).
//! `cargo test` in fuzz/ runs it; no KVM needed.

use mayfly_fuzz::boundary::{self, elf, hypercall, rings};
use std::collections::BTreeMap;
use std::path::Path;

/// Inputs saved by `cargo fuzz` for `target`, if any.
fn saved(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                inputs.push(bytes);
            }
        }
    }
    inputs
}

fn replay(target: &str, seed: u64, max_len: usize, check: fn(&[u8]) -> String) {
    let mut inputs = boundary::inputs(seed, 5000, max_len);
    let saved = saved(target);
    let saved_count = saved.len();
    inputs.extend(saved);
    let mut paths: BTreeMap<String, usize> = BTreeMap::new();
    for input in &inputs {
        *paths.entry(check(input)).or_default() += 1;
    }
    eprintln!("{target}: {} inputs ({saved_count} saved by cargo fuzz): {paths:?}", inputs.len());
    assert!(paths.len() >= 5, "{target}: the corpus takes too few paths: {paths:?}");
}

#[test]
fn elf_validator_corpus() {
    replay("elf_validator", 11, 300, elf::check_bytes);
}

#[test]
fn hypercall_dispatch_corpus() {
    replay("hypercall_dispatch", 12, 160, hypercall::check_bytes);
}

#[test]
fn ring_reader_corpus() {
    replay("ring_reader", 13, 400, rings::check_bytes);
}
