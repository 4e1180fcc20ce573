//! A JSON key-value store over HTTP:
//! `PUT /kv/<key>` (a JSON body) stores, `GET /kv/<key>` returns it, `DELETE /kv/<key>` removes
//! it, `GET /kv` lists the keys. `mayfly run examples/kv --publish 8080:80`.
//!
//! With a volume (`--volume kv.img:size=64M`, or `mayfly serve`'s built-in configuration) the
//! data lives in the library OS's crash-safe store on it: a `PUT` or `DELETE` is answered only
//! once it is durable, and the data outlives the instance. Without one it lives in memory.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;
use mayfly::block;
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

/// Where the entries live.
enum Entries {
    /// In memory: gone with the instance.
    Memory(BTreeMap<String, Vec<u8>>),
    /// In the crash-safe store on the volume.
    Volume(block::Store<block::Volume>),
}

type Store = Rc<RefCell<Entries>>;

impl Entries {
    fn open() -> Entries {
        if block::Volume::attached().is_none() {
            return Entries::Memory(BTreeMap::new());
        }
        match block::open_store() {
            Ok(store) => Entries::Volume(store),
            Err(e) => panic!("kv: cannot open the store on the volume: {e}"),
        }
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Entries::Memory(map) => map.get(key).cloned(),
            Entries::Volume(store) => store.get(key.as_bytes()).map(<[u8]>::to_vec),
        }
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Entries::Memory(map) => map.keys().cloned().collect(),
            Entries::Volume(store) => {
                store.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect()
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Entries::Memory(map) => map.len(),
            Entries::Volume(store) => store.len(),
        }
    }

    /// Stores durably; whether the key is new.
    fn put(&mut self, key: &str, value: Vec<u8>) -> Result<bool, block::StoreError> {
        match self {
            Entries::Memory(map) => Ok(map.insert(key.to_string(), value).is_none()),
            Entries::Volume(store) => {
                let created = store.get(key.as_bytes()).is_none();
                store.put(key.as_bytes(), &value)?;
                Ok(created)
            }
        }
    }

    /// Removes durably; whether the key was there.
    fn delete(&mut self, key: &str) -> Result<bool, block::StoreError> {
        match self {
            Entries::Memory(map) => Ok(map.remove(key).is_some()),
            Entries::Volume(store) => store.delete(key.as_bytes()),
        }
    }
}

async fn main() -> Result<(), NetError> {
    let port = mayfly::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(80);
    let store: Store = Rc::new(RefCell::new(Entries::open()));
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
                let keys: Vec<String> = store.borrow().keys();
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
            Some(value) => {
                Response::new(200).with_header("Content-Type", "application/json").with_body(value)
            }
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
            if store.get(key).is_none() && store.len() >= MAX_KEYS {
                return Response::text(507, "the store is full\n");
            }
            match store.put(key, request.body.clone()) {
                Ok(created) => Response::new(if created { 201 } else { 204 }),
                Err(e) => Response::text(507, &format!("not stored: {e}\n")),
            }
        }
        "DELETE" => match store.borrow_mut().delete(key) {
            Ok(true) => Response::new(204),
            Ok(false) => Response::text(404, "no such key\n"),
            Err(e) => Response::text(500, &format!("not deleted: {e}\n")),
        },
        _ => Response::text(405, "method not allowed\n").with_header("Allow", "GET, PUT, DELETE"),
    }
}
