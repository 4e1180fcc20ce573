//! A `mayfly serve` in the background for the hostile-client tests: its own scratch directory,
//! free ports, `[gateway]` settings of the test's choosing, and helpers to look at it from the
//! outside (admin API, metrics, logs, memory, CPU time). Dropping it kills it and its monitors.
#![allow(dead_code)]

use crate::common::gateway::{Started, start_serve};
use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The admin token of every test gateway.
pub const TOKEN: &str = "hostile-test-token-of-at-least-32-characters";
/// How long one request may take through the gateway (a cold start included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A `[[service]]` table named `name` running guest crate `guest` on every path, plus `extra`.
pub fn service_toml(name: &str, guest: &str, extra: &str) -> String {
    let image = guest_image(guest);
    format!("[[service]]\nname = \"{name}\"\nimage = \"{}\"\n{extra}\n", image.display())
}

/// A running gateway.
pub struct TestGateway {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// The gateway's address.
    pub addr: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestGateway {
    /// Starts `mayfly serve` for test `name` with `gateway` lines added to `[gateway]` and
    /// `services`, and waits (at most 60 s) for `ready`. `max_files`, if given, is the
    /// gateway's hard limit on open descriptors.
    pub fn start(name: &str, gateway: &str, services: &str, max_files: Option<u64>) -> TestGateway {
        require_kvm();
        let dir: PathBuf = repo().join("target/test-scratch").join(format!("hostile-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        let config = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             admin_token = \"{TOKEN}\"\n{gateway}\n\n{services}"
        );
        std::fs::write(&path, config).unwrap();
        let mut cmd = mayfly();
        cmd.arg("serve").arg("--config").arg(&path).env("MAYFLY_STATE_DIR", &dir);
        if let Some(max) = max_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit(2) is async-signal-safe; the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit { rlim_cur: max, rlim_max: max };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let Started { child, pid, addr, admin, log } = start_serve(cmd);
        TestGateway { child, pid, addr, admin, log }
    }

    /// Everything the gateway printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// `method path` through the gateway on a fresh connection; panics without an answer.
    pub fn request(&self, method: &str, path: &str) -> HttpReply {
        http_request(self.addr, method, path, &[], b"", REQUEST_TIMEOUT).unwrap_or_else(|| {
            panic!("no response to {method} {path}; gateway stderr:\n{}", self.stderr())
        })
    }

    /// `GET path` on the admin API, as JSON.
    pub fn admin_json(&self, path: &str) -> Value {
        let auth = format!("Bearer {TOKEN}");
        let reply = http_request(
            self.admin,
            "GET",
            path,
            &[("Authorization", &auth)],
            b"",
            REQUEST_TIMEOUT,
        )
        .unwrap_or_else(|| panic!("no answer from the admin API to {path}"));
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
    }

    /// Started instances (not standby shells) of `service`.
    pub fn instances(&self, service: &str) -> Vec<Value> {
        let all = self.admin_json("/instances");
        let all = all.as_array().expect("/instances is an array").clone();
        all.into_iter().filter(|i| i["service"] == service && i["state"] != "standby").collect()
    }

    /// The service's entry in `GET /services`.
    pub fn service(&self, name: &str) -> Value {
        let all = self.admin_json("/services");
        let all = all.as_array().expect("/services is an array").clone();
        all.into_iter().find(|s| s["spec"]["name"] == name).expect("the service is listed")
    }

    /// The service's log lines.
    pub fn logs(&self, name: &str) -> Vec<String> {
        let lines = self.admin_json(&format!("/services/{name}/logs?lines=100000"));
        let lines = lines.as_array().expect("logs are an array");
        lines.iter().map(|l| l.as_str().unwrap_or_default().to_owned()).collect()
    }

    /// The sum of the metric samples whose line starts with `prefix` (name and labels).
    pub fn metric(&self, prefix: &str) -> f64 {
        let reply = http_request(self.admin, "GET", "/metrics", &[], b"", REQUEST_TIMEOUT)
            .expect("metrics answer");
        String::from_utf8_lossy(&reply.body)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The gateway's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// How many descriptors the gateway has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count())
    }

    /// CPU time the gateway has used (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let (_, rest) = stat.rsplit_once(')').unwrap();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 0, utime 11, stime 12.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Polls `done` every 20 ms until it holds; fails with `what` after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; gateway stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        // Its monitors die with it (they are killed when their parent dies).
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- mayfly serve stderr ---\n{}\n---", self.stderr());
        }
    }
}
