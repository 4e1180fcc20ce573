//! Library OS APIs that no example guest uses, exercised by the probe guest on real KVM:
//! `block_on`, `task::timeout`, `task::sleep_until`, `task::yield_now`, `spawn`, `env::var`
//! and the `MAYFLY_LOG` level of the `log` backend.

mod common;

use common::*;

fn probe_with(options: &[&str], args: &[&str]) -> Run {
    require_kvm();
    let mut all = vec!["--timeout", "20"];
    all.extend_from_slice(options);
    run_image(&guest_image("tests/guests/probe"), &all, args)
}

#[test]
fn block_on_timeout_sleep_until_and_yield_now_behave_as_documented() {
    let run = probe_with(&[], &["tasks"]);
    let out = &run.stdout;
    assert!(out.contains("tasks: block_on returned 42\n"), "{out}");
    assert!(out.contains("tasks: timeout quick Ok(7), slow Err(Elapsed) after "), "{out}");
    let waited: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("tasks: timeout quick Ok(7), slow Err(Elapsed) after "))
        .and_then(|rest| rest.strip_suffix(" ms")?.parse().ok())
        .expect("the timeout's wait in ms");
    assert!((50..2000).contains(&waited), "a 50 ms timeout fired after {waited} ms");
    let woke: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("tasks: sleep_until woke after "))
        .and_then(|rest| rest.strip_suffix(" ms, early false")?.parse().ok())
        .unwrap_or_else(|| panic!("sleep_until woke early or not at all: {out}"));
    assert!((40..2000).contains(&woke), "sleep_until 40 ms woke after {woke} ms");
    assert!(out.contains("tasks: yield_now counter before 0, after 1\n"), "{out}");
    assert_eq!(run.status, Some(0), "stdout {out} stderr {}", run.stderr);
}

#[test]
fn env_var_finds_an_entry_and_reports_a_missing_one() {
    let run = probe_with(&["--env", "COLOUR=deep blue", "--env", "EMPTY="], &["env-var", "COLOUR"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("env-var COLOUR: \"deep blue\"\n"), "{}", run.stdout);
    let run = probe_with(&["--env", "EMPTY="], &["env-var", "EMPTY"]);
    assert!(run.stdout.contains("env-var EMPTY: \"\"\n"), "{}", run.stdout);
    // An entry that was not given is unset.
    let run = probe_with(&["--env", "A=1"], &["env-var", "COLOUR"]);
    assert!(run.stdout.contains("env-var COLOUR: unset\n"), "{}", run.stdout);
}

const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// The log levels the probe's `log` mode printed, in order.
fn logged_levels(options: &[&str]) -> Vec<String> {
    let run = probe_with(options, &["log"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    run.stdout
        .lines()
        .filter(|l| l.ends_with(" line") && l.contains("] log "))
        .filter_map(|l| {
            let level = l.split_whitespace().find(|w| LEVELS.contains(w))?;
            Some(level.to_owned())
        })
        .collect()
}

#[test]
fn mayfly_log_sets_the_log_level() {
    let levels = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(logged_levels(&[]), levels(&["ERROR", "WARN", "INFO"]), "default: info");
    assert_eq!(logged_levels(&["--env", "MAYFLY_LOG=warn"]), levels(&["ERROR", "WARN"]));
    assert_eq!(
        logged_levels(&["--env", "MAYFLY_LOG=trace"]),
        levels(&["ERROR", "WARN", "INFO", "DEBUG", "TRACE"])
    );
    assert_eq!(logged_levels(&["--env", "MAYFLY_LOG=off"]), Vec::<String>::new());
    // RUST_LOG is the fallback; MAYFLY_LOG wins over it.
    assert_eq!(logged_levels(&["--env", "RUST_LOG=error"]), levels(&["ERROR"]));
    assert_eq!(
        logged_levels(&["--env", "RUST_LOG=error", "--env", "MAYFLY_LOG=debug"]),
        levels(&["ERROR", "WARN", "INFO", "DEBUG"])
    );
}
