//! The gateway's documented promises (README, `mayfly serve`), each shown on real KVM: the
//! request queue's limit and timeout, the crash-loop back-off's doubling and cap, the shutdown's
//! drain bound, redeploys, `min_instances`, per-service limits carried to the monitors, and the
//! default admin token.

mod common;

use common::gateway::*;
use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const NETPROBE: &str = "tests/guests/netprobe";

/// Runs a request on a thread; join it for the reply (`None`: no response).
fn request_in_background(
    addr: SocketAddr,
    path: &str,
) -> std::thread::JoinHandle<Option<(u16, Vec<u8>)>> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        http_request(addr, "GET", &path, &[], b"", Duration::from_secs(60))
            .map(|r| (r.status, r.body))
    })
}

/// Requests in flight on the service's instances.
fn in_flight(gw: &Gateway, service: &str) -> u64 {
    gw.instances(service).iter().filter_map(|i| i["in_flight"].as_u64()).sum()
}

/// A 503 with a `Retry-After` of at least one second.
fn assert_503_retry_after(reply: &HttpReply) {
    assert_eq!(reply.status, 503, "{reply:?}");
    let retry_after = header(reply, "retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {reply:?}");
}

#[test]
fn a_full_queue_gives_503_with_retry_after_at_once() {
    let gw = Gateway::start(
        "queue-full",
        &crashy_service(
            "max_instances = 1\nconcurrency = 1\nwarm_shells = 0\nqueue_limit = 1\n\
             queue_timeout_ms = 30000",
        ),
    );
    // One request holds the only instance; one waits in the queue, which is then full.
    let busy = request_in_background(gw.addr, "/slow?ms=4000");
    gw.wait_until("the slow request in flight", Duration::from_secs(20), || {
        in_flight(&gw, "crashy") == 1
    });
    let queued = request_in_background(gw.addr, "/");
    gw.wait_until("one request queued", Duration::from_secs(5), || {
        gw.service("crashy")["queued"] == 1
    });
    let started = Instant::now();
    let reply = gw.get("/");
    assert_503_retry_after(&reply);
    assert!(started.elapsed() < Duration::from_secs(1), "refused after {:?}", started.elapsed());
    assert_eq!(busy.join().unwrap(), Some((200, b"slow\n".to_vec())));
    assert_eq!(queued.join().unwrap(), Some((200, b"ok\n".to_vec())), "the queued one is served");
}

#[test]
fn a_wait_over_queue_timeout_ms_gives_503_with_retry_after() {
    let gw = Gateway::start(
        "queue-timeout",
        &crashy_service(
            "max_instances = 1\nconcurrency = 1\nwarm_shells = 0\nqueue_timeout_ms = 500",
        ),
    );
    let busy = request_in_background(gw.addr, "/slow?ms=4000");
    gw.wait_until("the slow request in flight", Duration::from_secs(20), || {
        in_flight(&gw, "crashy") == 1
    });
    let started = Instant::now();
    let reply = gw.get("/");
    let waited = started.elapsed();
    assert_503_retry_after(&reply);
    assert!(
        (Duration::from_millis(450)..Duration::from_millis(2500)).contains(&waited),
        "gave up after {waited:?}, not after queue_timeout_ms = 500"
    );
    assert_eq!(busy.join().unwrap(), Some((200, b"slow\n".to_vec())));
}

#[test]
fn crash_loop_back_off_doubles_from_1_s_up_to_30_s() {
    // Eight instances up front: ready instances still take requests while the service is
    // backed off, so eight crashes in a row happen within a second, each counted at once.
    let gw = Gateway::start(
        "backoff",
        &crashy_service("min_instances = 8\nmax_instances = 10\nconcurrency = 1\nwarm_shells = 0"),
    );
    gw.wait_until("eight instances ready", Duration::from_secs(60), || {
        gw.instances("crashy").iter().filter(|i| i["state"] == "ready").count() >= 8
    });
    let mut seen = Vec::new();
    for crash in 1..=8 {
        let reply = gw.get("/crash");
        assert_eq!(reply.status, 502, "crash {crash}: {reply:?}");
        seen.push(gw.service("crashy")["backoff_seconds"].as_f64().unwrap_or(-1.0));
    }
    // No back-off for two crashes; then 1, 2, 4, 8, 16 s, and 30 s rather than 32.
    let nominal = [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0];
    for (crash, (got, want)) in seen.iter().zip(nominal).enumerate() {
        // What is left of it, read a moment after the crash (slack for a loaded machine).
        let ok = if want == 0.0 { *got == 0.0 } else { *got > want * 0.6 && *got <= want };
        assert!(ok, "after crash {}: back-off {got} s, not {want} s (all: {seen:?})", crash + 1);
    }
}

#[test]
fn shutdown_waits_at_most_10_s_for_requests_in_flight() {
    let image = guest_image(CRASHY);
    let mut gw = Gateway::start("drain-bound", &crashy_service("warm_shells = 0"));
    let slow = request_in_background(gw.addr, "/slow?ms=30000");
    gw.wait_until("the slow request in flight", Duration::from_secs(20), || {
        in_flight(&gw, "crashy") == 1
    });
    let monitors = gw.monitors(&image);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    let started = Instant::now();
    let status = gw.terminate(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(status, Some(0), "{}", gw.stderr());
    assert!(
        (Duration::from_millis(9500)..Duration::from_secs(13)).contains(&took),
        "the gateway exited {took:?} after SIGTERM with a 30 s request in flight"
    );
    let reply = slow.join().unwrap();
    assert_ne!(reply.as_ref().map(|r| r.0), Some(200), "the 30 s request finished: {reply:?}");
    assert!(still_running(&monitors, &image).is_empty(), "a monitor outlived the gateway");
}

#[test]
fn a_redeploy_lets_old_instances_finish_their_requests() {
    let image = guest_image(CRASHY);
    let gw = Gateway::start("redeploy", &crashy_service("warm_shells = 0\nenv = { V = \"1\" }"));
    let slow = request_in_background(gw.addr, "/slow?ms=3000");
    gw.wait_until("the slow request in flight", Duration::from_secs(20), || {
        in_flight(&gw, "crashy") == 1
    });
    let old = gw.instances("crashy")[0]["name"].clone();
    let spec = json!({
        "name": "crashy", "image": image, "path_prefix": "/", "warm_shells": 0, "env": { "V": "2" }
    });
    let body = serde_json::to_vec(&spec).unwrap();
    let reply = admin_request(gw.admin, "PUT", "/services/crashy", Some(TOKEN), &body);
    assert!(reply.status / 100 == 2, "redeploy: {reply:?}");
    let draining: Vec<Value> = gw.instances("crashy");
    assert!(
        draining.iter().any(|i| i["name"] == old && i["state"] == "draining"),
        "the old instance drains: {draining:?}"
    );
    // A new request goes to a new instance while the old one finishes its own.
    let fresh = gw.get("/");
    assert_eq!((fresh.status, fresh.body.as_slice()), (200, b"ok\n".as_slice()), "{fresh:?}");
    assert_eq!(slow.join().unwrap(), Some((200, b"slow\n".to_vec())), "the old request");
    gw.wait_until("the old instance destroyed", Duration::from_secs(10), || {
        !gw.instances("crashy").iter().any(|i| i["name"] == old)
    });
    assert_eq!(gw.service("crashy")["spec"]["env"]["V"], "2");
}

#[test]
fn min_instances_are_kept_running() {
    let image = guest_image(HELLO);
    let gw = Gateway::start(
        "min-instances",
        &hello_service(
            "min_instances = 2\nmax_instances = 4\nidle_timeout_ms = 100\nwarm_shells = 0",
        ),
    );
    let ready = || gw.instances("http-hello").iter().filter(|i| i["state"] == "ready").count();
    gw.wait_until("two instances without any request", Duration::from_secs(20), || ready() == 2);
    assert_eq!(gw.get("/hello").status, 200);
    // Ten idle timeouts later, both are still there.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(ready() >= 2, "fell below min_instances: {:?}", gw.instances("http-hello"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A killed one is replaced.
    let before = gw.monitors(&image);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(signal(before[0], libc::SIGKILL));
    gw.wait_until("a replacement for the killed instance", Duration::from_secs(20), || {
        let now = gw.monitors(&image);
        now.len() == 2 && !now.contains(&before[0]) && ready() == 2
    });
}

/// A netprobe service doing `mode`, plus `extra` lines; its first request boots it.
fn netprobe_service(args: &str, extra: &str) -> String {
    service(
        "probe",
        NETPROBE,
        &format!("path_prefix = \"/\"\nwarm_shells = 0\nargs = {args}\n{extra}"),
    )
}

/// Boots the service with one request (which gets no useful answer: netprobe serves no HTTP)
/// and waits until `last_crash` mentions `needle`.
fn boot_and_expect_crash(gw: &Gateway, needle: &str) {
    let _ = http_request(gw.addr, "GET", "/", &[], b"", Duration::from_secs(20));
    gw.wait_until(&format!("last_crash mentions {needle:?}"), Duration::from_secs(20), || {
        gw.service("probe")["last_crash"].as_str().is_some_and(|c| c.contains(needle))
    });
}

#[test]
fn cpu_limit_s_stops_an_instance_through_serve() {
    let gw = Gateway::start("cpu-limit", &netprobe_service(r#"["spin"]"#, "cpu_limit_s = 1"));
    boot_and_expect_crash(&gw, "CPU time limit reached");
}

#[test]
fn console_limit_kib_stops_an_instance_through_serve() {
    let gw = Gateway::start(
        "console-limit",
        &netprobe_service(r#"["print-lots", "2000"]"#, "console_limit_kib = 1"),
    );
    boot_and_expect_crash(&gw, "console output exceeded its limit of 1024 bytes");
}

#[test]
fn console_rate_drops_an_instances_excess_output_through_serve() {
    let gw = Gateway::start(
        "console-rate",
        &netprobe_service(r#"["print-lots", "2000"]"#, "console_rate = 2000"),
    );
    let _ = http_request(gw.addr, "GET", "/", &[], b"", Duration::from_secs(20));
    gw.wait_until("the drop is reported in the log", Duration::from_secs(20), || {
        gw.logs("probe").iter().any(|l| l.contains("bytes of console output dropped: over 2000"))
    });
    let shown = gw.logs("probe").iter().filter(|l| l.contains("of console output")).count();
    assert!(shown < 200, "{shown} of 2000 lines shown at 2000 bytes/s");
}

/// Sends a request straight to an instance at `addr`: `true` if it was answered, `false` if
/// the connection was closed (EOF or reset) within 5 s.
/// A connection straight to an instance's published socket (a Unix socket in the gateway's
/// private directory; the test runs as the gateway's user).
fn connect_instance(addr: &str) -> UnixStream {
    let path = addr.strip_prefix("unix:").expect("instances are published on Unix sockets");
    UnixStream::connect(path).expect("connect to the instance")
}

fn served_directly(addr: &str) -> bool {
    let mut stream = connect_instance(addr);
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => false,
        Err(e) => panic!("neither served nor closed within 5 s: {e}"),
    }
}

#[test]
fn max_connections_limits_an_instance_through_serve() {
    let gw =
        Gateway::start("max-connections", &crashy_service("warm_shells = 0\nmax_connections = 2"));
    assert_eq!(gw.get("/").status, 200);
    let instances = gw.instances("crashy");
    let addr = instances[0]["addr"].as_str().expect("addr").to_owned();
    // Held open together: at most two are carried (the gateway may hold one of them itself).
    let mut open = Vec::new();
    let mut served = 0;
    for _ in 0..3 {
        open.push(connect_instance(&addr));
    }
    for stream in &mut open {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => served += 1,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("neither served nor closed within 5 s: {e}"),
        }
    }
    assert!(served <= 2, "{served} of 3 connections carried with max_connections = 2");
    drop(open);
    // Once they are closed, the instance takes a connection again.
    gw.wait_until("a direct connection served again", Duration::from_secs(5), || {
        served_directly(&addr)
    });
}

#[test]
fn the_admin_token_is_random_by_default_and_stored_0600() {
    use std::os::unix::fs::PermissionsExt;
    let config = |services: &str| {
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n{services}")
    };
    let services = hello_service("warm_shells = 0");
    let mut tokens = Vec::new();
    for name in ["token-a", "token-b"] {
        let gw = Gateway::start_with_config(name, &config(&services));
        let path = gw.dir.join("admin-token");
        let mode = std::fs::metadata(&path).expect("the token file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} has mode {:o}", path.display(), mode & 0o777);
        assert!(gw.stderr().contains(&format!("(token in {})", path.display())), "{}", gw.stderr());
        let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
        assert!(token.len() >= 32, "a short token: {token:?}");
        let ok = admin_request(gw.admin, "GET", "/services", Some(&token), b"");
        assert_eq!(ok.status, 200, "{ok:?}");
        let refused = admin_request(gw.admin, "GET", "/services", Some(TOKEN), b"");
        assert_eq!(refused.status, 401, "{refused:?}");
        tokens.push(token);
    }
    assert_ne!(tokens[0], tokens[1], "two gateways made the same token");
}
