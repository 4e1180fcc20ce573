//! examples/http-hello as a native Linux process, for `mayfly bench http` to compare with: the
//! same handler and the same response bytes, served like the guest serves them (one thread, one
//! event loop, HTTP/1.1 keep-alive by default), here with a level-triggered `epoll` loop.
//!
//! `native-http [ADDR:PORT | PORT]` (default `127.0.0.1:0`; a bare port binds 127.0.0.1) prints
//! `listening on ADDR:PORT` on stdout once bound, then serves until killed.
//!
//! `native-http --cgi` answers one request, read from stdin (`GET /` if stdin is empty), on
//! stdout with `Connection: close`, and exits: the handler spawned per request, CGI-style.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// The greeting, byte for byte the one examples/http-hello sends.
const GREETING: &str = "Hello from a Mayfly unikernel!\n";
/// A request head larger than this gets 431 (the guest's limit).
const MAX_HEAD: usize = 8 * 1024;
/// A request body larger than this gets 413 (the guest's limit).
const MAX_BODY: usize = 1 << 20;
/// The epoll token of the listener (connections use their slot index).
const LISTENER: u64 = u64::MAX;
const READABLE: u32 = libc::EPOLLIN as u32;
const WRITABLE: u32 = libc::EPOLLOUT as u32;

/// An epoll instance.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: a system call without pointer arguments.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(Epoll(fd)) }
    }

    fn control(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is a valid epoll_event that outlives the call.
        let r = unsafe { libc::epoll_ctl(self.0, op, fd, &mut event) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Waits for events; returns how many of `events` were filled.
    fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        loop {
            // SAFETY: `events` is writable memory for `max` entries.
            let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), max, -1) };
            match usize::try_from(n) {
                Ok(n) => return Ok(n),
                Err(_) if io::Error::last_os_error().kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(io::Error::last_os_error()),
            }
        }
    }
}

/// What a request head says.
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    keep_alive: bool,
    content_length: usize,
    chunked: bool,
}

/// Parses a request head (without its final empty line). `None` if it is malformed.
fn parse_head(head: &[u8]) -> Option<Head<'_>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n").skip_while(|line| line.is_empty());
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !target.starts_with('/') {
        return None;
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return None,
    };
    let (mut close, mut keep_alive, mut content_length, mut chunked) = (false, false, 0, false);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return None;
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    Some(Head {
        method,
        path: target.split_once('?').map_or(target, |(path, _)| path),
        keep_alive: !close && (minor >= 1 || keep_alive),
        content_length,
        chunked,
    })
}

/// Appends a text/plain response, framed as examples/http-hello frames it.
fn respond(out: &mut Vec<u8>, status: u16, body: &str, keep_alive: bool, head_only: bool) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Not Implemented",
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{}\
         Content-Length: {}\r\nConnection: {}\r\n\r\n",
        if status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// examples/http-hello's handler.
fn route(method: &str, path: &str) -> (u16, &'static str) {
    match (method, path) {
        ("GET" | "HEAD", "/" | "/hello") => (200, GREETING),
        (_, "/" | "/hello") => (405, "method not allowed\n"),
        _ => (404, "not found\n"),
    }
}

struct Connection {
    stream: TcpStream,
    /// Received bytes not yet answered.
    input: Vec<u8>,
    /// Responses not yet sent, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    /// Close once `output` is sent (the client asked to, or sent a bad request, or closed).
    closing: bool,
    /// The interest registered with epoll: READABLE, or WRITABLE while responses wait.
    interest: u32,
}

impl Connection {
    /// Answers every complete request in `input`.
    fn answer(&mut self) {
        while !self.closing {
            let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.input.len() > MAX_HEAD {
                    self.fail(431, "request header fields too large\n");
                }
                return;
            };
            if end + 4 > MAX_HEAD {
                return self.fail(431, "request header fields too large\n");
            }
            let Some(head) = parse_head(&self.input[..end]) else {
                return self.fail(400, "bad request\n");
            };
            if head.chunked {
                return self.fail(501, "chunked request bodies are not supported\n");
            }
            if head.content_length > MAX_BODY {
                return self.fail(413, "request body too large\n");
            }
            let total = end + 4 + head.content_length;
            if self.input.len() < total {
                return; // the body is still on its way
            }
            let (status, body) = route(head.method, head.path);
            let (keep_alive, head_only) = (head.keep_alive, head.method == "HEAD");
            respond(&mut self.output, status, body, keep_alive, head_only);
            self.input.drain(..total);
            self.closing = !keep_alive;
        }
    }

    fn fail(&mut self, status: u16, body: &str) {
        respond(&mut self.output, status, body, false, false);
        self.input.clear();
        self.closing = true;
    }

    /// Handles readiness; false when the connection is done and should be dropped.
    fn ready(&mut self, events: u32, buf: &mut [u8], epoll: &Epoll, token: u64) -> bool {
        if self.interest == READABLE && events & (READABLE | libc::EPOLLHUP as u32) != 0 {
            // One read per wake-up: level-triggered epoll reports what is left.
            match self.stream.read(buf) {
                Ok(0) => {
                    self.answer();
                    self.closing = true;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    self.answer();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => return false,
            }
        } else if events & libc::EPOLLERR as u32 != 0 {
            return false;
        }
        self.flush(epoll, token)
    }

    /// Sends what it can of `output`, then sets the interest: reading only when nothing waits.
    fn flush(&mut self, epoll: &Epoll, token: u64) -> bool {
        while self.sent < self.output.len() {
            match self.stream.write(&self.output[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
            if self.closing {
                let _ = self.stream.shutdown(Shutdown::Write);
                return false;
            }
        }
        let want = if self.output.is_empty() { READABLE } else { WRITABLE };
        if want != self.interest {
            let fd = self.stream.as_raw_fd();
            if epoll.control(libc::EPOLL_CTL_MOD, fd, want, token).is_err() {
                return false;
            }
            self.interest = want;
        }
        true
    }
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.control(libc::EPOLL_CTL_ADD, listener.as_raw_fd(), READABLE, LISTENER)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    let mut connections: Vec<Option<Connection>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = epoll.wait(&mut events)?;
        for event in &events[..n] {
            let (token, flags) = (event.u64, event.events);
            if token == LISTENER {
                accept_all(&listener, &epoll, &mut connections, &mut free);
                continue;
            }
            let Ok(index) = usize::try_from(token) else { continue };
            let Some(Some(connection)) = connections.get_mut(index) else { continue };
            if !connection.ready(flags, &mut buf, &epoll, token) {
                connections[index] = None; // dropping the stream closes it (and its epoll entry)
                free.push(index);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    epoll: &Epoll,
    connections: &mut Vec<Option<Connection>>,
    free: &mut Vec<usize>,
) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => {
                continue;
            }
            Err(e) => {
                eprintln!("native-http: accept: {e}");
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            continue;
        }
        let index = free.pop().unwrap_or(connections.len());
        let token = index as u64;
        if epoll.control(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), READABLE, token).is_err() {
            if index < connections.len() {
                free.push(index);
            }
            continue;
        }
        let connection = Connection {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            closing: false,
            interest: READABLE,
        };
        if index == connections.len() {
            connections.push(Some(connection));
        } else {
            connections[index] = Some(connection);
        }
    }
}

/// `--cgi`: one request from stdin, its response on stdout.
fn cgi() -> io::Result<()> {
    let mut input = Vec::new();
    io::stdin().lock().take(MAX_HEAD as u64 + 1).read_to_end(&mut input)?;
    let mut out = Vec::new();
    match input.windows(4).position(|w| w == b"\r\n\r\n") {
        None if input.is_empty() => {
            let (status, body) = route("GET", "/");
            respond(&mut out, status, body, false, false);
        }
        None => respond(&mut out, 400, "bad request\n", false, false),
        Some(end) => match parse_head(&input[..end]) {
            Some(head) => {
                let (status, body) = route(head.method, head.path);
                respond(&mut out, status, body, false, head.method == "HEAD");
            }
            None => respond(&mut out, 400, "bad request\n", false, false),
        },
    }
    let mut stdout = io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()
}

fn main() {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    if spec == "--cgi" {
        if let Err(e) = cgi() {
            eprintln!("native-http: {e}");
            std::process::exit(1);
        }
        return;
    }
    let addr = match (spec.parse::<SocketAddr>(), spec.parse::<u16>()) {
        (Ok(addr), _) => addr,
        (_, Ok(port)) => SocketAddr::from(([127, 0, 0, 1], port)),
        _ => {
            eprintln!("native-http: {spec:?} is not ADDR:PORT or PORT");
            std::process::exit(2);
        }
    };
    if let Err(e) = serve(addr) {
        eprintln!("native-http: cannot serve on {addr}: {e}");
        std::process::exit(1);
    }
}
