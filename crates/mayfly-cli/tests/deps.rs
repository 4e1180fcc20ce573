//! The `mayfly` binary runs every monitor process: it must not link an async runtime, an HTTP
//! server or the gateway (those live in the `mayfly-serve` binary, the benchmarks in
//! `mayfly-bench`).

use std::path::Path;
use std::process::Command;

#[test]
fn the_mayfly_binary_links_no_tokio_hyper_or_gateway() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "mayfly-cli", "-e", "normal", "--prefix", "none"])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(tree.lines().any(|l| l.starts_with("mayfly-monitor ")), "an empty tree?\n{tree}");
    let forbidden: Vec<&str> = tree
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or_default();
            name.starts_with("tokio")
                || name.starts_with("hyper")
                || ["mayfly-serve", "mayfly-bench"].contains(&name)
        })
        .collect();
    assert!(forbidden.is_empty(), "the mayfly binary links {forbidden:?}");
}
