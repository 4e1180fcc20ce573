//! An HTTP hello service: `GET /` (or `/hello`) answers a greeting (the `GREETING` environment
//! entry, if set); other paths get 404.
//! `mayfly run examples/http-hello --publish 8080:80`, then `curl http://127.0.0.1:8080/`.
#![no_std]
#![no_main]

use mayfly::http::{self, Request, Response};
use mayfly::net::NetError;
use mayfly::prelude::*;

mayfly::main!(async main);

async fn main() -> Result<(), NetError> {
    let port = mayfly::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(80);
    http::serve(port, handle).await
}

async fn handle(request: Request) -> Response {
    match (request.method.as_str(), request.path_without_query()) {
        ("GET" | "HEAD", "/" | "/hello") => match mayfly::env::var("GREETING") {
            Some(greeting) => Response::text(200, &format!("{greeting}\n")),
            None => Response::text(200, "Hello from a Mayfly unikernel!\n"),
        },
        (_, "/" | "/hello") => {
            Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD")
        }
        _ => Response::text(404, "not found\n"),
    }
}
