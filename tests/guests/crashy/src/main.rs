//! A test guest for `mayfly serve`: `GET /` answers "ok", `GET /slow?ms=N` answers "slow" after
//! N ms (other tasks keep running), and `GET /crash` writes through a null pointer, so the guest
//! faults and its monitor exits. Port 81 serves the hostile routes of [`raw`] (responses that
//! never end, trickle, stall, hang up; console output without newlines).
#![no_std]
#![no_main]

extern crate alloc;

mod raw;

use core::time::Duration;
use mayfly::http::{self, Request, Response};
use mayfly::net::NetError;

mayfly::main!(async main);

/// The longest `/slow` sleep, ms.
const MAX_SLOW_MS: u64 = 60_000;

async fn main() -> Result<(), NetError> {
    mayfly::task::spawn(async {
        if let Err(e) = raw::serve().await {
            mayfly::println!("crashy: port {} failed: {e:?}", raw::PORT);
        }
    });
    http::serve(80, handle).await
}

/// The value of `name` in a query string `a=1&b=2`.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

async fn handle(request: Request) -> Response {
    match (request.method.as_str(), request.path_without_query()) {
        ("GET" | "HEAD", "/") => Response::text(200, "ok\n"),
        ("GET", "/slow") => {
            let ms = request
                .query()
                .and_then(|q| query_param(q, "ms"))
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(MAX_SLOW_MS);
            mayfly::task::sleep(Duration::from_millis(ms)).await;
            Response::text(200, "slow\n")
        }
        ("GET", "/crash") => {
            // A volatile write through a null pointer must fault: the monitor ends the guest.
            let null = core::hint::black_box(0usize) as *mut u64;
            // SAFETY: none, on purpose: this write faults and the guest never resumes.
            unsafe { null.write_volatile(1) };
            Response::text(500, "still alive after a null write?\n")
        }
        _ => Response::text(404, "not found\n"),
    }
}
