//! The `tasks` mode: exercises the executor's APIs that no example uses (`block_on`,
//! `task::timeout`, `task::sleep_until`, `task::yield_now`, `spawn`) and prints one line per
//! check with the figures a test asserts on.

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use mayfly::prelude::*;
use mayfly::task;
use mayfly::time::Instant;

/// Runs every check; returns 0 when all held, 1 otherwise (each prints its figures either way).
pub fn run() -> i32 {
    let results = [block_on_value(), timeouts(), sleeps_until(), yields()];
    i32::from(results.contains(&false))
}

/// `block_on` returns the future's value.
fn block_on_value() -> bool {
    let value = mayfly::block_on(async { 6 * 7 });
    println!("tasks: block_on returned {value}");
    value == 42
}

/// `timeout` gives the value of a future that finishes in time, and `Elapsed` after its
/// duration for one that does not.
fn timeouts() -> bool {
    let (quick, slow, waited) = mayfly::block_on(async {
        let quick = task::timeout(Duration::from_secs(5), async { 7 }).await;
        let start = Instant::now();
        let slow =
            task::timeout(Duration::from_millis(50), task::sleep(Duration::from_secs(60))).await;
        (quick, slow, start.elapsed())
    });
    let ms = waited.as_millis();
    println!("tasks: timeout quick {quick:?}, slow {slow:?} after {ms} ms");
    quick == Ok(7) && slow == Err(task::Elapsed) && (50..2000).contains(&ms)
}

/// `sleep_until` completes at (not before) its deadline.
fn sleeps_until() -> bool {
    let start = Instant::now();
    let until = start.saturating_add(Duration::from_millis(40));
    mayfly::block_on(task::sleep_until(until));
    let early = Instant::now() < until;
    let ms = start.elapsed().as_millis();
    println!("tasks: sleep_until woke after {ms} ms, early {early}");
    !early && ms < 2000
}

/// `yield_now` lets a spawned task run before the yielding one goes on.
fn yields() -> bool {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let seen = mayfly::block_on(async {
        mayfly::spawn(async {
            COUNTER.fetch_add(1, Ordering::Relaxed);
        });
        let before = COUNTER.load(Ordering::Relaxed);
        task::yield_now().await;
        task::yield_now().await;
        (before, COUNTER.load(Ordering::Relaxed))
    });
    println!("tasks: yield_now counter before {}, after {}", seen.0, seen.1);
    seen == (0, 1)
}
