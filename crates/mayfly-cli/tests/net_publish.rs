//! User-mode networking (`--publish`, `--allow-host-port`): real guests, real TCP on loopback.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn echo() -> Running {
    Running::start(&guest_image("examples/tcp-echo"), &["--publish", "0:7", "--timeout", "60"], &[])
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the published port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).unwrap();
    let mut got = vec![0; message.len()];
    stream.read_exact(&mut got).expect("echo reply");
    got
}

#[test]
fn echo_over_a_published_port() {
    let server = echo();
    let mut stream = connect(server.addr);
    assert_eq!(round_trip(&mut stream, b"hello mayfly\n"), b"hello mayfly\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut stream, &big), big, "200 KB survive the trip intact");
    assert!(server.stdout().contains("tcp-echo: listening on port 7"));
}

/// Reads until EOF or a reset, failing if neither comes within `limit` (a read timeout is not a
/// close); returns how long it took and what was read.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (started.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) => {
                return (started.elapsed(), got);
            }
            Err(e) => panic!("not closed within {limit:?} ({e}); read so far {got:?}"),
        }
        assert!(started.elapsed() < limit, "not closed within {limit:?}; read {got:?}");
    }
}

#[test]
fn a_connection_made_while_the_guest_boots_is_held_until_it_listens() {
    // The guest listens only 1.5 s after it starts; connect at once, before it does.
    let server = Running::start(
        &guest_image("tests/guests/netprobe"),
        &["--publish", "0:7", "--timeout", "60"],
        &["listen-after", "1500", "7"],
    );
    let mut stream = connect(server.addr);
    let listening = "listen-after: listening on port 7";
    assert!(!server.stdout().contains(listening), "the guest listened before the client came");
    let (took, reply) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert_eq!(reply, b"late\n", "the held connection reached the guest once it listened");
    // The guest's console line may arrive a moment after its answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stdout().contains(listening) {
        assert!(Instant::now() < deadline, "the guest never said it listens: {}", server.stdout());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(took >= Duration::from_millis(500), "answered after {took:?}: it was not held");
}

#[test]
fn a_held_connection_is_given_up_after_5_s_when_the_guest_never_listens() {
    let server = Running::start(
        &guest_image("tests/guests/netprobe"),
        &["--publish", "0:7", "--timeout", "60"],
        &["idle"],
    );
    let mut stream = connect(server.addr);
    let (took, got) = read_until_closed(&mut stream, Duration::from_secs(15));
    assert!(got.is_empty(), "{got:?}");
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(9)).contains(&took),
        "closed after {took:?}, not after the 5 s hold"
    );
}

#[test]
fn a_hundred_concurrent_clients_each_get_their_own_answers() {
    let server = echo();
    let addr = server.addr;
    let clients: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                for round in 0..5 {
                    let message = format!("client {i} round {round}\n");
                    assert_eq!(round_trip(&mut stream, message.as_bytes()), message.as_bytes());
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

#[test]
fn guest_connects_out_to_an_allowed_host_port_only() {
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = host.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        (&stream).write_all(format!("host got {}", line).as_bytes()).unwrap();
    });
    let image = guest_image("tests/guests/netprobe");
    let port_arg = port.to_string();
    let run = run_image(
        &image,
        &["--allow-host-port", &port_arg, "--timeout", "20"],
        &["connect", "10.0.2.2", &port_arg, "ping-from-guest"],
    );
    assert_eq!(run.status, Some(0), "stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("reply: host got ping-from-guest"), "{}", run.stdout);
    server.join().unwrap();

    // The same without permission is refused, and the guest sees the refusal.
    let run = run_image(&image, &["--timeout", "20"], &["connect", "10.0.2.2", &port_arg, "x"]);
    assert_eq!(run.status, Some(1), "stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Error: ConnectionReset"), "{}", run.stdout);
}

#[test]
fn stopping_the_monitor_ends_connected_clients_cleanly() {
    let mut server = echo();
    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(server.addr)).collect();
    for c in &mut clients {
        assert_eq!(round_trip(c, b"ping\n"), b"ping\n");
    }
    server.kill();
    for c in &mut clients {
        // EOF or a reset within 5 s; a read that times out would be a hung client.
        let (_, got) = read_until_closed(c, Duration::from_secs(5));
        assert!(got.is_empty(), "read {got:?} from a dead server");
    }
}

#[test]
fn too_many_idle_connections_are_refused_not_fatal() {
    let server = echo();
    // More than the guest's socket limit (512): the excess is closed, the rest still work.
    let mut open = Vec::new();
    for _ in 0..700 {
        open.push(connect(server.addr));
    }
    let mut served = 0;
    let mut refused = 0;
    for stream in &mut open {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match stream.write_all(b"?").and_then(|()| {
            let mut b = [0u8; 1];
            stream.read(&mut b)
        }) {
            Ok(1) => served += 1,
            // Refused means closed: EOF or a reset, not a read that timed out.
            Ok(_) => refused += 1,
            Err(e) if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) => {
                refused += 1;
            }
            Err(e) => panic!("a connection neither served nor closed: {e}"),
        }
    }
    assert!(served >= 400, "served {served}, refused {refused}");
    assert!(refused >= 100, "served {served}, refused {refused}");
    drop(open);
    // Once they are gone, a new client is served again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut stream = connect(server.addr);
        if stream.write_all(b"again").is_ok() {
            let mut got = [0u8; 5];
            if stream.read_exact(&mut got).is_ok() {
                assert_eq!(&got, b"again");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the guest never recovered");
    }
}

#[test]
fn publishing_for_an_image_without_a_nic_is_refused() {
    let hello = guest_image("examples/hello");
    let run = run_image(&hello, &["--publish", "0:80"], &[]);
    assert_eq!(run.status, Some(125));
    run.assert_one_line_error("the image declares no network device");
}

#[test]
fn bad_network_options_are_refused() {
    let echo_image = guest_image("examples/tcp-echo");
    for (options, needle) in [
        (&["--publish", "80"][..], "is not [ADDR:]HOST_PORT:GUEST_PORT"),
        (&["--publish", "0:0"][..], "the guest port must not be 0"),
        (&["--net", "wire"][..], "is not `tap` or `tap=NAME`"),
        (&["--net", "tap"][..], "--net tap needs the guest's address"),
        (&["--ip", "10.0.0.2/24"][..], "--ip, --gateway and --mac apply to --net tap"),
        (&["--net", "tap", "--ip", "10.0.0.2"][..], "is not an IPv4 address with a prefix"),
        (&["--mac", "02:00:00:00:00:01"][..], "--ip, --gateway and --mac apply to --net tap"),
        (&["--net", "tap", "--mac", "02:00:00:00:01"][..], "is not a unicast MAC address"),
        (&["--net", "tap", "--mac", "01:00:5e:00:00:01"][..], "is not a unicast MAC address"),
    ] {
        let run = run_image(&echo_image, options, &[]);
        assert_eq!(run.status, Some(125), "{options:?}: {}", run.stderr);
        run.assert_one_line_error(needle);
    }
}

#[test]
fn a_taken_host_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("{}:7", taken.local_addr().unwrap().port());
    let run = run_image(&guest_image("examples/tcp-echo"), &["--publish", &spec], &[]);
    assert_eq!(run.status, Some(125));
    run.assert_one_line_error("choose another host port");
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let server = Running::start(
        &guest_image("examples/tcp-echo"),
        &["--publish", "0:7", "--max-connections", "5", "--timeout", "60"],
        &[],
    );
    let mut open: Vec<TcpStream> = (0..5).map(|_| connect(server.addr)).collect();
    for stream in &mut open {
        assert_eq!(round_trip(stream, b"in\n"), b"in\n");
    }
    // The sixth is accepted by the host's kernel, then closed by the monitor at once: EOF or
    // a reset within 2 s (a read that times out is not a close).
    let mut extra = connect(server.addr);
    let _ = extra.write_all(b"over\n");
    let (took, got) = read_until_closed(&mut extra, Duration::from_secs(2));
    assert!(got.is_empty(), "the connection over the limit was served: {got:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    drop(open);
}

#[test]
fn a_port_published_on_a_unix_socket_is_carried_and_its_file_removed_at_exit() {
    require_kvm();
    let dir = repo().join("target/test-scratch/net-publish-unix");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let spec = format!("unix:{}:7", path.display());
    let mut child = mayfly()
        .arg("run")
        .arg(guest_image("examples/tcp-echo"))
        .args(["--publish", &spec, "--timeout", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mayfly");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim_end(),
        format!("mayfly: publishing unix:{} -> guest port 7", path.display())
    );
    // No TCP port: the socket file is the published address.
    let mut stream = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"over unix\n").unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"over unix\n");
    drop(stream);
    // At exit (here: the time limit, under the sandbox) the monitor removes the file.
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    assert!(!path.exists(), "{} outlived the monitor", path.display());
    // A path that exists is refused with a clear error, not replaced.
    std::fs::write(&path, b"not a socket").unwrap();
    let run = run_image(&guest_image("examples/tcp-echo"), &["--publish", &spec], &[]);
    assert_eq!(run.status, Some(125), "{}", run.stderr);
    run.assert_one_line_error("cannot listen on unix:");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

/// The local addresses of the host's listening TCP sockets on `port` (IPv4 and IPv6).
fn listeners_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let Some((ip, hex_port)) = local.split_once(':') else { continue };
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                found.push(ip.to_owned());
            }
        }
    }
    found
}

#[test]
fn published_ports_listen_on_loopback_by_default() {
    let server = echo();
    assert_eq!(server.addr.ip(), std::net::Ipv4Addr::LOCALHOST, "the announced address");
    // The kernel's view: one listener on the port, on 127.0.0.1 (0100007F), nothing wider.
    assert_eq!(listeners_on(server.addr.port()), vec!["0100007F".to_owned()]);
}

#[test]
fn guest_traffic_to_any_address_but_the_host_alias_goes_nowhere() {
    // A host server the guest may reach as 10.0.2.2:PORT; no other address may reach it.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let image = guest_image("tests/guests/netprobe");
    for target in ["127.0.0.1", "10.0.2.3", "192.0.2.1", "8.8.8.8"] {
        let run = run_image(
            &image,
            &["--allow-host-port", &port, "--timeout", "3"],
            &["connect", target, &port, "x"],
        );
        assert_ne!(run.status, Some(0), "{target}: stdout {} stderr {}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("reply:"), "{target} answered: {}", run.stdout);
        match host.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a connection to {target} reached the host: {other:?}"),
        }
    }
}

#[test]
fn udp_is_not_carried_in_user_mode() {
    // A host UDP server on the port the guest may use for TCP: the guest's datagram to
    // 10.0.2.2 never reaches it, and nothing answers the guest.
    let host = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let run = run_image(
        &guest_image("tests/guests/netprobe"),
        &["--allow-host-port", &port, "--timeout", "10"],
        &["udp-send", "10.0.2.2", &port, "datagram"],
    );
    assert_eq!(run.status, Some(0), "stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("udp: no reply"), "{}", run.stdout);
    let mut buf = [0u8; 64];
    match host.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a guest datagram reached the host: {other:?}"),
    }
}
