//! The crates' structure: the `mayfly` binary runs every monitor process, so it must not link an
//! async runtime, an HTTP server or the gateway (those live in the `mayfly-serve` binary, the
//! benchmarks in `mayfly-bench`); and every crate opens with its sentence of docs/design.md's map.

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

/// The leading `//!` paragraph of a file, joined into one line.
fn opening(text: &str) -> String {
    text.lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_crate_opens_with_its_sentence_of_the_map() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let design = std::fs::read_to_string(repo.join("docs/design.md")).expect("docs/design.md");
    let map = design.split("\n## Map\n").nth(1).expect("a `## Map` section");
    let map = map.split("\n## ").next().unwrap_or_default();
    // Rows: | `crate` | sentence | process | boundary |
    let rows: Vec<(&str, &str)> = map
        .lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix("| `")?.split(" | ");
            let krate = cells.next()?.strip_suffix('`')?;
            Some((krate, cells.next()?))
        })
        .collect();
    let mut crates: Vec<String> = std::fs::read_dir(repo.join("crates"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("src/lib.rs").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    let mut mapped: Vec<String> = rows.iter().map(|(k, _)| (*k).to_owned()).collect();
    mapped.sort();
    assert_eq!(
        mapped, crates,
        "the map's crates differ from crates/*: add a row for each new crate to docs/design.md's \
         Map, and open its lib.rs with that sentence"
    );
    for (krate, sentence) in rows {
        let lib =
            std::fs::read_to_string(repo.join("crates").join(krate).join("src/lib.rs")).unwrap();
        let opening = opening(&lib);
        assert!(
            opening.starts_with(sentence),
            "crates/{krate}/src/lib.rs does not open with its map sentence {sentence:?}: {opening:?}"
        );
    }
}
