//! TCP sockets (`std::net::TcpListener`/`TcpStream`) over the library OS's network stack
//! (smoltcp on the virtual NIC). Blocking operations run the stack's futures in the calling
//! thread ([`crate::sched::block_on`]): other threads run while it waits, and with nothing to
//! run the vCPU sleeps in the monitor until a frame arrives. IPv4 only (UDP: `crate::udp`); a socket
//! is used by one thread at a time (another thread's operation on it meanwhile fails with
//! EBUSY).

use crate::errno;
use crate::fs::{Entry, fs};
use crate::sched::block_on;
use alloc::boxed::Box;
use core::ffi::{c_int, c_void};
use mayfly::net::{NetError, TcpListener, TcpStream};

/// The network stack's entry points, installed by the first `socket` call. The scheduler and
/// `exit` reach the stack only through them, so a program that never makes a socket does not
/// link smoltcp at all (`--gc-sections` drops what only `socket` reaches).
struct Hooks {
    /// Runs the stack; returns when it next needs to run (ns since boot).
    poll: fn() -> Option<u64>,
    /// Whether written data is not all acknowledged yet.
    unsent: fn() -> bool,
    recv: fn(c_int, &mut [u8], c_int) -> Result<usize, c_int>,
    send: fn(c_int, &[u8]) -> Result<usize, c_int>,
    set_nonblocking: fn(c_int, bool) -> Result<(), c_int>,
    is_nonblocking: fn(c_int) -> Result<bool, c_int>,
}

struct HookCell(core::cell::UnsafeCell<Option<Hooks>>);

// SAFETY: one thread runs at a time; the cell is written once per `socket` call and read by
// the running thread only.
unsafe impl Sync for HookCell {}

static HOOKS: HookCell = HookCell(core::cell::UnsafeCell::new(None));

fn hooks() -> Option<&'static Hooks> {
    // SAFETY: see `HookCell`.
    unsafe { (*HOOKS.0.get()).as_ref() }
}

fn poll_stack() -> Option<u64> {
    mayfly::libc_host::net_poll()
        .map(|at| u64::try_from(at.since_boot().as_nanos()).unwrap_or(u64::MAX))
}

/// Runs the network stack if the program uses it; returns when it next needs to run.
pub fn poll() -> Option<u64> {
    hooks().and_then(|h| (h.poll)())
}

/// Whether the program wrote socket data that is not all acknowledged yet.
pub fn unsent() -> bool {
    hooks().is_some_and(|h| (h.unsent)())
}

/// `read`/`recv` on socket `fd` (for the descriptor calls of `io`).
pub fn socket_read(fd: c_int, buf: &mut [u8], flags: c_int) -> Result<usize, c_int> {
    hooks().ok_or(ENOTSOCK).and_then(|h| (h.recv)(fd, buf, flags))
}

/// `write`/`send` on socket `fd`.
pub fn socket_write(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    hooks().ok_or(ENOTSOCK).and_then(|h| (h.send)(fd, buf))
}

/// Sets or clears non-blocking mode of socket `fd` (FIONBIO, fcntl O_NONBLOCK).
pub fn set_nonblocking(fd: c_int, on: bool) -> Result<(), c_int> {
    hooks().ok_or(ENOTSOCK).and_then(|h| (h.set_nonblocking)(fd, on))
}

/// Whether socket `fd` is non-blocking.
pub fn is_nonblocking(fd: c_int) -> Result<bool, c_int> {
    hooks().ok_or(ENOTSOCK).and_then(|h| (h.is_nonblocking)(fd))
}

pub const ENOTSOCK: c_int = 88;
pub(crate) const EOPNOTSUPP: c_int = 95;
const EAFNOSUPPORT: c_int = 97;
const EADDRINUSE: c_int = 98;
const EADDRNOTAVAIL: c_int = 99;
const ENETDOWN: c_int = 100;
const ECONNRESET: c_int = 104;
const EISCONN: c_int = 106;
const ENOTCONN: c_int = 107;
const ECONNREFUSED: c_int = 111;
const EMFILE: c_int = 24;
const EPIPE: c_int = 32;

const AF_INET: c_int = 2;
const SOCK_STREAM: c_int = 1;
const SOCK_DGRAM: c_int = 2;
const SOCK_NONBLOCK: c_int = 0o4000;
const SOL_SOCKET: c_int = 1;
const SO_ERROR: c_int = 4;
const SO_RCVTIMEO: c_int = 20;
const SO_SNDTIMEO: c_int = 21;
const MSG_PEEK: c_int = 2;
const SHUT_RD: c_int = 0;

/// What a socket is.
enum State {
    /// Made by `socket`, maybe bound to a port.
    Fresh {
        port: u16,
    },
    Listening(TcpListener),
    Connected {
        stream: TcpStream,
        read_shut: bool,
    },
}

/// A socket descriptor's state and options.
pub struct Socket {
    state: State,
    nonblocking: bool,
    /// Readiness already reported by `epoll_wait` (edge-triggered: reported again only after
    /// the socket was seen not ready, or an operation on it read or wrote or found it not
    /// ready).
    pub(crate) reported: (bool, bool),
    /// The `epoll_wait` calls that looked at this socket, woken by every operation on it so
    /// that they look again: an operation changes what is to be reported (and its attempt,
    /// pending, takes the stack's one waker per direction from them), and a thread parked in
    /// `epoll_wait` while another thread reads must still see the next arrival.
    pub(crate) watchers: alloc::vec::Vec<core::task::Waker>,
    read_timeout_ns: Option<u64>,
    write_timeout_ns: Option<u64>,
}

/// `struct sockaddr_in`.
#[repr(C)]
pub struct SockaddrIn {
    family: u16,
    port_be: u16,
    addr: [u8; 4],
    zero: [u8; 8],
}

pub(crate) fn net_errno(e: NetError, connecting: bool) -> c_int {
    match e {
        NetError::NoNetwork => ENETDOWN,
        NetError::TooManySockets => EMFILE,
        NetError::AddrInUse => EADDRINUSE,
        NetError::ConnectionReset if connecting => ECONNREFUSED,
        NetError::ConnectionReset => ECONNRESET,
        NetError::Closed => EPIPE,
        NetError::InvalidAddress => EADDRNOTAVAIL,
    }
}

fn now_ns() -> u64 {
    u64::try_from(mayfly::time::Instant::now().since_boot().as_nanos()).unwrap_or(u64::MAX)
}

/// The deadline of an operation: at once when non-blocking, else after the timeout, if any.
pub(crate) fn deadline(nonblocking: bool, timeout_ns: Option<u64>) -> Option<u64> {
    if nonblocking { Some(0) } else { timeout_ns.map(|t| now_ns().saturating_add(t)) }
}

/// Runs `op` on socket `fd`, taken out of the descriptor table while it runs (it may block).
fn with_socket<R>(fd: c_int, op: impl FnOnce(&mut Socket) -> Result<R, c_int>) -> Result<R, c_int> {
    with_object(fd, op)
}

/// Runs `op` on the network object (socket, epoll, eventfd) of type `T` behind `fd`, taken
/// out of the descriptor table while it runs (ENOTSOCK if `fd` holds something else).
pub(crate) fn with_object<T: 'static, R>(
    fd: c_int,
    op: impl FnOnce(&mut T) -> Result<R, c_int>,
) -> Result<R, c_int> {
    let mut object = fs().take_socket(fd)?;
    let result = match object.downcast_mut::<T>() {
        Some(object) => op(object),
        None => Err(ENOTSOCK),
    };
    fs().put_socket(fd, object);
    result
}

/// Whether `fd` holds a network object of type `T`.
pub(crate) fn holds<T: 'static>(fd: c_int) -> bool {
    with_object(fd, |_: &mut T| Ok(())).is_ok()
}

/// Installs the hooks (first socket, epoll or eventfd).
pub(crate) fn install_hooks() {
    // SAFETY: see `HookCell`.
    unsafe {
        // Opaque to the optimiser: otherwise it may call these functions directly from the
        // readers (the only value ever stored), and every program would link the stack.
        *HOOKS.0.get() = core::hint::black_box(Some(Hooks {
            poll: poll_stack,
            unsent: mayfly::libc_host::net_has_unsent,
            recv: object_read,
            send: object_write,
            set_nonblocking: set_object_nonblocking,
            is_nonblocking: object_is_nonblocking,
        }));
    }
}

fn object_read(fd: c_int, buf: &mut [u8], flags: c_int) -> Result<usize, c_int> {
    if holds::<crate::epoll::EventFd>(fd) {
        return crate::epoll::eventfd_read(fd, buf);
    }
    recv_from(fd, buf, flags)
}

fn object_write(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    if holds::<crate::epoll::EventFd>(fd) {
        return crate::epoll::eventfd_write(fd, buf);
    }
    send_to(fd, buf)
}

fn set_object_nonblocking(fd: c_int, on: bool) -> Result<(), c_int> {
    if holds::<crate::epoll::EventFd>(fd) {
        return with_object(fd, |e: &mut crate::epoll::EventFd| {
            e.nonblocking = on;
            Ok(())
        });
    }
    set_socket_nonblocking(fd, on)
}

fn object_is_nonblocking(fd: c_int) -> Result<bool, c_int> {
    if holds::<crate::epoll::EventFd>(fd) {
        return with_object(fd, |e: &mut crate::epoll::EventFd| Ok(e.nonblocking));
    }
    socket_is_nonblocking(fd)
}

/// Readiness of socket `fd` for `epoll_wait`: (readable, writable), registering `cx` for what
/// is not ready.
pub(crate) fn socket_readiness(
    socket: &mut Socket,
    cx: &mut core::task::Context<'_>,
) -> (bool, bool) {
    match &mut socket.state {
        State::Fresh { .. } => (false, false),
        State::Listening(listener) => (listener.poll_acceptable(cx), false),
        State::Connected { stream, .. } => stream.poll_ready(cx),
    }
}

/// Wakes the `epoll_wait` calls watching `socket` (see [`Socket::watchers`]).
fn wake_watchers(socket: &mut Socket) {
    socket.watchers.drain(..).for_each(core::task::Waker::wake);
}

fn ret(result: Result<c_int, c_int>) -> c_int {
    result.unwrap_or_else(errno::fail)
}

fn ret_size(result: Result<usize, c_int>) -> isize {
    result.map_or_else(|e| errno::fail(e) as isize, |n| n as isize)
}

#[unsafe(no_mangle)]
pub extern "C" fn socket(domain: c_int, kind: c_int, _protocol: c_int) -> c_int {
    if domain != AF_INET {
        return errno::fail(EAFNOSUPPORT);
    }
    if kind & 0xf == SOCK_DGRAM {
        return ret(crate::udp::new_socket(kind & SOCK_NONBLOCK != 0));
    }
    if kind & 0xf != SOCK_STREAM {
        return unavailable!("a raw socket", EPROTONOSUPPORT, -1);
    }
    install_hooks();
    let socket = Socket {
        state: State::Fresh { port: 0 },
        nonblocking: kind & SOCK_NONBLOCK != 0,
        reported: (false, false),
        watchers: alloc::vec::Vec::new(),
        read_timeout_ns: None,
        write_timeout_ns: None,
    };
    ret(fs().add(Entry::Socket(Box::new(socket) as Box<dyn core::any::Any>)))
}

/// Reads a `sockaddr_in`: (address, port).
///
/// # Safety
/// `addr` is readable for `len` bytes.
pub(crate) unsafe fn read_addr(addr: *const SockaddrIn, len: u32) -> Result<([u8; 4], u16), c_int> {
    if addr.is_null() || (len as usize) < size_of::<SockaddrIn>() {
        return Err(errno::EINVAL);
    }
    // SAFETY: C contract, length checked.
    let addr = unsafe { addr.read_unaligned() };
    if c_int::from(addr.family) != AF_INET {
        return Err(EAFNOSUPPORT);
    }
    Ok((addr.addr, u16::from_be(addr.port_be)))
}

/// Writes `(address, port)` as a `sockaddr_in` into `out` (truncated to `*len`).
///
/// # Safety
/// `out` is null or writable for `*len` bytes; `len` is null or readable and writable.
pub(crate) unsafe fn write_addr(out: *mut c_void, len: *mut u32, (ip, port): ([u8; 4], u16)) {
    if out.is_null() || len.is_null() {
        return;
    }
    let addr = SockaddrIn { family: AF_INET as u16, port_be: port.to_be(), addr: ip, zero: [0; 8] };
    // SAFETY: C contract: `len` is readable and writable, `out` writable for `*len` bytes.
    unsafe {
        let n = (*len as usize).min(size_of::<SockaddrIn>());
        core::ptr::copy_nonoverlapping((&raw const addr).cast::<u8>(), out.cast::<u8>(), n);
        *len = size_of::<SockaddrIn>() as u32;
    }
}

/// # Safety
/// `addr` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const SockaddrIn, len: u32) -> c_int {
    // SAFETY: C contract.
    let target = unsafe { read_addr(addr, len) };
    if crate::udp::is_udp(fd) {
        return ret(target.and_then(|addr| crate::udp::bind(fd, addr)));
    }
    ret(target.and_then(|(_, port)| {
        with_socket(fd, |socket| match &mut socket.state {
            State::Fresh { port: bound } => {
                *bound = port;
                Ok(0)
            }
            _ => Err(errno::EINVAL),
        })
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn listen(fd: c_int, _backlog: c_int) -> c_int {
    ret(with_socket(fd, |socket| match socket.state {
        State::Fresh { port } => {
            let port = if port == 0 { ephemeral_port() } else { port };
            socket.state =
                State::Listening(TcpListener::bind(port).map_err(|e| net_errno(e, false))?);
            Ok(0)
        }
        State::Listening(_) => Ok(0),
        State::Connected { .. } => Err(EISCONN),
    }))
}

/// A port for a listener bound to port 0.
fn ephemeral_port() -> u16 {
    static NEXT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    40000 + (n % 9000) as u16
}

/// # Safety
/// `addr` is null or writable for `*len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut c_void,
    len: *mut u32,
    flags: c_int,
) -> c_int {
    let accepted = with_socket(fd, |socket| {
        let at = deadline(socket.nonblocking, socket.read_timeout_ns);
        let State::Listening(listener) = &mut socket.state else { return Err(errno::EINVAL) };
        let accepted = match block_on(listener.accept(), at) {
            Some(stream) => stream.map_err(|e| net_errno(e, false)),
            None => Err(errno::EAGAIN),
        };
        // As for reads: the next connection is a new edge.
        socket.reported.0 = false;
        wake_watchers(socket);
        accepted
    });
    let stream = match accepted {
        Ok(stream) => stream,
        Err(e) => return errno::fail(e),
    };
    let peer = stream.peer().unwrap_or(([0; 4], 0));
    let socket = Socket {
        state: State::Connected { stream, read_shut: false },
        nonblocking: flags & SOCK_NONBLOCK != 0,
        reported: (false, false),
        watchers: alloc::vec::Vec::new(),
        read_timeout_ns: None,
        write_timeout_ns: None,
    };
    let fd = ret(fs().add(Entry::Socket(Box::new(socket) as Box<dyn core::any::Any>)));
    if fd >= 0 {
        // SAFETY: C contract.
        unsafe { write_addr(addr, len, peer) };
    }
    fd
}

/// # Safety
/// `addr` is null or writable for `*len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut c_void, len: *mut u32) -> c_int {
    // SAFETY: the same contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// Connects (a non-blocking socket connects as a blocking one would: the result is known when
/// `connect` returns).
///
/// # Safety
/// `addr` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const SockaddrIn, len: u32) -> c_int {
    // SAFETY: C contract.
    let target = unsafe { read_addr(addr, len) };
    if crate::udp::is_udp(fd) {
        return ret(target.and_then(|addr| crate::udp::connect(fd, addr)));
    }
    ret(target.and_then(|(ip, port)| {
        with_socket(fd, |socket| {
            if !matches!(socket.state, State::Fresh { .. }) {
                return Err(EISCONN);
            }
            let at = socket.write_timeout_ns.map(|t| now_ns().saturating_add(t));
            match block_on(TcpStream::connect(ip, port), at) {
                Some(Ok(stream)) => {
                    socket.state = State::Connected { stream, read_shut: false };
                    Ok(0)
                }
                Some(Err(e)) => Err(net_errno(e, true)),
                None => Err(errno::ETIMEDOUT),
            }
        })
    }))
}

/// Reads from connected socket `fd`.
pub(crate) fn recv_from(fd: c_int, buf: &mut [u8], flags: c_int) -> Result<usize, c_int> {
    if crate::udp::is_udp(fd) {
        return crate::udp::recv(fd, buf, flags).map(|(n, _)| n);
    }
    if flags & MSG_PEEK != 0 {
        return Err(EOPNOTSUPP);
    }
    with_socket(fd, |socket| {
        let result = recv_on(socket, buf);
        wake_watchers(socket);
        result
    })
}

fn recv_on(socket: &mut Socket, buf: &mut [u8]) -> Result<usize, c_int> {
    let at = deadline(socket.nonblocking, socket.read_timeout_ns);
    let State::Connected { stream, read_shut } = &mut socket.state else {
        return Err(ENOTCONN);
    };
    if *read_shut || buf.is_empty() {
        return Ok(0);
    }
    match block_on(stream.read(buf), at) {
        Some(result) => {
            // Data consumed: what arrives next is a new edge, as on Linux, where epoll
            // reports each arrival. tokio stops reading after a short read (no EAGAIN)
            // and waits for that edge; had the socket to be seen not ready first, a reply
            // that arrived before the next epoll_wait would never be reported.
            socket.reported.0 = false;
            result.map_err(|e| net_errno(e, false))
        }
        None => {
            socket.reported.0 = false;
            Err(errno::EAGAIN)
        }
    }
}

/// Writes to connected socket `fd`.
pub(crate) fn send_to(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    if crate::udp::is_udp(fd) {
        return crate::udp::send(fd, buf, None);
    }
    with_socket(fd, |socket| {
        let result = send_on(socket, buf);
        wake_watchers(socket);
        result
    })
}

fn send_on(socket: &mut Socket, buf: &[u8]) -> Result<usize, c_int> {
    let at = deadline(socket.nonblocking, socket.write_timeout_ns);
    let State::Connected { stream, .. } = &mut socket.state else { return Err(ENOTCONN) };
    if buf.is_empty() {
        return Ok(0);
    }
    match block_on(stream.write(buf), at) {
        Some(result) => {
            // Likewise: after a (possibly short) write, room that appears is a new edge.
            socket.reported.1 = false;
            result.map_err(|e| net_errno(e, false))
        }
        None => {
            socket.reported.1 = false;
            Err(errno::EAGAIN)
        }
    }
}

/// # Safety
/// `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: usize, flags: c_int) -> isize {
    // SAFETY: C contract.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    ret_size(recv_from(fd, buf, flags))
}

/// # Safety
/// `buf` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: usize, _flags: c_int) -> isize {
    // SAFETY: C contract.
    let buf = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    ret_size(send_to(fd, buf))
}

#[unsafe(no_mangle)]
pub extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if crate::udp::is_udp(fd) {
        return ret(crate::udp::shutdown(fd));
    }
    ret(with_socket(fd, |socket| {
        let State::Connected { stream, read_shut } = &mut socket.state else {
            return Err(ENOTCONN);
        };
        if how == SHUT_RD {
            *read_shut = true;
        } else {
            stream.shutdown();
            *read_shut |= how != 1;
        }
        Ok(0)
    }))
}

/// # Safety
/// `out` is null or writable for `*len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, out: *mut c_void, len: *mut u32) -> c_int {
    let local = if crate::udp::is_udp(fd) { crate::udp::local(fd) } else { socket_local(fd) };
    match local {
        Ok(addr) => {
            // SAFETY: C contract.
            unsafe { write_addr(out, len, addr) };
            0
        }
        Err(e) => errno::fail(e),
    }
}

fn socket_local(fd: c_int) -> Result<([u8; 4], u16), c_int> {
    with_socket(fd, |socket| {
        let ip = mayfly::net::local_ipv4().unwrap_or([0; 4]);
        Ok(match &socket.state {
            State::Fresh { port } => ([0; 4], *port),
            State::Listening(listener) => (ip, listener.port()),
            State::Connected { stream, .. } => stream.local().unwrap_or((ip, 0)),
        })
    })
}

/// # Safety
/// `out` is null or writable for `*len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, out: *mut c_void, len: *mut u32) -> c_int {
    let peer = if crate::udp::is_udp(fd) {
        crate::udp::peer(fd)
    } else {
        with_socket(fd, |socket| match &socket.state {
            State::Connected { stream, .. } => stream.peer().ok_or(ENOTCONN),
            _ => Err(ENOTCONN),
        })
    };
    match peer {
        Ok(addr) => {
            // SAFETY: C contract.
            unsafe { write_addr(out, len, addr) };
            0
        }
        Err(e) => errno::fail(e),
    }
}

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// Timeouts are kept; other options (SO_REUSEADDR, TCP_NODELAY...) are accepted without
/// effect (connections never use Nagle's algorithm).
///
/// # Safety
/// `value` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: u32,
) -> c_int {
    let timeout = if level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO) {
        if (len as usize) < size_of::<Timeval>() {
            return errno::fail(errno::EINVAL);
        }
        // SAFETY: C contract, length checked.
        let tv = unsafe { value.cast::<Timeval>().read_unaligned() };
        let ns = (tv.sec.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(tv.usec.max(0) as u64 * 1000);
        Some((ns != 0).then_some(ns))
    } else {
        None
    };
    let set = |read: &mut Option<u64>, write: &mut Option<u64>| match (timeout, name) {
        (Some(t), SO_RCVTIMEO) => *read = t,
        (Some(t), _) => *write = t,
        (None, _) => {}
    };
    if crate::udp::is_udp(fd) {
        return ret(with_object(fd, |socket: &mut crate::udp::UdpSock| {
            set(&mut socket.read_timeout_ns, &mut socket.write_timeout_ns);
            Ok(0)
        }));
    }
    ret(with_socket(fd, |socket| {
        set(&mut socket.read_timeout_ns, &mut socket.write_timeout_ns);
        Ok(0)
    }))
}

/// # Safety
/// `value` is writable for `*len` bytes; `len` is readable and writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut c_void,
    len: *mut u32,
) -> c_int {
    let timeouts = if crate::udp::is_udp(fd) {
        with_object(fd, |s: &mut crate::udp::UdpSock| Ok((s.read_timeout_ns, s.write_timeout_ns)))
    } else {
        with_socket(fd, |socket| Ok((socket.read_timeout_ns, socket.write_timeout_ns)))
    };
    let (read_timeout, write_timeout) = match timeouts {
        Ok(t) => t,
        Err(e) => return errno::fail(e),
    };
    if level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO) {
        let ns = if name == SO_RCVTIMEO { read_timeout } else { write_timeout }.unwrap_or(0);
        let tv =
            Timeval { sec: (ns / 1_000_000_000) as i64, usec: (ns % 1_000_000_000 / 1000) as i64 };
        // SAFETY: C contract.
        unsafe {
            if (*len as usize) < size_of::<Timeval>() {
                return errno::fail(errno::EINVAL);
            }
            value.cast::<Timeval>().write_unaligned(tv);
            *len = size_of::<Timeval>() as u32;
        }
        return 0;
    }
    // SO_ERROR (no pending error) and flags such as TCP_NODELAY: an int, 0 except TCP_NODELAY.
    let answer: c_int = if level == SOL_SOCKET && name == SO_ERROR {
        0
    } else {
        c_int::from(level == 6 && name == 1)
    };
    // SAFETY: C contract.
    unsafe {
        if (*len as usize) < size_of::<c_int>() {
            return errno::fail(errno::EINVAL);
        }
        value.cast::<c_int>().write_unaligned(answer);
        *len = size_of::<c_int>() as u32;
    }
    0
}

fn set_socket_nonblocking(fd: c_int, on: bool) -> Result<(), c_int> {
    if crate::udp::is_udp(fd) {
        return with_object(fd, |socket: &mut crate::udp::UdpSock| {
            socket.nonblocking = on;
            Ok(())
        });
    }
    with_socket(fd, |socket| {
        socket.nonblocking = on;
        Ok(())
    })
}

fn socket_is_nonblocking(fd: c_int) -> Result<bool, c_int> {
    if crate::udp::is_udp(fd) {
        return with_object(fd, |socket: &mut crate::udp::UdpSock| Ok(socket.nonblocking));
    }
    with_socket(fd, |socket| Ok(socket.nonblocking))
}

/// Name resolution: no resolver (numeric addresses need none: std parses them itself).
#[unsafe(no_mangle)]
pub extern "C" fn getaddrinfo(
    _node: *const c_char,
    _service: *const c_char,
    _hints: *const c_void,
    _out: *mut *mut c_void,
) -> c_int {
    unavailable!("getaddrinfo (name resolution)", ENOSYS, EAI_FAIL)
}

const EAI_FAIL: c_int = -4;

#[unsafe(no_mangle)]
pub extern "C" fn freeaddrinfo(_list: *mut c_void) {}

#[unsafe(no_mangle)]
pub extern "C" fn gai_strerror(_code: c_int) -> *const c_char {
    c"Name resolution is not available in a unikernel".as_ptr()
}

use core::ffi::c_char;

/// Rereads resolver settings (std calls it after a failed lookup): there are none.
#[unsafe(no_mangle)]
pub extern "C" fn __res_init() -> c_int {
    0
}
