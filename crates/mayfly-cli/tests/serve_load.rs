//! The gateway under load while instances keep booting and dying: no response lost or
//! misrouted, and nothing left behind (processes, descriptors, memory), measured and asserted.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REQUESTS: usize = 20_000;
const CLIENTS: usize = 8;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The gateway's TCP sockets that are not listening (client, upstream or admin connections,
/// in any state), by the kernel's connection tables.
fn connections(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| {
                let target = std::fs::read_link(e.ok()?.path()).ok()?;
                let target = target.to_str()?;
                Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect()
        })
        .unwrap_or_default();
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(state), Some(inode)) = (fields.get(3), fields.get(9)) else { continue };
            if *state != "0A" && inodes.iter().any(|i| i == inode) {
                count += 1;
            }
        }
    }
    count
}

/// Each service's `cold_starts` from the admin API.
fn cold_starts(admin: SocketAddr) -> Vec<(String, u64)> {
    let reply = http_request(
        admin,
        "GET",
        "/services",
        &[("Authorization", "Bearer test-token-of-at-least-32-characters")],
        b"",
        Duration::from_secs(10),
    )
    .expect("the admin API answers");
    assert_eq!(reply.status, 200, "{reply:?}");
    let services: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
    let mut counts: Vec<(String, u64)> = services
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| {
            let name = s["spec"]["name"].as_str().unwrap_or_default().to_owned();
            (name, s["cold_starts"].as_u64().unwrap_or(0))
        })
        .collect();
    counts.sort();
    counts
}

fn children(pid: u32) -> usize {
    let out = Command::new("pgrep").args(["-P", &pid.to_string()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn tens_of_thousands_of_requests_while_instances_churn() {
    require_kvm();
    let hello = guest_image("examples/http-hello");
    let dir = repo().join("target/test-scratch/serve-load");
    std::fs::create_dir_all(&dir).unwrap();
    // Three services on one image, told apart by their greeting; instances retire every 300 ms
    // (max_lifetime) or after 200 ms idle, so boots and exits happen all through the load.
    let service = |name: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nimage = \"{}\"\nhost = \"{name}.test\"\n\
             env = {{ GREETING = \"I am {name}\" }}\nconcurrency = 4\n\
             idle_timeout_ms = 200\n{extra}\n",
            hello.display()
        )
    };
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"test-token-of-at-least-32-characters\"\n\n{}{}{}",
        service("alpha", "max_lifetime_ms = 300\nmax_instances = 3"),
        service("beta", "max_lifetime_ms = 500\nwarm_shells = 0\nmax_instances = 3"),
        service("gamma", "mode = \"per-request\"\nmax_instances = 4\nwarm_shells = 2"),
    );
    let path = dir.join("mayfly.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = mayfly()
        .args(["serve", "--config"])
        .arg(&path)
        .env("MAYFLY_STATE_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut gateway: Option<SocketAddr> = None;
    let mut admin: Option<SocketAddr> = None;
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("mayfly serve got ready");
        if let Some(rest) = line.strip_prefix("mayfly serve: gateway on http://") {
            gateway = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            admin = rest
                .split_once("admin API on http://")
                .and_then(|(_, a)| a.split_whitespace().next()?.parse().ok());
        }
        if line == "mayfly serve: ready" {
            break;
        }
    }
    let addr = gateway.expect("gateway address");
    let admin = admin.expect("admin API address");
    // Warm-up, then the baseline of the gateway's own footprint.
    for name in ["alpha", "beta", "gamma"] {
        let r = http_request(
            addr,
            "GET",
            "/hello",
            &[("Host", &format!("{name}.test"))],
            b"",
            Duration::from_secs(20),
        );
        assert_eq!(r.map(|r| r.status), Some(200), "{name}");
    }
    let rss_before = rss_kib(pid);

    // Two rounds of load; after each, wait until every instance is gone and read the
    // gateway's footprint. The first round warms allocators and pools up; the second must not
    // grow it further (a leak would grow with every request).
    let mut footprints = Vec::new();
    for round in 1..=2 {
        let starts_before = cold_starts(admin);
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let done = done.clone();
                std::thread::spawn(move || -> Vec<String> {
                    let mut failures = Vec::new();
                    for i in 0..REQUESTS / 2 / CLIENTS {
                        let name = ["alpha", "beta", "gamma"][(c + i) % 3];
                        let host = format!("{name}.test");
                        let headers = [("Host", host.as_str())];
                        let reply = http_request(
                            addr,
                            "GET",
                            "/hello",
                            &headers,
                            b"",
                            Duration::from_secs(30),
                        );
                        match reply {
                            Some(r)
                                if r.status == 200
                                    && r.body == format!("I am {name}\n").as_bytes() => {}
                            Some(r) => failures.push(format!(
                                "{name}: {} {:?}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            )),
                            None => failures.push(format!("{name}: no response")),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    failures
                })
            })
            .collect();
        let failures: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        assert_eq!(done.load(Ordering::Relaxed), REQUESTS / 2);
        assert!(
            failures.is_empty(),
            "round {round}: {} of {} failed or misrouted, e.g. {:?}",
            failures.len(),
            REQUESTS / 2,
            &failures[..failures.len().min(5)]
        );
        eprintln!("round {round}: {} requests in {:?}", REQUESTS / 2, started.elapsed());
        // Instances churned during the load: every service booted more instances than it may
        // run at once, so some retired (lifetime, idle or per-request) while requests flowed.
        let starts_after = cold_starts(admin);
        eprintln!("round {round}: cold starts {starts_before:?} -> {starts_after:?}");
        for ((name, before), (_, after)) in starts_before.iter().zip(&starts_after) {
            assert!(
                after - before > 4,
                "round {round}: {name} booted {} instances under load: no churn",
                after - before
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let shells = 1 + 2; // alpha's and gamma's warm shells stay prepared
        while children(pid) > shells {
            assert!(Instant::now() < deadline, "instances still alive: {}", children(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        // Measure once the gateway holds no connection at all (pooled upstream connections
        // closed with their instances, clients' and the admin API's closed).
        let deadline = Instant::now() + Duration::from_secs(10);
        while connections(pid) > 0 {
            assert!(Instant::now() < deadline, "connections still open: {}", connections(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        footprints.push((rss_kib(pid), fds(pid)));
    }
    let [(rss1, fds1), (rss2, fds2)] = [footprints[0], footprints[1]];
    eprintln!(
        "gateway footprint: before {rss_before} KiB; after round 1 {rss1} KiB {fds1} fds; after round 2 {rss2} KiB {fds2} fds"
    );
    assert!(
        rss2 <= rss1 + 1024,
        "the gateway's RSS kept growing: {rss_before} -> {rss1} -> {rss2} KiB"
    );
    assert!(fds2 <= fds1 + 2, "descriptors leaked: {fds1} -> {fds2}");
    drop(guard);
}
