//! UDP sockets (`std::net::UdpSocket`, tokio's through epoll). Datagrams between the program's
//! own sockets (to 127.0.0.0/8 or the guest's own address) are delivered in memory, as a
//! kernel's loopback would; others go through the library OS's network stack (smoltcp), which
//! a tap carries (user-mode networking carries TCP only). A datagram to a local port nobody
//! bound is dropped, as is one that finds its receiver's queue full.

use crate::errno;
use crate::fs::{Entry, fs};
use crate::net::{deadline, install_hooks, net_errno, with_object};
use crate::sched::block_on;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::future::poll_fn;
use core::task::{Context, Poll, Waker};

const MSG_PEEK: c_int = 2;
const EDESTADDRREQ: c_int = 89;
const EMSGSIZE: c_int = 90;
const EADDRINUSE: c_int = 98;
const ENETUNREACH: c_int = 101;
const ENOTCONN: c_int = 107;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// Datagrams a local port holds before further ones are dropped.
const QUEUE: usize = 256;

type Addr = ([u8; 4], u16);

struct Datagram {
    data: Vec<u8>,
    from: Addr,
}

/// The datagrams waiting at a bound port, and who waits for them.
#[derive(Default)]
struct Mailbox {
    queue: VecDeque<Datagram>,
    wakers: Vec<Waker>,
}

struct Ports(UnsafeCell<BTreeMap<u16, Mailbox>>);

// SAFETY: one thread runs at a time (a cooperative scheduler on one vCPU) and no reference
// to the map is held across a switch.
unsafe impl Sync for Ports {}

static PORTS: Ports = Ports(UnsafeCell::new(BTreeMap::new()));

fn ports() -> &'static mut BTreeMap<u16, Mailbox> {
    // SAFETY: see `Ports`.
    unsafe { &mut *PORTS.0.get() }
}

/// Adds `waker` to `wakers` unless it is there already.
fn register(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}

/// A UDP socket descriptor.
pub struct UdpSock {
    /// The bound address and port (port 0: not bound yet).
    local: Addr,
    peer: Option<Addr>,
    /// The stack's socket on the same port, when the guest has a NIC.
    net: Option<mayfly::net::UdpSocket>,
    pub nonblocking: bool,
    /// Readiness already reported by `epoll_wait` (see `crate::epoll`).
    pub(crate) reported: (bool, bool),
    pub(crate) read_timeout_ns: Option<u64>,
    pub(crate) write_timeout_ns: Option<u64>,
}

impl Drop for UdpSock {
    fn drop(&mut self) {
        if self.local.1 != 0
            && let Some(mailbox) = ports().remove(&self.local.1)
        {
            mailbox.wakers.into_iter().for_each(Waker::wake);
        }
    }
}

/// `socket(AF_INET, SOCK_DGRAM)`.
pub fn new_socket(nonblocking: bool) -> Result<c_int, c_int> {
    install_hooks();
    let socket = UdpSock {
        local: ([0; 4], 0),
        peer: None,
        net: None,
        nonblocking,
        reported: (false, false),
        read_timeout_ns: None,
        write_timeout_ns: None,
    };
    fs().add(Entry::Socket(Box::new(socket) as Box<dyn core::any::Any>))
}

/// Whether `fd` is a UDP socket.
pub fn is_udp(fd: c_int) -> bool {
    crate::net::holds::<UdpSock>(fd)
}

fn with_udp<R>(fd: c_int, op: impl FnOnce(&mut UdpSock) -> Result<R, c_int>) -> Result<R, c_int> {
    with_object(fd, op)
}

/// A free port for a socket bound to port 0.
fn ephemeral_port() -> Result<u16, c_int> {
    static NEXT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    for _ in 0..9000 {
        let n = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let port = 50000 + (n % 9000) as u16;
        if !ports().contains_key(&port) {
            return Ok(port);
        }
    }
    Err(EADDRINUSE)
}

fn bind_socket(socket: &mut UdpSock, (ip, port): Addr) -> Result<(), c_int> {
    if socket.local.1 != 0 {
        return Err(errno::EINVAL);
    }
    let port = if port == 0 { ephemeral_port()? } else { port };
    if ports().contains_key(&port) {
        return Err(EADDRINUSE);
    }
    if mayfly::net::local_ipv4().is_some() {
        socket.net = Some(mayfly::net::UdpSocket::bind(port).map_err(|e| net_errno(e, false))?);
    }
    ports().insert(port, Mailbox::default());
    socket.local = (ip, port);
    Ok(())
}

/// `bind`.
pub fn bind(fd: c_int, addr: Addr) -> Result<c_int, c_int> {
    with_udp(fd, |socket| bind_socket(socket, addr).map(|()| 0))
}

/// `connect`: sets the default destination and the only source datagrams are taken from.
pub fn connect(fd: c_int, addr: Addr) -> Result<c_int, c_int> {
    with_udp(fd, |socket| {
        if socket.local.1 == 0 {
            bind_socket(socket, ([0; 4], 0))?;
        }
        socket.peer = Some(addr);
        Ok(0)
    })
}

/// Whether datagrams to `ip` stay inside the guest.
fn is_local(ip: [u8; 4]) -> bool {
    ip[0] == 127 || mayfly::net::local_ipv4() == Some(ip)
}

/// `send`/`sendto`/`write`: to `to`, else the connected peer.
pub fn send(fd: c_int, data: &[u8], to: Option<Addr>) -> Result<usize, c_int> {
    with_udp(fd, |socket| {
        let (ip, port) = to.or(socket.peer).ok_or(EDESTADDRREQ)?;
        if data.len() > MAX_DATAGRAM {
            return Err(EMSGSIZE);
        }
        if socket.local.1 == 0 {
            bind_socket(socket, ([0; 4], 0))?;
        }
        if is_local(ip) {
            // The source is the address it was sent to (loopback) unless the socket is bound to
            // a specific one.
            let source = if socket.local.0 == [0; 4] { ip } else { socket.local.0 };
            if let Some(mailbox) = ports().get_mut(&port)
                && mailbox.queue.len() < QUEUE
            {
                let from = (source, socket.local.1);
                mailbox.queue.push_back(Datagram { data: data.to_vec(), from });
                mailbox.wakers.drain(..).for_each(Waker::wake);
            }
            return Ok(data.len());
        }
        let at = deadline(socket.nonblocking, socket.write_timeout_ns);
        let net = socket.net.as_ref().ok_or(ENETUNREACH)?;
        match block_on(net.send_to(data, ip, port), at) {
            Some(result) => result.map(|()| data.len()).map_err(|e| net_errno(e, false)),
            None => {
                socket.reported.1 = false;
                Err(errno::EAGAIN)
            }
        }
    })
}

/// Takes (or with MSG_PEEK copies) the next datagram for `socket` into `buf`, registering `cx`
/// if there is none yet.
fn poll_recv(
    socket: &UdpSock,
    buf: &mut [u8],
    flags: c_int,
    cx: &mut Context<'_>,
) -> Poll<Result<(usize, Addr), c_int>> {
    let Some(mailbox) = ports().get_mut(&socket.local.1) else {
        return Poll::Ready(Err(errno::EBADF));
    };
    while let Some(datagram) = mailbox.queue.front() {
        // A connected socket takes datagrams from its peer only.
        if socket.peer.is_some_and(|peer| peer != datagram.from) {
            mailbox.queue.pop_front();
            continue;
        }
        let n = datagram.data.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram.data[..n]);
        let from = datagram.from;
        if flags & MSG_PEEK == 0 {
            mailbox.queue.pop_front();
        }
        return Poll::Ready(Ok((n, from)));
    }
    register(&mut mailbox.wakers, cx.waker());
    if let Some(net) = &socket.net
        && net.poll_ready(cx).0
    {
        if flags & MSG_PEEK != 0 {
            return Poll::Ready(Err(crate::net::EOPNOTSUPP));
        }
        // Ready: one attempt completes at once.
        if let Some(result) = block_on(net.recv_from(buf), Some(0)) {
            return Poll::Ready(
                result.map(|(n, ip, port)| (n, (ip, port))).map_err(|e| net_errno(e, false)),
            );
        }
    }
    Poll::Pending
}

/// `recv`/`recvfrom`/`read`: a datagram (truncated to `buf`) and its sender.
pub fn recv(fd: c_int, buf: &mut [u8], flags: c_int) -> Result<(usize, Addr), c_int> {
    with_udp(fd, |socket| {
        if socket.local.1 == 0 {
            bind_socket(socket, ([0; 4], 0))?;
        }
        let at = deadline(socket.nonblocking, socket.read_timeout_ns);
        let socket_ref = &*socket;
        match block_on(poll_fn(|cx| poll_recv(socket_ref, buf, flags, cx)), at) {
            Some(result) => result,
            None => {
                socket.reported.0 = false;
                Err(errno::EAGAIN)
            }
        }
    })
}

/// Readiness (readable, writable), registering `cx` for a datagram if none is waiting.
pub(crate) fn readiness(socket: &mut UdpSock, cx: &mut Context<'_>) -> (bool, bool) {
    let Some(mailbox) = ports().get_mut(&socket.local.1) else { return (false, true) };
    if !mailbox.queue.is_empty() {
        return (true, true);
    }
    register(&mut mailbox.wakers, cx.waker());
    let net = socket.net.as_ref().map_or((false, true), |net| net.poll_ready(cx));
    (net.0, true)
}

/// `getsockname`.
pub fn local(fd: c_int) -> Result<Addr, c_int> {
    with_udp(fd, |socket| Ok(socket.local))
}

/// `getpeername`.
pub fn peer(fd: c_int) -> Result<Addr, c_int> {
    with_udp(fd, |socket| socket.peer.ok_or(ENOTCONN))
}

/// `shutdown`: nothing to do on a connected socket.
pub fn shutdown(fd: c_int) -> Result<c_int, c_int> {
    with_udp(fd, |socket| socket.peer.map(|_| 0).ok_or(ENOTCONN))
}

fn ret_size(result: Result<usize, c_int>) -> isize {
    result.map_or_else(|e| errno::fail(e) as isize, |n| n as isize)
}

/// # Safety
/// `buf` is readable for `len` bytes; `addr` is null or readable for `addr_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const core::ffi::c_void,
    len: usize,
    _flags: c_int,
    addr: *const crate::net::SockaddrIn,
    addr_len: u32,
) -> isize {
    // SAFETY: C contract.
    let data = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    if !is_udp(fd) {
        // A connected (TCP) socket ignores the address, as Linux does.
        return ret_size(crate::net::send_to(fd, data));
    }
    let to = if addr.is_null() {
        None
    } else {
        // SAFETY: C contract.
        match unsafe { crate::net::read_addr(addr, addr_len) } {
            Ok(to) => Some(to),
            Err(e) => return errno::fail(e) as isize,
        }
    };
    ret_size(send(fd, data, to))
}

/// # Safety
/// `buf` is writable for `len` bytes; `addr` is null or writable for `*addr_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut core::ffi::c_void,
    len: usize,
    flags: c_int,
    addr: *mut core::ffi::c_void,
    addr_len: *mut u32,
) -> isize {
    // SAFETY: C contract.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    if !is_udp(fd) {
        return ret_size(crate::net::recv_from(fd, buf, flags));
    }
    match recv(fd, buf, flags) {
        Ok((n, from)) => {
            // SAFETY: C contract.
            unsafe { crate::net::write_addr(addr, addr_len, from) };
            n as isize
        }
        Err(e) => errno::fail(e) as isize,
    }
}
