//! examples/axum-hello, an unchanged axum + tokio + serde JSON service: the unikernel answers
//! the same requests with the same responses as the program run natively on Linux, on one
//! keep-alive connection, and `mayfly serve` routes to it under a path prefix.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The native program, killed when dropped.
struct Native(std::process::Child);

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the native program on an ephemeral port and waits for its "listening" line.
fn start_native(args: &[&str]) -> (Native, std::net::SocketAddr) {
    let mut child = Command::new(native_binary("examples/axum-hello", "axum-hello"))
        .arg("0")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the native program");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read its stdout");
    let port: u16 = line
        .strip_prefix("listening on port ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (Native(child), std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Waits (at most 10 s) until the guest has printed `needle`.
fn wait_for_stdout(running: &Running, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !running.stdout().contains(needle) {
        assert!(std::time::Instant::now() < deadline, "no {needle:?} in {:?}", running.stdout());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The requests both programs answer, in order, on one connection.
fn requests(prefix: &str) -> Vec<Vec<u8>> {
    let post = |body: &str| {
        format!(
            "POST {prefix}/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let get = |path: &str| format!("GET {prefix}{path} HTTP/1.1\r\nHost: t\r\n\r\n");
    [get("/"), get("/json"), post(r#"{"text":"héllo, wörld"}"#), get("/missing"), post("{\"te")]
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

/// Sends every request on one keep-alive connection; each response as its status line and
/// headers (without `date`, which differs) and body.
fn exchange_all(addr: std::net::SocketAddr, prefix: &str) -> Vec<String> {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    requests(prefix)
        .iter()
        .map(|request| {
            let reply = http_exchange(&mut stream, request).expect("a response");
            let head: Vec<&str> = reply
                .head
                .lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
                .collect();
            format!("{}\n\n{}", head.join("\n"), String::from_utf8_lossy(&reply.body))
        })
        .collect()
}

#[test]
fn axum_hello_answers_like_native_on_one_keep_alive_connection() {
    let (_native, native_addr) = start_native(&[]);
    let native = exchange_all(native_addr, "");
    assert!(native[0].starts_with("HTTP/1.1 200 OK") && native[0].ends_with("hello from axum\n"));
    assert!(native[2].ends_with(r#"{"text":"héllo, wörld","length":12}"#), "{}", native[2]);
    assert!(native[3].starts_with("HTTP/1.1 404"), "{}", native[3]);
    assert!(native[4].starts_with("HTTP/1.1 400"), "{}", native[4]);

    let image = guest_image("examples/axum-hello");
    let running = Running::start(&image, &["--publish", "0:80", "--timeout", "30"], &[]);
    wait_for_stdout(&running, "listening on port 80\n");
    let unikernel = exchange_all(running.addr, "");
    assert_eq!(unikernel, native);
}

#[test]
fn mayfly_serve_routes_to_axum_hello_under_its_prefix() {
    let image = guest_image("examples/axum-hello");
    let config = guest_target_dir().join(format!("std-axum-serve-{}.toml", std::process::id()));
    // As the built-in configuration declares it (crates/mayfly-serve Config::builtin).
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
             [[service]]\nname = \"axum\"\nimage = \"{}\"\npath_prefix = \"/axum\"\n\
             guest_port = 80\nargs = [\"prefix=/axum\"]\n",
            image.display()
        ),
    )
    .unwrap();
    let mut cmd = mayfly();
    cmd.arg("serve").arg("--config").arg(&config);
    let (_serve, rest) = Running::spawn(cmd, "mayfly serve: gateway on http://");
    let _ = std::fs::remove_file(&config);
    let gateway: std::net::SocketAddr =
        rest.split_whitespace().next().and_then(|a| a.parse().ok()).expect("the gateway address");
    let (_native, native_addr) = start_native(&["prefix=/axum"]);
    let native = exchange_all(native_addr, "/axum");
    assert!(native[1].ends_with(r#"{"hello":"from axum","numbers":[1,2,3]}"#), "{}", native[1]);
    let served = exchange_all(gateway, "/axum");
    for (got, want) in served.iter().zip(&native) {
        let (got_status, got_body) = (got.lines().next(), got.split_once("\n\n").map(|p| p.1));
        let (want_status, want_body) = (want.lines().next(), want.split_once("\n\n").map(|p| p.1));
        assert_eq!((got_status, got_body), (want_status, want_body), "through the gateway: {got}");
    }
}
