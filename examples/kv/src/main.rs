//! An in-memory JSON key-value store over HTTP:
//! `PUT /kv/<key>` (a JSON body) stores, `GET /kv/<key>` returns it, `DELETE /kv/<key>` removes
//! it, `GET /kv` lists the keys. `mayfly run examples/kv --publish 8080:80`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;
use mayfly::http::{self, Request, Response};
use mayfly::net::NetError;
use mayfly::prelude::*;

mayfly::main!(async main);

/// Longest key, in bytes.
const MAX_KEY: usize = 256;
/// Largest value, in bytes.
const MAX_VALUE: usize = 64 * 1024;
/// Most keys stored.
const MAX_KEYS: usize = 10_000;

type Store = Rc<RefCell<BTreeMap<String, Vec<u8>>>>;

async fn main() -> Result<(), NetError> {
    let port = mayfly::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(80);
    let store: Store = Rc::default();
    http::serve(port, move |request| {
        let store = store.clone();
        async move { handle(&store, request) }
    })
    .await
}

fn json(status: u16, value: &serde_json::Value) -> Response {
    Response::json(status, value).unwrap_or_else(|_| Response::text(500, "encoding failed\n"))
}

fn handle(store: &Store, request: Request) -> Response {
    let path = request.path_without_query();
    if path == "/kv" || path == "/kv/" {
        return match request.method.as_str() {
            "GET" => {
                let keys: Vec<String> = store.borrow().keys().cloned().collect();
                json(200, &serde_json::json!({ "keys": keys }))
            }
            _ => Response::text(405, "method not allowed\n").with_header("Allow", "GET"),
        };
    }
    let Some(key) = path.strip_prefix("/kv/") else {
        return Response::text(404, "not found: try /kv or /kv/<key>\n");
    };
    if key.is_empty() || key.len() > MAX_KEY || key.contains('/') {
        return Response::text(400, "keys are 1 to 256 bytes without '/'\n");
    }
    match request.method.as_str() {
        "GET" => match store.borrow().get(key) {
            Some(value) => Response::new(200)
                .with_header("Content-Type", "application/json")
                .with_body(value.clone()),
            None => Response::text(404, "no such key\n"),
        },
        "PUT" => {
            if request.body.len() > MAX_VALUE {
                return Response::text(413, "values are at most 64 KiB\n");
            }
            if serde_json::from_slice::<serde_json::Value>(&request.body).is_err() {
                return Response::text(400, "the body must be JSON\n");
            }
            let mut store = store.borrow_mut();
            if !store.contains_key(key) && store.len() >= MAX_KEYS {
                return Response::text(507, "the store is full\n");
            }
            let created = store.insert(key.to_string(), request.body).is_none();
            Response::new(if created { 201 } else { 204 })
        }
        "DELETE" => match store.borrow_mut().remove(key) {
            Some(_) => Response::new(204),
            None => Response::text(404, "no such key\n"),
        },
        _ => Response::text(405, "method not allowed\n").with_header("Allow", "GET, PUT, DELETE"),
    }
}
