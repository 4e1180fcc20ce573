//! Modes (the first argument): `udp` (datagrams between sockets on 127.0.0.1: addresses,
//! peek, truncation, connected sockets, timeouts, non-blocking, errors, a thread blocked in
//! `recv_from`) and `poll` (poll(2) on UDP sockets: timeouts, readiness, a wait another
//! thread ends).
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn local() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

fn recv(socket: &UdpSocket, size: usize) -> String {
    let mut buf = vec![0u8; size];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => format!("error {:?} {:?}", e.kind(), e.raw_os_error()),
    }
}

fn udp() {
    let (a, b) = (local(), local());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    println!("bound to 127.0.0.1: {}", a_addr.ip().is_loopback() && a_addr.port() != 0);
    println!("distinct ports: {}", a_addr.port() != b_addr.port());

    a.send_to(b"ping", b_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    println!("b got {:?} from a: {}", String::from_utf8_lossy(&buf[..n]), from == a_addr);
    b.send_to(b"pong", from).unwrap();
    println!("a got {:?}", recv(&a, 64));

    // Peek leaves the datagram; a short buffer truncates it and drops the rest.
    a.send_to(b"0123456789", b_addr).unwrap();
    a.send_to(b"second", b_addr).unwrap();
    let (n, from) = b.peek_from(&mut buf).unwrap();
    println!("peeked {:?} from a: {}", String::from_utf8_lossy(&buf[..n]), from == a_addr);
    println!("truncated: {:?}", recv(&b, 4));
    println!("next: {:?}", recv(&b, 64));

    // A connected socket sends to its peer and takes datagrams from it only.
    let c = local();
    c.connect(a_addr).unwrap();
    println!("peer is a: {}", c.peer_addr().unwrap() == a_addr);
    c.send(b"from c").unwrap();
    let (n, from) = a.recv_from(&mut buf).unwrap();
    println!(
        "a got {:?} from c: {}",
        String::from_utf8_lossy(&buf[..n]),
        from == c.local_addr().unwrap()
    );
    b.send_to(b"not from the peer", c.local_addr().unwrap()).unwrap();
    a.send_to(b"from the peer", c.local_addr().unwrap()).unwrap();
    let n = c.recv(&mut buf).unwrap();
    println!("c got {:?}", String::from_utf8_lossy(&buf[..n]));

    // Timeouts and non-blocking reads.
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let start = Instant::now();
    println!("timed out: {}", recv(&b, 64));
    println!("waited at least 50 ms: {}", start.elapsed() >= Duration::from_millis(50));
    b.set_read_timeout(None).unwrap();
    b.set_nonblocking(true).unwrap();
    println!("non-blocking: {}", recv(&b, 64));
    b.set_nonblocking(false).unwrap();

    // Errors.
    let taken = UdpSocket::bind(a_addr).map(|_| ()).map_err(|e| e.kind());
    println!("bind a's port again: {taken:?}");
    let unconnected = local();
    let sent = unconnected.send(b"where to?").map_err(|e| e.raw_os_error());
    println!("send without a destination: {sent:?}");
    let big = vec![7u8; 70_000];
    let sent = a.send_to(&big, b_addr).map_err(|e| e.raw_os_error());
    println!("send 70000 bytes: {sent:?}");

    // A thread blocked in recv_from while the main thread sends.
    let listener = local();
    let to = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || recv(&listener, 64));
    std::thread::sleep(Duration::from_millis(20));
    a.send_to(b"to the thread", to).unwrap();
    println!("the thread got {:?}", thread.join().unwrap());

    // Many datagrams in order.
    for i in 0..100u32 {
        a.send_to(&i.to_le_bytes(), b_addr).unwrap();
    }
    let in_order = (0..100u32).all(|i| {
        let n = b.recv(&mut buf).unwrap();
        n == 4 && buf[..4] == i.to_le_bytes()
    });
    println!("100 datagrams in order: {in_order}");
}

/// poll(2) on one descriptor: the result and the events.
fn poll_one(socket: &UdpSocket, events: i16, timeout_ms: i32) -> (i32, i16) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd { fd: socket.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
    (n, fd.revents)
}

fn poll() {
    let (a, b) = (local(), local());
    let b_addr = b.local_addr().unwrap();
    let start = Instant::now();
    println!("nothing to read, 30 ms: {:?}", poll_one(&b, libc::POLLIN, 30));
    println!("waited at least 30 ms: {}", start.elapsed() >= Duration::from_millis(30));
    println!("writable: {:?}", poll_one(&b, libc::POLLOUT, 0));
    a.send_to(b"x", b_addr).unwrap();
    println!("a datagram waits: {:?}", poll_one(&b, libc::POLLIN, 1000));
    println!("read {:?}", recv(&b, 8));
    println!("read it all: {:?}", poll_one(&b, libc::POLLIN, 0));
    // Another thread sends while this one waits without a timeout.
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        a.send_to(b"late", b_addr).unwrap();
    });
    println!("woken by another thread: {:?}", poll_one(&b, libc::POLLIN, -1));
    sender.join().unwrap();
    println!("read {:?}", recv(&b, 8));
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("udp") => udp(),
        Some("poll") => poll(),
        other => {
            eprintln!("std-net-probe: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
