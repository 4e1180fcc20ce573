//! An admin token is not a shell: what the admin API may deploy (crates only under build roots,
//! images only under image roots, bounded services within a memory budget), how the gateway
//! keeps its token (a file others could read or replace stops it), and what `mayfly logs`
//! shows of a guest's output (no raw control characters). Each test runs a
//! real `mayfly serve`; no guest is booted (no warm shells, no requests).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "policy-test-token-of-at-least-32-chars";

/// A fresh scratch directory for test `name`.
fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(format!("policy-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The http-hello service on `/hello`, with `extra` lines; no shells, so nothing boots.
fn hello(extra: &str) -> String {
    let image = guest_image("examples/http-hello");
    format!(
        "[[service]]\nname = \"http-hello\"\nimage = \"{}\"\npath_prefix = \"/hello\"\n\
         warm_shells = 0\n{extra}\n",
        image.display()
    )
}

fn serve_command(dir: &std::path::Path, gateway: &str, services: &str) -> Command {
    let path = dir.join("serve.toml");
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{gateway}\n\n{services}"
    );
    std::fs::write(&path, config).unwrap();
    let mut cmd = mayfly();
    cmd.arg("serve").arg("--config").arg(&path).env("MAYFLY_STATE_DIR", dir.join("state"));
    cmd
}

/// A running gateway, killed on drop.
struct Gateway {
    child: Child,
    admin: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(name: &str, gateway: &str, services: &str) -> Gateway {
        let dir = scratch(name);
        let gateway = format!("admin_token = \"{TOKEN}\"\n{gateway}");
        let mut child = serve_command(&dir, &gateway, services)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mayfly serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin = None;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!("mayfly serve is not ready ({e}); stderr:\n{}", seen.join("\n"))
            });
            if let Some((_, rest)) = line.split_once(" , admin API on http://") {
                admin = rest.split(' ').next().and_then(|a| a.parse().ok());
            } else if line == "mayfly serve: ready" {
                break;
            }
            seen.push(line);
        }
        Gateway { child, admin: admin.expect("the admin API's address") }
    }

    /// `PUT /services/<name>` with `spec` (JSON): status and error message.
    fn deploy(&self, name: &str, spec: &serde_json::Value) -> (u16, String) {
        let auth = format!("Bearer {TOKEN}");
        let body = spec.to_string();
        let reply = http_request(
            self.admin,
            "PUT",
            &format!("/services/{name}"),
            &[("Authorization", &auth)],
            body.as_bytes(),
            Duration::from_secs(30),
        )
        .expect("an answer from the admin API");
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        (reply.status, value["error"].as_str().unwrap_or_default().to_owned())
    }
}

/// Runs `cmd` to its end (at most 30 s, else it is killed and the test fails): exit code and
/// stderr.
fn run_to_end(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mayfly serve");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mayfly serve kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap_or_default())
}

#[test]
fn api_deploys_take_crates_and_images_only_from_their_roots() {
    let gw = Gateway::start("roots", "", &hello(""));
    let image = guest_image("examples/http-hello");
    let krate = repo().join("examples/hello");
    let (status, error) = gw.deploy(
        "built",
        &serde_json::json!({"name": "built", "crate": krate, "path_prefix": "/built"}),
    );
    assert_eq!(status, 400, "a crate outside any build root was accepted: {error}");
    assert!(error.contains("not under a build root"), "{error}");
    for outside in ["/etc/passwd", "/proc/self/exe", "relative.img"] {
        let (status, error) = gw.deploy(
            "img",
            &serde_json::json!({"name": "img", "image": outside, "path_prefix": "/img"}),
        );
        assert_eq!(status, 400, "{outside} was accepted: {error}");
        assert!(error.contains("not under an image root"), "{outside}: {error}");
    }
    // The directory of the file's own images is an image root.
    let (status, error) = gw.deploy(
        "second",
        &serde_json::json!({"name": "second", "image": image, "host": "second.test", "warm_shells": 0}),
    );
    assert_eq!((status, error.as_str()), (200, ""));
}

#[test]
fn a_build_root_admits_its_crates() {
    let examples = repo().join("examples");
    let gw = Gateway::start(
        "build-root",
        &format!("build_roots = [\"{}\"]", examples.display()),
        &hello(""),
    );
    // Under the root: admitted (and then validated as usual: here refused for its size).
    let krate = examples.join("hello");
    let spec = serde_json::json!({"name": "b", "crate": krate, "path_prefix": "/b", "mem_mib": 3});
    let (status, error) = gw.deploy("b", &spec);
    assert_eq!(status, 400);
    assert!(error.contains("`mem_mib` must be"), "{error}");
    let escape = examples.join("../tests/guests/crashy");
    let spec = serde_json::json!({"name": "c", "crate": escape, "path_prefix": "/c"});
    let (status, error) = gw.deploy("c", &spec);
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("not under a build root"), "{error}");
}

#[test]
fn services_are_bounded_and_share_a_memory_budget() {
    // http-hello reserves 32 MiB * 4 instances.
    let gw = Gateway::start("budget", "memory_budget_mib = 200", &hello("mem_mib = 32"));
    let image = guest_image("examples/http-hello");
    let spec = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"name": "more", "image": image, "host": "more.test"});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        spec
    };
    let cases = [
        (serde_json::json!({"max_instances": 100_000}), "`max_instances` must be from 1 to"),
        (serde_json::json!({"warm_shells": 1000}), "`warm_shells` must be at most"),
        (
            serde_json::json!({"mem_mib": 32, "max_instances": 3, "warm_shells": 0}),
            "above the gateway's budget of 200 MiB",
        ),
    ];
    for (extra, needle) in cases {
        let (status, error) = gw.deploy("more", &spec(extra.clone()));
        assert_eq!(status, 400, "{extra} was accepted");
        assert!(error.contains(needle), "{extra}: {error:?} lacks {needle:?}");
    }
    let (status, error) = gw.deploy(
        "more",
        &spec(serde_json::json!({"mem_mib": 16, "max_instances": 4, "warm_shells": 0})),
    );
    assert_eq!((status, error.as_str()), (200, ""), "64 MiB more fits 200");
    drop(gw);

    // A file over budget does not start.
    let dir = scratch("budget-file");
    let (code, stderr) =
        run_to_end(serve_command(&dir, "memory_budget_mib = 100", &hello("mem_mib = 32")));
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("above the gateway's budget of 100 MiB"), "{stderr}");
}

#[test]
fn the_gateway_keeps_its_token_where_only_its_user_can_read_it() {
    // A short configured token.
    let dir = scratch("short-token");
    let (code, stderr) = run_to_end(serve_command(&dir, "admin_token = \"short\"", &hello("")));
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("is 5 characters; use at least 32"), "{stderr}");

    // A token file others can read, left by someone: refused, and left alone.
    let dir = scratch("loose-token");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("admin-token"), "old").unwrap();
    std::fs::set_permissions(state.join("admin-token"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let (code, stderr) = run_to_end(serve_command(&dir, "", &hello("")));
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("readable or writable by others"), "{stderr}");
    assert_eq!(std::fs::read_to_string(state.join("admin-token")).unwrap(), "old");

    // A fresh state directory: 0700, the file 0600, a random 48-digit token.
    let gw = Gateway::start("fresh-token", "", &hello(""));
    drop(gw);
    let state = repo().join("target/test-scratch/policy-fresh-token/state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // Gateway::start configures a token; start one without.
    let dir = scratch("random-token");
    let mut cmd = serve_command(&dir, "", &hello(""));
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let ready = stderr.lines().map_while(Result::ok).any(|l| l == "mayfly serve: ready");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "mayfly serve did not start");
    let file = dir.join("state/admin-token");
    let token = std::fs::read_to_string(&file).unwrap();
    assert_eq!((mode(&dir.join("state")), mode(&file)), (0o700, 0o600));
    assert!(token.len() == 48 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token:?}");
    assert!(token.bytes().any(|b| b != b'0'), "a zero token");
    assert_eq!(mode(&state), 0o700);
}

#[test]
fn mayfly_logs_escapes_the_control_characters_guests_print() {
    require_kvm();
    // The netprobe guest prints its arguments as given: a terminal escape and a bell.
    let netprobe = guest_image("tests/guests/netprobe");
    let service = format!(
        "[[service]]\nname = \"probe\"\nimage = \"{}\"\npath_prefix = \"/\"\nwarm_shells = 0\n\
         min_instances = 1\nargs = [\"say\", \"EVIL=\\u001b]0;owned\\u0007\\u001b[2J\"]\n",
        netprobe.display()
    );
    let gw = Gateway::start("logs-escape", "", &service);
    let logs = |gw: &Gateway| {
        let out = mayfly()
            .args(["logs", "probe", "--admin", &gw.admin.to_string(), "--token", TOKEN])
            .output()
            .expect("run mayfly logs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = logs(&gw);
        if String::from_utf8_lossy(&out).contains("EVIL=") || Instant::now() >= deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("EVIL=\\x1b]0;owned\\x07\\x1b[2J"), "escapes missing:\n{text}");
    assert!(!out.iter().any(|b| *b == 0x1b || *b == 0x07), "raw control bytes:\n{text}");
}
