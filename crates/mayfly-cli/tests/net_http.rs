//! HTTP unikernels behind `--publish`: http-hello and the kv store, real HTTP over loopback.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn serve(example: &str) -> Running {
    Running::start(&guest_image(example), &["--publish", "0:80", "--timeout", "120"], &[])
}

#[test]
fn http_hello_answers_and_404s_other_paths() {
    let server = serve("examples/http-hello");
    let reply = http(server.addr, "GET", "/", b"");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, b"Hello from a Mayfly unikernel!\n");
    assert!(reply.head.contains("Content-Type: text/plain"), "{}", reply.head);
    assert_eq!(http(server.addr, "GET", "/hello?x=1", b"").status, 200);
    assert_eq!(http(server.addr, "GET", "/nope", b"").status, 404);
    assert_eq!(http(server.addr, "POST", "/", b"x").status, 405);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = serve("examples/http-hello");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..200 {
        let reply = http_exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.head.contains("Connection: keep-alive"));
    }
    // Two pipelined requests in one write get two answers, in order.
    stream.write_all(b"GET /hello HTTP/1.1\r\n\r\nGET /missing HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(http_exchange(&mut stream, b"").unwrap().status, 200);
    assert_eq!(http_exchange(&mut stream, b"").unwrap().status, 404);
}

/// CPU time (user + system, which includes the guest's) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the monitor runs");
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_monitor_busy_polls_only_while_traffic_flows() {
    let server = serve("examples/http-hello");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A burst of back-to-back requests: the monitor busy-polls between them.
    for _ in 0..500 {
        let reply = http_exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(reply.status, 200);
    }
    // Then silence, with the connection still open: the monitor must sleep, not spin. Two
    // seconds of spinning would be ~200 ticks; sleeping costs none.
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(server.pid()) - before;
    assert!(spent <= 5, "an idle monitor used {spent} ticks of CPU in 2 s");
    // And it still answers at once.
    let reply = http_exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(reply.status, 200);
}

#[test]
fn kv_stores_returns_lists_and_deletes_values() {
    let server = serve("examples/kv");
    let addr = server.addr;
    assert_eq!(http(addr, "GET", "/kv/colour", b"").status, 404);
    assert_eq!(http(addr, "PUT", "/kv/colour", br#"{"name":"blue"}"#).status, 201);
    assert_eq!(http(addr, "PUT", "/kv/size", b"42").status, 201);
    let got = http(addr, "GET", "/kv/colour", b"");
    assert_eq!((got.status, got.body.as_slice()), (200, br#"{"name":"blue"}"#.as_slice()));
    assert_eq!(http(addr, "PUT", "/kv/colour", br#""red""#).status, 204);
    assert_eq!(http(addr, "GET", "/kv/colour", b"").body, br#""red""#);
    assert_eq!(http(addr, "GET", "/kv", b"").body, br#"{"keys":["colour","size"]}"#);
    assert_eq!(http(addr, "DELETE", "/kv/colour", b"").status, 204);
    assert_eq!(http(addr, "DELETE", "/kv/colour", b"").status, 404);
    assert_eq!(http(addr, "GET", "/kv", b"").body, br#"{"keys":["size"]}"#);
    assert_eq!(http(addr, "PUT", "/kv/bad", b"not json").status, 400);
}

#[test]
fn a_hundred_concurrent_http_clients_get_correct_answers() {
    let server = serve("examples/kv");
    let addr = server.addr;
    let clients: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let key = format!("/kv/client{i}");
                let value = format!("{{\"client\":{i}}}");
                assert_eq!(http(addr, "PUT", &key, value.as_bytes()).status, 201);
                let got = http(addr, "GET", &key, b"");
                assert_eq!(got.body, value.as_bytes(), "client {i}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let list = http(addr, "GET", "/kv", b"");
    let keys = String::from_utf8(list.body).unwrap();
    assert_eq!(keys.matches("client").count(), 100, "{keys}");
}

#[test]
fn malformed_and_oversized_requests_get_the_right_status() {
    let server = serve("examples/http-hello");
    let exchange = |request: &[u8]| {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        http_exchange(&mut stream, request).expect("a response").status
    };
    assert_eq!(exchange(b"GARBAGE\r\n\r\n"), 400);
    assert_eq!(exchange(b"GET / HTTP/1.1\r\nContent-Length: zebra\r\n\r\n"), 400);
    let huge_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(exchange(huge_header.as_bytes()), 431);
    assert_eq!(exchange(b"POST / HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n"), 413);
    assert_eq!(exchange(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
    // The server survives all of that.
    assert_eq!(http(server.addr, "GET", "/", b"").status, 200);
}

#[test]
fn chunked_request_bodies_are_decoded() {
    let server = serve("examples/kv");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = b"PUT /kv/chunky HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
    assert_eq!(http_exchange(&mut stream, request).unwrap().status, 201);
    assert_eq!(http(server.addr, "GET", "/kv/chunky", b"").body, br#"{"a":1}"#);
}

#[test]
fn a_client_that_sends_nothing_is_timed_out() {
    let server = serve("examples/http-hello");
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an idle connection is closed without a response");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(25), "{waited:?}");
}

#[test]
fn a_client_that_stalls_mid_request_gets_408() {
    let server = serve("examples/http-hello");
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let reply = http_exchange(&mut stalled, b"GET / HTTP/1.1\r\nHost: x\r\n").expect("a response");
    assert_eq!(reply.status, 408);
}
