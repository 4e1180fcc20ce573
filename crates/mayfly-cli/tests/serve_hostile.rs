//! `mayfly serve` against hostile clients and hostile guests, end to end on real KVM (issue #9,
//! items 1-7): clients that go away at every stage, send slowly, open too many connections or
//! send oversized or malformed requests; guests that hang up, never finish, trickle, stall, or
//! print without end. Each test starts its own gateway (free ports, short limits).

mod common;
#[path = "common/hostile_gateway.rs"]
mod hostile_gateway;

use common::*;
use hostile_gateway::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const CRASHY: &str = "tests/guests/crashy";

/// crashy's well-behaved server (port 80) on every path, plus `extra` lines.
fn crashy(extra: &str) -> String {
    service_toml("crashy", CRASHY, &format!("path_prefix = \"/\"\n{extra}"))
}

/// crashy's hostile server (port 81) as service `name`, plus `extra` lines.
fn hostile(name: &str, extra: &str) -> String {
    service_toml(name, CRASHY, &format!("guest_port = 81\n{extra}"))
}

/// Connects to `addr`, sends `bytes`, waits `hold`, and closes: a client that goes away.
fn send_and_leave(addr: SocketAddr, bytes: &[u8], hold: Duration) {
    if let Ok(mut stream) = TcpStream::connect(addr) {
        let _ = stream.write_all(bytes);
        std::thread::sleep(hold);
    }
}

/// Runs `count` clients that go away (see [`send_and_leave`]), `parallel` at a time.
fn leave_many(addr: SocketAddr, bytes: &[u8], hold: Duration, count: usize, parallel: usize) {
    for _ in 0..count.div_ceil(parallel) {
        let threads: Vec<_> = (0..parallel)
            .map(|_| {
                let bytes = bytes.to_vec();
                std::thread::spawn(move || send_and_leave(addr, &bytes, hold))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

/// Whether the peer closed `stream` within `limit` (reads and discards what arrives).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Every started instance of `service` has nothing in flight and there are at most `max`.
fn assert_settled(gw: &TestGateway, service: &str, max: usize) {
    gw.wait_until(&format!("{service}: nothing in flight"), Duration::from_secs(10), || {
        let instances = gw.instances(service);
        instances.len() <= max && instances.iter().all(|i| i["in_flight"] == 0)
    });
}

#[test]
fn clients_that_go_away_at_every_stage_release_everything() {
    let services = format!(
        "{}\n{}",
        crashy("max_instances = 1\nconcurrency = 2\nqueue_timeout_ms = 5000"),
        hostile("big", "host = \"big\"\nmax_instances = 1\nconcurrency = 2")
    );
    let gw = TestGateway::start("go-away", "", &services, None);
    assert_eq!(gw.request("GET", "/").status, 200);
    let hold = Duration::from_millis(100);
    // Queued and forwarded: the reproduction, many times over.
    let slow = b"GET /slow?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n";
    leave_many(gw.addr, slow, hold, 240, 24);
    // Before routing: half a head.
    leave_many(gw.addr, b"GET /slow?ms=2000 HTTP/1.1\r\nHo", hold, 200, 50);
    // While the body is read.
    let body = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc";
    leave_many(gw.addr, body, hold, 200, 50);
    // While the response is forwarded and written.
    let big = b"GET /big?bytes=4000000 HTTP/1.1\r\nHost: big\r\n\r\n";
    leave_many(gw.addr, big, Duration::from_millis(20), 100, 10);
    // The service answers at once, and nothing is held.
    let started = Instant::now();
    let reply = gw.request("GET", "/");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_settled(&gw, "crashy", 1);
    assert_settled(&gw, "big", 1);
    assert_eq!(gw.service("crashy")["queued"], 0);
}

#[test]
fn abandoned_per_request_instances_are_destroyed() {
    let gw = TestGateway::start(
        "per-request-go-away",
        "",
        &crashy("mode = \"per-request\"\nmax_instances = 4\nwarm_shells = 1"),
        None,
    );
    assert_eq!(gw.request("GET", "/").status, 200);
    let slow = b"GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n";
    leave_many(gw.addr, slow, Duration::from_millis(300), 24, 6);
    // Their guests would answer after 5 s: destroyed long before that.
    let started = Instant::now();
    gw.wait_until("no started instance left", Duration::from_secs(4), || {
        gw.instances("crashy").is_empty()
    });
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(gw.request("GET", "/").status, 200);
}

#[test]
fn connections_closed_with_requests_in_flight_leave_the_service_healthy() {
    // What `wrk` does when it stops: thousands of connections closed mid-request.
    let gw = TestGateway::start(
        "wrk-style",
        "",
        &crashy("max_instances = 2\nconcurrency = 4\nqueue_timeout_ms = 3000"),
        None,
    );
    assert_eq!(gw.request("GET", "/").status, 200);
    let addr = gw.addr;
    let until = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut closed = 0;
                let request = b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n";
                while Instant::now() < until {
                    let Ok(mut stream) = TcpStream::connect(addr) else { continue };
                    let _ = stream.write_all(request);
                    // Some read a little of the answers, some nothing at all.
                    if closed % 2 == i % 2 {
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                        let _ = stream.read(&mut [0u8; 64]);
                    }
                    closed += 1;
                }
                closed
            })
        })
        .collect();
    let closed: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(closed > 100, "only {closed} connections");
    assert_settled(&gw, "crashy", 2);
    for _ in 0..20 {
        assert_eq!(gw.request("GET", "/").status, 200);
    }
}

#[test]
fn slow_heads_and_bodies_are_cut_off_and_idle_connections_closed() {
    let gw = TestGateway::start(
        "slow-clients",
        "head_timeout_ms = 600\nbody_timeout_ms = 600\nkeep_alive_timeout_ms = 2000",
        &crashy(""),
        None,
    );
    assert_eq!(gw.request("GET", "/").status, 200);
    // Slowloris on the head: a header line every 100 ms, for ever.
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(5), "a trickled head is not cut off");
        if stream.write_all(b"X-Slow: yes\r\n").is_err() {
            break;
        }
        match stream.read(&mut [0u8; 256]) {
            Ok(0) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            _ => break,
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(500), "cut after {:?}", started.elapsed());
    // A connection that sends nothing at all is cut off by the same deadline.
    let mut silent = TcpStream::connect(gw.addr).unwrap();
    let started = Instant::now();
    // (before the keep-alive timeout, 2 s, would close it)
    let cut = closed_within(&mut silent, Duration::from_millis(1500));
    assert!(cut, "a silent client kept for 1.5 s");
    assert!(started.elapsed() >= Duration::from_millis(500), "cut after {:?}", started.elapsed());
    // Slowloris on the body: 10 bytes of 100, then nothing.
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let reply = http_exchange(&mut stream, b"").expect("an answer to a stalled body");
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(gw.metric("mayfly_gateway_slow_clients_total{stage=\"head\"}") >= 1.0);
    assert!(gw.metric("mayfly_gateway_slow_clients_total{stage=\"body\"}") >= 1.0);
    // An idle keep-alive connection outlives the head timeout, not the keep-alive timeout.
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(http_exchange(&mut stream, get).expect("first").status, 200);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(http_exchange(&mut stream, get).expect("after 1 s idle").status, 200);
    let idle = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(6)), "idle connection kept open");
    assert!(idle.elapsed() >= Duration::from_millis(1500), "closed after {:?}", idle.elapsed());
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let gw = TestGateway::start("max-connections", "max_connections = 8", &crashy(""), None);
    let get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(gw.addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            assert_eq!(http_exchange(&mut stream, get).expect("an answer").status, 200);
            stream
        })
        .collect();
    let mut extra = TcpStream::connect(gw.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    assert!(http_exchange(&mut extra, get).is_none(), "the ninth connection was served");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(gw.metric("mayfly_gateway_refused_connections_total") >= 1.0);
    held.pop();
    gw.wait_until("a connection is taken again", Duration::from_secs(5), || {
        http_request(gw.addr, "GET", "/", &[], b"", Duration::from_secs(5))
            .is_some_and(|r| r.status == 200)
    });
}

#[test]
fn request_bodies_share_one_budget() {
    let gw = TestGateway::start(
        "body-budget",
        "max_body_bytes = 40000\nbody_budget_bytes = 100000",
        &crashy(""),
        None,
    );
    let head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40000\r\n\r\n";
    let start_upload = || {
        let mut stream = TcpStream::connect(gw.addr).unwrap();
        stream.write_all(head).unwrap();
        stream.write_all(&[b'a'; 100]).unwrap();
        stream
    };
    // Three uploads of 40000 bytes where 100000 may be buffered: one of them is refused at
    // once, whichever comes last; the two others wait for their bodies.
    let uploads = [start_upload(), start_upload(), start_upload()];
    let answers: Vec<Option<u16>> = std::thread::scope(|scope| {
        let waits: Vec<_> = uploads
            .iter()
            .map(|upload| {
                let mut stream = upload.try_clone().unwrap();
                scope.spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    http_exchange(&mut stream, b"").map(|r| r.status)
                })
            })
            .collect();
        waits.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(answers.iter().filter(|a| **a == Some(503)).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 2, "{answers:?}");
    // The others finish and are forwarded (crashy answers a POST with 404).
    for (mut upload, answer) in uploads.into_iter().zip(answers) {
        if answer.is_none() {
            upload.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let reply = http_exchange(&mut upload, &[b'a'; 39_900]).expect("an upload's answer");
            assert_eq!(reply.status, 404, "{reply:?}");
        }
    }
}

#[test]
fn oversized_and_malformed_requests_get_413_400_431_like_the_guest() {
    let gw = TestGateway::start("limits", "", &crashy(""), None);
    assert_eq!(gw.request("GET", "/").status, 200);
    let exchange = |request: &[u8]| {
        let mut stream = TcpStream::connect(gw.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let reply = http_exchange(&mut stream, request).expect("an answer");
        (reply, stream)
    };
    // A declared body over 1 MiB: 413 before any of it is sent.
    let (reply, _) = exchange(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n");
    assert_eq!(reply.status, 413, "{reply:?}");
    // A malformed chunked body: 400, not 413.
    let (reply, _) =
        exchange(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n");
    assert_eq!(reply.status, 400, "{reply:?}");
    // A head over 8 KiB: 431, and the connection is closed.
    let big = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "x".repeat(9000));
    let (reply, mut stream) = exchange(big.as_bytes());
    assert_eq!(reply.status, 431, "{reply:?}");
    assert!(closed_within(&mut stream, Duration::from_secs(2)), "kept open after 431");
    // A head just under the limit reaches the guest, which takes it.
    let fits = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "x".repeat(7800));
    assert_eq!(exchange(fits.as_bytes()).0.status, 200);
    // 64 header fields are what the guest takes; 65 are refused by the gateway.
    let fields = |n: usize| {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for i in 1..n {
            head.push_str(&format!("X-F{i}: v\r\n"));
        }
        head + "\r\n"
    };
    assert_eq!(exchange(fields(64).as_bytes()).0.status, 200);
    let (reply, mut stream) = exchange(fields(65).as_bytes());
    assert_eq!(reply.status, 431, "{reply:?}");
    assert!(closed_within(&mut stream, Duration::from_secs(2)), "kept open after 431");
}

#[test]
fn a_guest_hanging_up_is_not_a_crash() {
    let gw = TestGateway::start(
        "hangup",
        "",
        &hostile("raw", "path_prefix = \"/\"\nmax_instances = 1"),
        None,
    );
    assert_eq!(gw.request("GET", "/").status, 200);
    let before = gw.instances("raw");
    assert_eq!(before.len(), 1);
    for _ in 0..5 {
        assert_eq!(gw.request("GET", "/hangup").status, 502);
    }
    let reply = gw.request("GET", "/");
    assert_eq!(reply.status, 200, "{reply:?}");
    let after = gw.instances("raw");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["name"], before[0]["name"], "the instance was replaced");
    let service = gw.service("raw");
    assert!(service["last_crash"].is_null(), "{service}");
    assert_eq!(gw.metric("mayfly_crashes_total"), 0.0);
}

#[test]
fn hostile_responses_get_502_and_the_gateway_memory_stays_flat() {
    let gw = TestGateway::start(
        "hostile-responses",
        "max_response_bytes = 8000000\nupstream_head_timeout_ms = 1500\n\
         upstream_body_timeout_ms = 1500",
        &hostile("raw", "path_prefix = \"/\"\nmax_instances = 4\nconcurrency = 8"),
        None,
    );
    // Within the limit: answered in full.
    let reply = gw.request("GET", "/big?bytes=7000000");
    assert_eq!((reply.status, reply.body.len()), (200, 7_000_000));
    let endless = |rounds: usize| {
        for _ in 0..rounds {
            let started = Instant::now();
            let reply = gw.request("GET", "/endless");
            assert_eq!(reply.status, 502, "{reply:?}");
            assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        }
    };
    endless(3);
    let baseline = gw.rss_kib();
    endless(15);
    let grown = gw.rss_kib().saturating_sub(baseline);
    assert!(grown < 32 * 1024, "the gateway grew by {grown} KiB over 15 endless responses");
    // A huge declared length: refused at once, however slowly it trickles.
    let started = Instant::now();
    assert_eq!(gw.request("GET", "/trickle").status, 502);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // A body that stalls, a head that never comes: cut at their deadlines.
    for path in ["/stall", "/silent"] {
        let started = Instant::now();
        assert_eq!(gw.request("GET", path).status, 502, "{path}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "{took:?}");
    }
    assert!(gw.metric("mayfly_instance_failures_total") >= 20.0);
    assert_eq!(gw.request("GET", "/").status, 200);
}

#[test]
fn console_output_is_split_into_lines_and_rate_limited() {
    let services = format!(
        "{}\n{}",
        hostile("unlimited", "host = \"unlimited\"\nconsole_rate = 0"),
        hostile("default", "host = \"default\"")
    );
    let gw = TestGateway::start("console", "", &services, None);
    let spew = |host: &str, bytes: usize| {
        let path = format!("/spew?bytes={bytes}");
        let reply = http_request(gw.addr, "GET", &path, &[("Host", host)], b"", REQUEST_TIMEOUT)
            .expect("an answer to /spew");
        assert_eq!(reply.status, 200, "{reply:?}");
    };
    spew("unlimited", 1000);
    let baseline = gw.rss_kib();
    // 64 MiB without a newline: split into lines as it is read, never held whole.
    spew("unlimited", 64 << 20);
    let full_line = "x".repeat(4096);
    gw.wait_until("the output reaches the log in lines", Duration::from_secs(20), || {
        gw.logs("unlimited").iter().filter(|l| l.ends_with(&full_line)).count() >= 100
    });
    let grown = gw.rss_kib().saturating_sub(baseline);
    assert!(grown < 32 * 1024, "the gateway grew by {grown} KiB for one long line");
    // Without a console_rate, the default applies: most of 4 MiB is dropped, and said so.
    spew("default", 4 << 20);
    gw.wait_until("the rate limit's note", Duration::from_secs(10), || {
        gw.logs("default").iter().any(|l| l.contains("bytes of console output dropped"))
    });
    let logged: usize = gw.logs("default").iter().map(String::len).sum();
    assert!(logged < 1 << 20, "{logged} bytes logged despite the default rate");
}

#[test]
fn accept_failures_back_off_instead_of_spinning() {
    // Few descriptors: the gateway runs out of them while connections pile up.
    let gw = TestGateway::start("emfile", "", &crashy("warm_shells = 0"), Some(64));
    assert_eq!(gw.request("GET", "/").status, 200);
    let held: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(gw.addr).ok()).collect();
    assert_eq!(held.len(), 100);
    gw.wait_until("the gateway out of descriptors", Duration::from_secs(5), || gw.open_fds() >= 60);
    let ticks = gw.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = gw.cpu_ticks() - ticks;
    assert!(used < 40, "the gateway used {used} ticks of CPU in 2 s while out of descriptors");
    let said = gw.stderr().matches("cannot accept connections").count();
    assert!((1..=3).contains(&said), "said {said} times");
    drop(held);
    gw.wait_until("accepting again", Duration::from_secs(10), || {
        http_request(gw.addr, "GET", "/", &[], b"", Duration::from_secs(5))
            .is_some_and(|r| r.status == 200)
    });
}

/// Reads from `stream` until the peer closes it: `Ok(bytes)` on EOF or a reset, `Err` if it was
/// still open when the read timeout struck.
fn read_until_closed(stream: &mut TcpStream) -> Result<Vec<u8>, std::io::Error> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn the_admin_api_cuts_off_slow_clients_and_bounds_its_connections() {
    let services =
        service_toml("hello", "examples/http-hello", "path_prefix = \"/\"\nwarm_shells = 0");
    let gw = TestGateway::start("admin-limits", "", &services, None);
    // A request head that never ends is cut off after the admin API's 10 s head timeout.
    let mut slow = TcpStream::connect(gw.admin).unwrap();
    slow.write_all(b"GET /services HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut slow).expect("a slow admin client is never cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(15),
        "cut off after {took:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // 64 connections at once are the admin API's limit: the next is closed at once.
    let held: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(gw.admin).unwrap()).collect();
    let mut extra = TcpStream::connect(gw.admin).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let got = read_until_closed(&mut extra).expect("the 65th admin connection was kept open");
    assert!(
        got.is_empty(),
        "the 65th admin connection was served: {}",
        String::from_utf8_lossy(&got)
    );
    drop(held);
    // Once they are gone, the API answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = http_request(gw.admin, "GET", "/metrics", &[], b"", Duration::from_secs(5));
        if reply.as_ref().is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the admin API does not answer again: {reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
