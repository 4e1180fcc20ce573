//! State in a real database: examples/pg-notes (hyper + tokio-postgres, unchanged crates) runs
//! under `mayfly serve` and keeps its notes in a PostgreSQL server this test starts on the host
//! (Debian's `postgresql` package: a private data directory, a free loopback port, a private
//! socket directory). The guest reaches it at 10.0.2.2 through the service's
//! `allow_host_ports`. Writes go through the gateway, the service scales to zero, and the reads
//! of a new instance come back from PostgreSQL. The guest authenticates with SCRAM-SHA-256. Never skipped: without PostgreSQL it fails
//! saying what to install.

mod common;

use common::gateway::*;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `postgres` user's password (TCP connections authenticate with SCRAM-SHA-256).
const PASSWORD: &str = "notes-in-a-unikernel";

/// How long PostgreSQL may take to accept connections.
const PG_READY_LIMIT: Duration = Duration::from_secs(60);

/// The newest installed PostgreSQL's bin directory (`/usr/lib/postgresql/<version>/bin`).
fn postgres_bin() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let mut bins: Vec<(u32, PathBuf)> = versions
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    bins.sort();
    match bins.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb and postgres): \
             these tests start a real server; install Debian's `postgresql` package \
             (apt-get install postgresql; scripts/test does it)"
        ),
    }
}

/// The uid and gid PostgreSQL runs as: ours, or, as root (initdb refuses root), the
/// `postgres` user's.
fn server_ids() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("run id");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|_| {
            panic!("running as root, PostgreSQL needs the `postgres` user (from the package)")
        })
    };
    Some((id("-u"), id("-g")))
}

/// A PostgreSQL server of our own, stopped (and its directory removed) on drop, also when the
/// test fails.
struct Postgres {
    child: Child,
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = postgres_bin();
        let ids = server_ids();
        let dir = std::env::temp_dir().join(format!("mayfly-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("socket")).unwrap();
        if let Some((uid, gid)) = ids {
            for path in [dir.clone(), dir.join("socket")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        // As the server's user: setpriv execs, so the child's pid is the server's own.
        let as_server = |program: PathBuf| {
            let mut cmd = match ids {
                Some((uid, gid)) => {
                    let mut cmd = Command::new("setpriv");
                    cmd.args([
                        format!("--reuid={uid}"),
                        format!("--regid={gid}"),
                        "--clear-groups".into(),
                    ]);
                    cmd.arg(program);
                    cmd
                }
                None => Command::new(program),
            };
            cmd.current_dir(&dir);
            cmd
        };
        let data = dir.join("data");
        // TCP (the guest) authenticates with SCRAM; the Unix socket (this test's psql) is trusted.
        let pwfile = dir.join("password");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let init = as_server(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-U", "postgres", "--auth-host=scram-sha-256", "--auth-local=trust"])
            .args(["-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = as_server(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(dir.join("socket"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut server = Postgres { child, dir, port, bin };
        let deadline = Instant::now() + PG_READY_LIMIT;
        while !server.log().contains("database system is ready to accept connections") {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("postgres exited ({status}) before it was ready:\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "postgres not ready in time:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.join("server.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// One query's rows, unaligned, through `psql` on the private Unix socket.
    fn query(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.join("socket"))
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown; killed if it takes longer than 10 s.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `service` has no started instance and none of `image`'s monitors is left.
fn wait_for_zero(gw: &Gateway, service: &str, image: &Path) {
    gw.wait_until("the service scaled to zero", Duration::from_secs(20), || {
        gw.instances(service).is_empty()
    });
    gw.wait_until("its monitor exited", Duration::from_secs(10), || gw.monitors(image).is_empty());
}

#[test]
fn notes_outlive_their_instances_in_postgresql() {
    let pg = Postgres::start();
    let image = guest_image("examples/pg-notes");
    let port = pg.port;
    let gw = Gateway::start(
        "postgres-notes",
        &service(
            "notes",
            "examples/pg-notes",
            &format!(
                "path_prefix = \"/notes\"\nallow_host_ports = [{port}]\nidle_timeout_ms = 300\n\
                 warm_shells = 0\nmem_mib = 64\n\
                 env = {{ PG_PORT = \"{port}\", PG_PASSWORD = \"{PASSWORD}\" }}"
            ),
        ),
    );
    let logs = || format!("service log:\n{}\n{}", gw.logs("notes").join("\n"), gw.stderr());
    let notes: [(&str, &[u8]); 3] =
        [("paint", b"blue"), ("poem", b"two lines\nof verse\n"), ("bytes", &[0, 255, 10, 13])];
    for (key, body) in notes {
        let put = gw.request("PUT", &format!("/notes/{key}"), &[], body);
        assert_eq!(put.status, 204, "PUT {key}: {put:?}\n{}", logs());
    }
    let read = gw.get("/notes/paint");
    assert_eq!((read.status, read.body.as_slice()), (200, &b"blue"[..]), "{read:?}\n{}", logs());
    // The rows are in PostgreSQL itself, not in the instance.
    assert_eq!(pg.query("SELECT key FROM notes ORDER BY key"), "bytes\npaint\npoem\n");
    assert_eq!(
        pg.query("SELECT convert_from(body, 'UTF8') FROM notes WHERE key = 'paint'"),
        "blue\n"
    );

    wait_for_zero(&gw, "notes", &image);
    // Overwrite one note from a fresh instance, then scale to zero again.
    let put = gw.request("PUT", "/notes/paint", &[], b"green");
    assert_eq!(put.status, 204, "PUT paint again: {put:?}\n{}", logs());
    wait_for_zero(&gw, "notes", &image);

    for (key, body) in notes {
        let expected: &[u8] = if key == "paint" { b"green" } else { body };
        let read = gw.get(&format!("/notes/{key}"));
        assert_eq!(read.status, 200, "GET {key} after scale to zero: {read:?}\n{}", logs());
        assert_eq!(read.body, expected, "GET {key} after scale to zero");
    }
    let missing = gw.get("/notes/never-written");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(gw.service("notes")["cold_starts"], 3, "one cold start per round\n{}", logs());
}
