//! `mayfly serve`, end to end on real KVM: each test starts its own gateway (free ports, its own
//! state directory) and checks scale-from-zero, scale-out, scale-to-zero, per-request instances,
//! crash recovery and crash-loop back-off, routing, configuration errors, the admin API and its
//! CLI clients, and graceful shutdown. Every gateway and its monitors are killed on drop.

mod common;

use common::gateway::*;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn scale_from_zero_on_the_first_request() {
    let gw =
        Gateway::start("scale-from-zero", &hello_service("min_instances = 0\nwarm_shells = 0"));
    assert_eq!(gw.admin_json("/instances"), Value::Array(Vec::new()), "nothing runs at zero");
    let reply = gw.get("/hello");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, GREETING);
    let instances = gw.instances("http-hello");
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["state"], "ready", "{instances:?}");
    assert_eq!(instances[0]["requests"], 1, "{instances:?}");
    assert_eq!(gw.service("http-hello")["cold_starts"], 1);
}

#[test]
fn burst_of_200_concurrent_requests_to_a_service_at_zero_all_succeed() {
    const CLIENTS: usize = 200;
    const MAX_INSTANCES: usize = 4;
    let gw = Gateway::start(
        "burst",
        &hello_service("max_instances = 4\nconcurrency = 8\nwarm_shells = 0"),
    );
    assert!(gw.instances("http-hello").is_empty(), "the service starts at zero");
    // Watch the number of instances while the burst runs.
    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (admin, max_seen, stop) = (gw.admin, max_seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let count = started_instances(admin, "http-hello").len();
                max_seen.fetch_max(count, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let addr = gw.addr;
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                http_request(addr, "GET", "/hello", &[], b"", Duration::from_secs(30))
                    .map(|r| (r.status, r.body))
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().expect("client thread")).collect();
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher thread");
    let after = gw.instances("http-hello").len();
    let max = max_seen.load(Ordering::Relaxed).max(after);

    let failed: Vec<_> =
        results.iter().filter(|r| !matches!(r, Some((200, body)) if body == GREETING)).collect();
    assert!(failed.is_empty(), "{} of {CLIENTS} requests failed: {:?}", failed.len(), &failed[..]);
    assert!(max > 1, "the service did not scale out: at most {max} instance(s) seen");
    assert!(max <= MAX_INSTANCES, "{max} instances seen, above max_instances {MAX_INSTANCES}");
    let info = gw.service("http-hello");
    let cold_starts = info["cold_starts"].as_u64().unwrap_or(0);
    assert!((2..=4).contains(&cold_starts), "cold starts: {info}");
}

#[test]
fn scale_to_zero_after_idle() {
    let image = guest_image(HELLO);
    let gw =
        Gateway::start("scale-to-zero", &hello_service("idle_timeout_ms = 500\nwarm_shells = 0"));
    let fds_at_start = gw.open_fds();
    let mut fds = Vec::new();
    let mut rss = Vec::new();
    for cycle in 1..=5 {
        let reply = gw.get("/hello");
        assert_eq!(reply.status, 200, "cycle {cycle}: {reply:?}");
        let running = gw.monitors(&image);
        assert_eq!(running.len(), 1, "cycle {cycle}: one monitor while the instance lives");
        gw.wait_until(&format!("cycle {cycle}: scaled to zero"), Duration::from_secs(10), || {
            gw.admin_json("/instances") == Value::Array(Vec::new())
        });
        gw.wait_until(&format!("cycle {cycle}: monitors gone"), Duration::from_secs(5), || {
            gw.monitors(&image).is_empty()
        });
        assert!(still_running(&running, &image).is_empty(), "cycle {cycle}: {running:?} live");
        fds.push(gw.open_fds());
        rss.push(gw.rss_kib());
    }
    assert_eq!(gw.service("http-hello")["cold_starts"], 5, "one cold start per cycle");
    // Memory: after the first cycle warmed the gateway up, later cycles leave nothing behind.
    assert!(
        rss[4] <= rss[1] + 1024,
        "the gateway's RSS grew from {} to {} KiB over cycles 2-5 ({rss:?})",
        rss[1],
        rss[4]
    );
    let last = *fds.last().unwrap();
    assert!(
        last <= fds_at_start + 5,
        "the gateway's open fds grew from {fds_at_start} to {last} over 3 cycles ({fds:?})"
    );
}

#[test]
fn per_request_mode_gives_a_fresh_instance_each_time() {
    let gw = Gateway::start(
        "per-request",
        &service("kv", KV, "path_prefix = \"/kv\"\nmode = \"per-request\""),
    );
    let put = gw.request("PUT", "/kv/a", &[], br#"{"v":1}"#);
    assert_eq!(put.status, 201, "{put:?}");
    let get = gw.get("/kv/a");
    assert_eq!(get.status, 404, "a fresh instance does not know `a`: {get:?}");
    assert_eq!(gw.service("kv")["cold_starts"], 2, "one instance per request");
    gw.wait_until("per-request instances destroyed", Duration::from_secs(5), || {
        gw.instances("kv").is_empty()
    });
}

/// Requests `/crash` (502: the instance faulted) and waits until the gateway has noticed that
/// the instance is gone.
fn crash_and_wait(gw: &Gateway, service: &str, headers: &[(&str, &str)]) {
    let reply = gw.request("GET", "/crash", headers, b"");
    assert_eq!(reply.status, 502, "{service}: {reply:?}");
    gw.wait_until(
        &format!("{service}: the crashed instance noticed"),
        Duration::from_secs(5),
        || gw.instances(service).is_empty(),
    );
}

#[test]
fn a_crashing_service_gives_502_and_recovers() {
    let gw = Gateway::start("crash", &crashy_service(""));
    let crash = gw.get("/crash");
    assert_eq!(crash.status, 502, "{crash:?}");
    let ok = gw.get("/");
    assert_eq!((ok.status, ok.body.as_slice()), (200, b"ok\n".as_slice()), "{ok:?}");
    gw.wait_until("the fault in the service's log", Duration::from_secs(5), || {
        gw.logs("crashy").iter().any(|l| l.contains("page fault"))
    });
    let info = gw.service("crashy");
    assert!(info["last_crash"].as_str().is_some_and(|c| c.contains("page fault")), "{info}");
    assert_eq!(info["cold_starts"], 2, "a fresh instance after the crash: {info}");
}

/// A crash, then a fresh instance, with the crash noticed (its exit reaped) first.
#[test]
fn a_noticed_crash_gives_502_then_a_fresh_instance() {
    let gw = Gateway::start("crash-noticed", &crashy_service(""));
    crash_and_wait(&gw, "crashy", &[]);
    let ok = gw.get("/");
    assert_eq!((ok.status, ok.body.as_slice()), (200, b"ok\n".as_slice()), "{ok:?}");
    let info = gw.service("crashy");
    assert!(info["last_crash"].is_string(), "the crash is recorded: {info}");
    assert_eq!(info["cold_starts"], 2, "a fresh instance after the crash: {info}");
    let instances = gw.instances("crashy");
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["state"], "ready", "{instances:?}");
}

#[test]
fn crash_loop_is_backed_off_and_reported() {
    let gw = Gateway::start("crash-loop", &crashy_service(""));
    for i in 1..=3 {
        let reply = gw.get("/crash");
        assert_eq!(reply.status, 502, "crash {i}: {reply:?}");
    }
    // Three crashes in a row: a crash loop, backed off (1 s for the first).
    let reply = gw.get("/");
    assert_eq!(reply.status, 503, "backed off: {reply:?}");
    let retry_after = header(&reply, "retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {reply:?}");
    let info = gw.service("crashy");
    assert!(info["backoff_seconds"].as_f64().is_some_and(|s| s > 0.0), "{info}");
    // The monitor's diagnosis arrives with its exit, a moment after the 502.
    gw.wait_until("the crash's diagnosis is reported", Duration::from_secs(5), || {
        gw.service("crashy")["last_crash"].as_str().is_some_and(|c| c.contains("fault"))
    });
    // Once the back-off is over, a request boots an instance again.
    gw.wait_until("the service answers after its back-off", Duration::from_secs(10), || {
        gw.get("/").status == 200
    });
}

/// The same crash loop, with each crash noticed (its exit reaped) before the next request.
#[test]
fn noticed_crashes_in_a_row_are_backed_off() {
    let gw = Gateway::start("crash-loop-noticed", &crashy_service(""));
    for _ in 1..=3 {
        crash_and_wait(&gw, "crashy", &[]);
    }
    // Three crashes within 30 s: a crash loop, backed off (1 s for the first).
    let reply = gw.get("/");
    assert_eq!(reply.status, 503, "backed off: {reply:?}");
    let retry_after = header(&reply, "retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {reply:?}");
    assert!(String::from_utf8_lossy(&reply.body).contains("crash-looping"), "{reply:?}");
    let info = gw.service("crashy");
    assert!(info["backoff_seconds"].as_f64().is_some_and(|s| s > 0.0), "{info}");
    assert!(info["last_crash"].is_string(), "{info}");
    gw.wait_until("the service answers after its back-off", Duration::from_secs(10), || {
        gw.get("/").status == 200
    });
}

#[test]
fn every_crash_diagnosis_reaches_last_crash_and_the_log() {
    const SERVICES: usize = 8;
    let services: String = (0..SERVICES)
        .map(|i| {
            service(&format!("c{i}"), CRASHY, &format!("host = \"c{i}.test\"\nwarm_shells = 0"))
        })
        .collect();
    let gw = Gateway::start("crash-diagnosis", &services);
    for i in 0..SERVICES {
        let host = format!("c{i}.test");
        crash_and_wait(&gw, &format!("c{i}"), &[("Host", &host)]);
    }
    let mut lost = Vec::new();
    for i in 0..SERVICES {
        let name = format!("c{i}");
        let info = gw.service(&name);
        let crash = info["last_crash"].as_str().unwrap_or_default().to_owned();
        let logged = gw.logs(&name).iter().any(|l| l.contains("page fault"));
        if !crash.contains("page fault") || !logged {
            lost.push(format!("{name}: last_crash {crash:?}, fault in the log: {logged}"));
        }
    }
    assert!(lost.is_empty(), "diagnoses lost for {} of {SERVICES} crashes: {lost:#?}", lost.len());
}

/// The socket inodes a process holds (from its `/proc/<pid>/fd` links `socket:[N]`).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    dir.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The inodes of every listening TCP socket in this network namespace.
fn tcp_listening_inodes() -> Vec<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // `st` 0A is LISTEN; the inode is the tenth field.
                    (fields.get(3) == Some(&"0A")).then(|| fields.get(9)?.parse().ok())?
                })
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// Instances are private to the gateway: each monitor takes connections on a Unix socket in a
/// directory only the gateway's user may enter, and listens on no TCP port at all.
#[test]
fn instances_listen_only_on_unix_sockets_in_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let mut gw = Gateway::start("private-instances", &hello_service("warm_shells = 1"));
    let reply = gw.get("/hello");
    assert_eq!((reply.status, reply.body.as_slice()), (200, GREETING), "{reply:?}");
    let monitors = gw.monitors(&guest_image(HELLO));
    assert!(!monitors.is_empty(), "no monitor found");
    let listening = tcp_listening_inodes();
    assert!(!listening.is_empty(), "the gateway itself listens on TCP");
    for pid in &monitors {
        let sockets = socket_inodes(*pid);
        assert!(!sockets.is_empty(), "monitor {pid} holds no socket");
        let tcp: Vec<&u64> = sockets.iter().filter(|i| listening.contains(i)).collect();
        assert!(tcp.is_empty(), "monitor {pid} listens on TCP: {tcp:?}");
    }
    let instances = gw.instances("http-hello");
    let addr = instances[0]["addr"].as_str().unwrap_or_default().to_owned();
    let socket = PathBuf::from(addr.strip_prefix("unix:").expect("a Unix socket address"));
    let dir = socket.parent().expect("the socket's directory").to_owned();
    let mode = std::fs::metadata(&dir).expect("the socket directory").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    assert!(socket.exists(), "{}", socket.display());
    // The directory goes with the gateway.
    assert_eq!(gw.terminate(Duration::from_secs(20)), Some(0));
    assert!(!dir.exists(), "{} outlived the gateway", dir.display());
}

/// A guest that exits on its own with the status the monitor uses for a verdict (124 timeout,
/// 139 fault, 152 CPU limit) is recorded as exiting, not as stopped by the monitor.
#[test]
fn a_guest_exit_status_does_not_impersonate_a_monitor_verdict() {
    const HOSTILE: &str = "tests/guests/hostile";
    let services: String = [124, 139, 152]
        .iter()
        .map(|code| {
            let extra = format!(
                "host = \"e{code}.test\"\nwarm_shells = 0\nargs = [\"exit-with\", \"{code}\"]"
            );
            service(&format!("e{code}"), HOSTILE, &extra)
        })
        .collect();
    let gw = Gateway::start("exit-verdicts", &services);
    for code in [124, 139, 152] {
        let name = format!("e{code}");
        let host = format!("e{code}.test");
        let reply = gw.request("GET", "/", &[("Host", &host)], b"");
        assert_eq!(reply.status, 502, "{name}: {reply:?}");
        gw.wait_until(&format!("{name}: the exit is noticed"), Duration::from_secs(5), || {
            gw.instances(&name).is_empty()
        });
        let crash = gw.service(&name)["last_crash"].as_str().unwrap_or_default().to_owned();
        assert_eq!(crash, format!("guest exited with status {code}"), "{name}");
    }
}

#[test]
fn unknown_routes_get_404() {
    let gw = Gateway::start("unknown-routes", &hello_service("warm_shells = 0"));
    for path in ["/nothing", "/", "/hellooo", "/nothing/hello"] {
        let reply = gw.get(path);
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
    assert_eq!(gw.admin_json("/instances"), Value::Array(Vec::new()), "nothing was booted");
    assert_eq!(gw.get("/hello").status, 200);
}

/// `mayfly serve --config <toml>` fails quickly with status 125 and one line naming `needle`.
fn serve_refuses(name: &str, toml: &str, needle: &str) {
    let dir = scratch(&format!("config-{name}"));
    let path = dir.join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = mayfly();
    cmd.arg("serve").arg("--config").arg(&path).env("MAYFLY_STATE_DIR", &dir);
    let started = Instant::now();
    let run = run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR), "{name}: stderr: {}", run.stderr);
    run.assert_one_line_error(needle);
    assert!(started.elapsed() < Duration::from_secs(10), "{name}: took {:?}", started.elapsed());
}

#[test]
fn config_errors_are_reported_with_field_and_reason() {
    require_kvm();
    let image = guest_image(HELLO);
    let good = |extra: &str| {
        config(&format!(
            "[[service]]\nname = \"x\"\nimage = \"{}\"\npath_prefix = \"/x\"\n{extra}\n",
            image.display()
        ))
    };
    serve_refuses("syntax", "[gateway\nlisten = \"127.0.0.1:0\"\n", "TOML parse error");
    serve_refuses("mem", &good("mem_mib = 3"), "`mem_mib` must be");
    serve_refuses("unknown-field", &good("colour = \"blue\""), "unknown field `colour`");
    serve_refuses(
        "no-image",
        &config(
            "[[service]]\nname = \"x\"\nimage = \"/nonexistent/x.img\"\npath_prefix = \"/x\"\n",
        ),
        "/nonexistent/x.img does not exist",
    );

    // Through the admin API: 400 naming the problem, and the running services carry on.
    let gw = Gateway::start("config-admin", &hello_service(""));
    let deploy =
        |body: &str| admin_request(gw.admin, "PUT", "/services/x", Some(TOKEN), body.as_bytes());
    let cases = [
        (r#"{"name":"x","image":"/nope","path_prefix":"/x"}"#, "/nope is not under an image root"),
        (r#"{"name":"x","image":"/nope","path_prefix":"/x","mem_mib":3}"#, "`mem_mib` must be"),
        (r#"{"name":"x","image":"/nope","path_prefix":"/x","colour":1}"#, "unknown field `colour`"),
        (r#"{"name":"x","#, "invalid service spec"),
    ];
    for (body, needle) in cases {
        let reply = deploy(body);
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        let error: Value = serde_json::from_slice(&reply.body).expect("a JSON error");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message:?} lacks {needle:?}");
    }
    let names: Vec<Value> = gw
        .admin_json("/services")
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| s["spec"]["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("http-hello")]);
    let reply = gw.get("/hello");
    assert_eq!((reply.status, reply.body.as_slice()), (200, GREETING), "{reply:?}");
}

#[test]
fn admin_api_requires_the_token() {
    let gw = Gateway::start("admin-token", &hello_service("warm_shells = 0"));
    for token in [None, Some("wrong-token"), Some("test-token2"), Some("")] {
        let reply = admin_request(gw.admin, "GET", "/instances", token, b"");
        assert_eq!(reply.status, 401, "token {token:?}: {reply:?}");
        let reply = admin_request(gw.admin, "DELETE", "/services/http-hello", token, b"");
        assert_eq!(reply.status, 401, "token {token:?}: {reply:?}");
    }
    assert_eq!(gw.get("/hello").status, 200, "the service was not removed");
    let metrics = admin_request(gw.admin, "GET", "/metrics", None, b"");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let text = String::from_utf8_lossy(&metrics.body);
    let counted = text.lines().any(|l| {
        l.starts_with("mayfly_requests_total{")
            && l.contains("service=\"http-hello\"")
            && l.contains("status=\"200\"")
            && l.ends_with(" 1")
    });
    assert!(counted, "no mayfly_requests_total for the request:\n{text}");
}

#[test]
fn mayfly_ps_deploy_rm_logs_work() {
    let gw = Gateway::start("cli", &hello_service("warm_shells = 0"));
    let admin = gw.admin.to_string();
    let cli = |args: &[&str]| {
        let mut cmd = mayfly();
        cmd.args(args).args(["--admin", &admin, "--token", TOKEN]);
        let run = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(run.status, Some(0), "mayfly {args:?}: {}", run.stderr);
        run.stdout
    };
    let second = gw.dir.join("second.toml");
    std::fs::write(&second, service("second", HELLO, "host = \"second.test\"\nwarm_shells = 0"))
        .unwrap();
    let out = cli(&["deploy", second.to_str().unwrap()]);
    assert!(out.contains("deployed second"), "{out}");

    let to_second = [("Host", "second.test")];
    let reply = gw.request("GET", "/", &to_second, b"");
    assert_eq!((reply.status, reply.body.as_slice()), (200, GREETING), "{reply:?}");
    let ps = cli(&["ps"]);
    let listed =
        |ps: &str, name: &str| ps.lines().any(|l| l.split_whitespace().next() == Some(name));
    assert!(listed(&ps, "second") && listed(&ps, "http-hello"), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("second-") && l.contains("ready")), "{ps}");

    let out = cli(&["rm", "second"]);
    assert!(out.contains("removed second"), "{out}");
    let reply = gw.request("GET", "/", &to_second, b"");
    assert_eq!(reply.status, 404, "the removed service's route: {reply:?}");
    let ps = cli(&["ps"]);
    assert!(!listed(&ps, "second") && listed(&ps, "http-hello"), "{ps}");

    assert_eq!(gw.get("/hello").status, 200);
    gw.wait_until("http-hello's console in `mayfly logs`", Duration::from_secs(5), || {
        cli(&["logs", "http-hello"]).contains("http: listening on port 80")
    });
}

#[test]
fn graceful_shutdown_with_requests_in_flight() {
    const SLOW: usize = 5;
    let image = guest_image(CRASHY);
    let mut gw = Gateway::start("graceful", &crashy_service(""));
    let addr = gw.addr;
    let clients: Vec<_> = (0..SLOW)
        .map(|_| {
            std::thread::spawn(move || {
                http_request(addr, "GET", "/slow?ms=1500", &[], b"", Duration::from_secs(20))
                    .map(|r| (r.status, r.body))
            })
        })
        .collect();
    let in_flight = || -> u64 {
        let all = gw.admin_json("/instances");
        all.as_array().expect("an array").iter().filter_map(|i| i["in_flight"].as_u64()).sum()
    };
    gw.wait_until("5 requests in flight", Duration::from_secs(10), || in_flight() >= SLOW as u64);
    let monitors = gw.monitors(&image);
    assert!(!monitors.is_empty(), "no monitor found for the instance");

    let status = gw.terminate(Duration::from_secs(15));
    assert_eq!(status, Some(0), "exit status; stderr:\n{}", gw.stderr());
    for (i, client) in clients.into_iter().enumerate() {
        let result = client.join().expect("client thread");
        assert!(
            matches!(&result, Some((200, body)) if body == b"slow\n"),
            "request {i} in flight at SIGTERM: {result:?}"
        );
    }
    let left = still_running(&monitors, &image);
    assert!(left.is_empty(), "monitors {left:?} outlived the gateway");
    assert!(gw.stderr().contains("every instance destroyed"), "{}", gw.stderr());
}

#[test]
fn an_image_that_fails_to_boot_is_reported_and_the_gateway_stays_up() {
    let broken = repo().join("target/test-scratch/serve-not-an-image.txt");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, "this is not a unikernel image\n").unwrap();
    let services = format!(
        "{}\n[[service]]\nname = \"broken\"\nimage = \"{}\"\npath_prefix = \"/broken\"\nwarm_shells = 0\n",
        hello_service("warm_shells = 0"),
        broken.display()
    );
    let gw = Gateway::start("broken-image", &services);
    let reply = gw.get("/broken");
    assert_eq!(reply.status, 502, "{reply:?}");
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(body.contains("failed to start") && body.contains("not an ELF file"), "{body}");
    let info = gw.service("broken");
    assert!(info["last_crash"].as_str().is_some_and(|c| c.contains("not an ELF file")), "{info}");
    // The rest of the gateway is unaffected.
    assert_eq!(gw.get("/hello").status, 200);
}

#[test]
fn killing_a_monitor_mid_request_fails_only_that_request() {
    let image = guest_image(CRASHY);
    let gw = Gateway::start("kill-9", &crashy_service("warm_shells = 0"));
    assert_eq!(gw.get("/").status, 200);
    let victims = gw.monitors(&image);
    assert_eq!(victims.len(), 1);
    // A slow request in flight, then SIGKILL to its monitor.
    let addr = gw.addr;
    let slow = std::thread::spawn(move || {
        http_request(addr, "GET", "/slow?ms=3000", &[], b"", Duration::from_secs(20))
    });
    gw.wait_until("the slow request is in flight", Duration::from_secs(5), || {
        gw.instances("crashy").first().is_some_and(|i| i["in_flight"] == 1)
    });
    assert!(signal(victims[0], libc::SIGKILL));
    let reply = slow.join().unwrap().expect("a response");
    assert_eq!(reply.status, 502, "{reply:?}");
    // The service recovers with a fresh instance.
    let again = gw.get("/");
    assert_eq!(again.status, 200, "{again:?}");
}

#[test]
fn malformed_http_at_the_gateway_gets_4xx() {
    let gw = Gateway::start("malformed", &hello_service(""));
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length: zebra\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: a\r\nX: \x01\x02\r\n\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(gw.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reply = http_exchange(&mut stream, request).expect("a response");
        assert!((400..500).contains(&reply.status), "{request:?}: {reply:?}");
    }
    let huge = format!("GET /hello HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000));
    let mut stream = std::net::TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = http_exchange(&mut stream, huge.as_bytes());
    assert_eq!(reply.as_ref().map(|r| r.status), Some(431), "a 200 KB header: {reply:?}");
    assert_eq!(gw.get("/hello").status, 200, "the gateway still serves");
}
