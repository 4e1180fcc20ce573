//! Tap networking, inside a network namespace each test creates (and removes) itself: the tap,
//! the monitor and the clients all live there, so no traffic leaves the namespace.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

const HOST_IP: &str = "10.77.0.1";
const GUEST_IP: &str = "10.77.0.2";
const TAP: &str = "mftap0";

/// A network namespace with a configured tap in it; deleted (with the tap) when dropped.
struct Namespace {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("the `ip` command (iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Namespace {
    fn new(tag: &str) -> Namespace {
        require_kvm();
        // SAFETY-free check: creating namespaces needs root (CI runs as root).
        assert!(
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "tap tests create network namespaces and taps: run them as root"
        );
        let name = format!("mayfly-test-{}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Namespace { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["ip", "tuntap", "add", "dev", TAP, "mode", "tap"]);
        ns.exec(&["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", TAP]);
        ns.exec(&["ip", "link", "set", TAP, "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Boots `image` in the namespace, attached to the tap; waits until it is attached.
    fn boot(&self, image: &std::path::Path, guest_args: &[&str]) -> Running {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, env!("CARGO_BIN_EXE_mayfly"), "run"])
            .arg(image)
            .args(["--net", &format!("tap={TAP}"), "--ip", &format!("{GUEST_IP}/24")])
            .args(["--gateway", HOST_IP, "--timeout", "120", "--"])
            .args(guest_args);
        Running::spawn(cmd, "mayfly: guest attached to tap ").0
    }

    /// Runs `f` on a thread that has entered the namespace (threads it spawns are inside too).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: `fd` is an open network-namespace file; setns changes only this thread.
            let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn guest(port: u16) -> SocketAddr {
    format!("{GUEST_IP}:{port}").parse().unwrap()
}

/// Connects, retrying while the guest boots (ARP and listen); at most 20 s.
fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("cannot reach the guest at {addr}: {e}"),
            Err(_) => std::thread::yield_now(),
        }
    }
}

#[test]
fn http_hello_over_tap() {
    let ns = Namespace::new("http");
    let _hello = ns.boot(&guest_image("examples/http-hello"), &["80"]);
    let statuses = ns.run(|| {
        let mut stream = connect(guest(80));
        let reply = http_exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        (reply.status, reply.body)
    });
    assert_eq!(statuses, (200, b"Hello from a Mayfly unikernel!\n".to_vec()));
}

#[test]
fn kv_round_trips_over_tap() {
    let ns = Namespace::new("kvrt");
    let _kv = ns.boot(&guest_image("examples/kv"), &[]);
    let (created, got) = ns.run(|| {
        let mut s = connect(guest(80));
        let put =
            http_exchange(&mut s, b"PUT /kv/k HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"v\":1}")
                .unwrap();
        let get = http_exchange(&mut s, b"GET /kv/k HTTP/1.1\r\n\r\n").unwrap();
        (put.status, get.body)
    });
    assert_eq!((created, got.as_slice()), (201, br#"{"v":1}"#.as_slice()));
}

#[test]
fn a_hundred_concurrent_clients_over_tap() {
    let ns = Namespace::new("many");
    let _echo = ns.boot(&guest_image("examples/tcp-echo"), &["7"]);
    let ok = ns.run(|| {
        drop(connect(guest(7))); // the guest is up
        let clients: Vec<_> = (0..100)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = connect(guest(7));
                    let message = format!("client {i}\n");
                    s.write_all(message.as_bytes()).unwrap();
                    let mut got = vec![0; message.len()];
                    s.read_exact(&mut got).unwrap();
                    got == message.as_bytes()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap_or(false)).filter(|ok| *ok).count()
    });
    assert_eq!(ok, 100);
}

#[test]
fn guest_connects_out_to_a_server_in_the_namespace() {
    let ns = Namespace::new("out");
    // The server runs in the namespace, on the tap's host address.
    let (port, server) = ns.run(|| {
        let listener = TcpListener::bind(format!("{HOST_IP}:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            (&stream).write_all(format!("tap host got {line}").as_bytes()).unwrap();
        });
        (port, server)
    });
    let port = port.to_string();
    let mut probe =
        ns.boot(&guest_image("tests/guests/netprobe"), &["connect", HOST_IP, &port, "hi"]);
    server.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe.stdout().contains("reply:") && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(probe.stdout().contains("reply: tap host got hi"), "{}", probe.stdout());
    probe.kill();
}

#[test]
fn udp_echo_over_tap() {
    let ns = Namespace::new("udp");
    let _udp = ns.boot(&guest_image("tests/guests/netprobe"), &["udp-echo", "9"]);
    let echoed = ns.run(|| {
        let socket = UdpSocket::bind(format!("{HOST_IP}:0")).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 64];
        loop {
            socket.send_to(b"datagram", guest(9)).unwrap();
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                return buf[..n].to_vec();
            }
            assert!(Instant::now() < deadline, "no UDP echo");
        }
    });
    assert_eq!(echoed, b"datagram");
}

/// A stopped tap guest sends nothing more: no RST comes over a dead link, so clients see
/// silence (a read times out) rather than an end; they do not hang either.
#[test]
fn stopping_the_monitor_silences_tap_clients() {
    let ns = Namespace::new("stop");
    let mut echo = ns.boot(&guest_image("examples/tcp-echo"), &["7"]);
    let mut clients = ns.run(|| {
        (0..5)
            .map(|_| {
                let mut s = connect(guest(7));
                s.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                s
            })
            .collect::<Vec<_>>()
    });
    echo.kill();
    // With the guest gone, nothing answers on the tap: reads time out rather than hang forever
    // (TCP over a dead link gives no RST); writes eventually fail.
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1];
        let started = Instant::now();
        let _ = c.write_all(b"y");
        let r = c.read(&mut b);
        assert!(!matches!(r, Ok(1)), "a dead guest answered");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn serve_boots_a_service_attached_to_a_tap_on_demand() {
    let ns = Namespace::new("serve");
    let dir = repo().join("target/test-scratch/serve-tap");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"test-token-of-at-least-32-characters\"\n\n\
         [[service]]\nname = \"hello\"\nimage = \"{}\"\npath_prefix = \"/hello\"\n\
         max_instances = 1\nwarm_shells = 0\nidle_timeout_ms = 1000\n\
         tap = {{ name = \"{TAP}\", ip = \"{GUEST_IP}/24\", gateway = \"{HOST_IP}\" }}\n",
        guest_image("examples/http-hello").display()
    );
    let path = dir.join("mayfly.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_mayfly"), "serve", "--config"])
        .arg(&path)
        .env("MAYFLY_STATE_DIR", &dir);
    let (gateway, line) = Running::spawn(cmd, "mayfly serve: gateway on http://");
    let addr: SocketAddr = line.split_whitespace().next().unwrap().parse().unwrap();
    // The first request boots an instance on the tap; it idles out (1 s) and is gone before the
    // second request, which boots a fresh one on the same tap.
    let reply = ns.run(move || http(addr, "GET", "/hello", b""));
    assert_eq!((reply.status, reply.body.as_slice()), (200, GREETING), "{reply:?}");
    let first = tap_monitors(gateway.pid());
    assert_eq!(first.len(), 1, "one monitor on the tap after the first request: {first:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while is_alive(first[0]) {
        assert!(Instant::now() < deadline, "instance {} never scaled to zero", first[0]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(tap_monitors(gateway.pid()).is_empty(), "a monitor still holds the tap");
    let reply = ns.run(move || http(addr, "GET", "/hello", b""));
    assert_eq!((reply.status, reply.body.as_slice()), (200, GREETING), "{reply:?}");
    let second = tap_monitors(gateway.pid());
    assert_eq!(second.len(), 1, "one monitor on the tap after the second request: {second:?}");
    assert_ne!(second, first, "the second request was not served by a fresh instance");
}

const GREETING: &[u8] = b"Hello from a Mayfly unikernel!\n";

/// The parent pid of `pid`, and whether it is a zombie; `None` once it is reaped.
fn stat(pid: u32) -> Option<(u32, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let zombie = fields.next()? == "Z";
    Some((fields.next()?.parse().ok()?, zombie))
}

fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, zombie)| !zombie)
}

/// The live monitors attached to the tap that are children of `gateway`.
fn tap_monitors(gateway: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| stat(*pid).is_some_and(|(ppid, zombie)| ppid == gateway && !zombie))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&format!("--net tap={TAP}")) && cmdline.contains("--standby")
        })
        .collect();
    found.sort_unstable();
    found
}

#[test]
fn a_tap_mayfly_run_created_is_gone_after_it_exits() {
    // A namespace whose only tap is `mftap0`: `mayfly run` creates `mfmine0` itself.
    let ns = Namespace::new("gone");
    let mine = "mfmine0";
    let link_exists = |ns: &Namespace| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "ip", "link", "show", "dev", mine])
            .output()
            .expect("ip link show")
            .status
            .success()
    };
    assert!(!link_exists(&ns), "{mine} exists before the run");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_mayfly"), "run"])
        .arg(guest_image("tests/guests/netprobe"))
        .args(["--net", &format!("tap={mine}"), "--ip", "10.78.0.2/24", "--timeout", "3"])
        .args(["--", "idle"]);
    let (running, _) = Running::spawn(cmd, "mayfly: guest attached to tap ");
    assert!(link_exists(&ns), "the run did not create {mine}");
    let (status, stderr) = running.wait(Duration::from_secs(20));
    assert_eq!(status, Some(124), "{stderr}");
    assert!(!link_exists(&ns), "{mine} outlived the run that created it");
}

#[test]
fn udp_datagrams_reach_the_tap_host_and_back() {
    // The counterpart of the user-mode test that UDP goes nowhere: over a tap it is carried.
    let ns = Namespace::new("udpout");
    let (port, server) = ns.run(|| {
        let socket = UdpSocket::bind(format!("{HOST_IP}:0")).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = socket.recv_from(&mut buf).expect("a datagram from the guest");
            socket.send_to(b"pong", from).unwrap();
            buf[..n].to_vec()
        });
        (port, server)
    });
    let port = port.to_string();
    let probe =
        ns.boot(&guest_image("tests/guests/netprobe"), &["udp-send", HOST_IP, &port, "ping"]);
    assert_eq!(server.join().unwrap(), b"ping");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe.stdout().contains("udp: ") {
        assert!(Instant::now() < deadline, "the guest printed no result");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(probe.stdout().contains("udp: reply pong"), "{}", probe.stdout());
    let (status, stderr) = probe.wait(Duration::from_secs(20));
    assert_eq!(status, Some(0), "{stderr}");
}
