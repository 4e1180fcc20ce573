//! User-mode networking: no tap, no root. The monitor itself is the guest's only peer.
//!
//! The guest sees an Ethernet link to a host at [`HOST_IP`] (its gateway), with its own address
//! [`GUEST_IP`]/24. On the monitor's side of that link runs a smoltcp stack. For every published
//! port (`--publish <host port>:<guest port>`), the monitor listens on the host; each accepted
//! connection is carried to the guest by a smoltcp TCP connection to the guest's port, bytes
//! spliced both ways. A guest may connect out to `HOST_IP:<port>` only for ports the user allowed
//! (`--allow-host-port <port>`): those connections are carried to `127.0.0.1:<port>` on the host.
//! Every other connection attempt is refused (RST) by the stack.
//!
//! A host connection that arrives before the guest listens (it is still booting) is held, and
//! its connection to the guest retried, for up to [`HOLD`]: a client may connect as soon as the
//! monitor starts, and its request is answered as soon as the guest is ready. The same holds a
//! burst of connections that overflows the guest's backlog for a moment. Retries start
//! [`FIRST_RETRY`] after a refusal and back off, doubling, to [`RETRY`] apart, so that a guest a
//! moment away from its `listen` is not kept waiting a whole `RETRY`.
//!
//! System calls are the monitor's main cost, so host sockets are only touched when they are known
//! to be ready: each listener and each carried connection has readiness flags, set from what
//! `poll(2)` reports ([`Backend::ready`]) and cleared when an `accept`, `recv` or `send` would
//! block (or a `recv` comes back short: the socket was drained). Poll is level-triggered and
//! always asked about every listener and every open host socket, so a cleared flag is set again
//! by the next poll if the socket is (or becomes) ready; when the guest keeps the monitor from
//! blocking in poll, [`REFRESH`] bounds how long readiness can go unobserved.

use super::Backend;
use super::host::{HostAddr, HostListener, HostStream};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket,
};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The guest's address on the user-mode link.
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
/// The host's (the monitor's) address on the link: the guest's gateway.
pub const HOST_IP: [u8; 4] = [10, 0, 2, 2];
/// Prefix length of the link.
pub const PREFIX_LEN: u8 = 24;
/// The guest's MAC address on the link.
pub const GUEST_MAC: [u8; 6] = [0x02, 0x4d, 0x46, 0x00, 0x00, 0x0f];
const HOST_MAC: [u8; 6] = [0x02, 0x4d, 0x46, 0x00, 0x00, 0x02];
/// Connections carried at once by default; further host connections are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Frames queued for the guest while its RX ring is full; beyond this they are dropped (TCP
/// retransmits).
const MAX_QUEUED_FRAMES: usize = 4096;
const SOCKET_BUFFER: usize = 64 * 1024;
/// How long a host connection is held while the guest refuses it (not listening yet).
pub const HOLD: Duration = Duration::from_secs(5);
/// Longest pause between connection attempts to a guest that refused.
pub const RETRY: Duration = Duration::from_millis(10);
/// First pause after a refusal (then doubled up to [`RETRY`]).
pub const FIRST_RETRY: Duration = Duration::from_micros(250);
/// Longest time the flags go without being refreshed by a poll: when the guest never lets the
/// monitor block (it always has frames to take, or waits with a zero timeout), a zero-timeout
/// poll is made at the next pump after this.
pub const REFRESH: Duration = Duration::from_millis(1);

/// A published port: host address to listen on, guest port to carry connections to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Where the monitor listens: a TCP address, or a Unix socket path.
    pub host: HostAddr,
    /// The guest's port.
    pub guest_port: u16,
}

/// Frames between the monitor's stack and the guest's rings.
#[derive(Default)]
struct Link {
    from_guest: VecDeque<Vec<u8>>,
    to_guest: VecDeque<Vec<u8>>,
}

struct LinkRx(Vec<u8>);
struct LinkTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for LinkRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for LinkTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        if self.0.len() < MAX_QUEUED_FRAMES {
            self.0.push_back(frame);
        }
        result
    }
}

impl Device for Link {
    type RxToken<'a> = LinkRx;
    type TxToken<'a> = LinkTx<'a>;

    fn receive(&mut self, _: NetInstant) -> Option<(LinkRx, LinkTx<'_>)> {
        let frame = self.from_guest.pop_front()?;
        Some((LinkRx(frame), LinkTx(&mut self.to_guest)))
    }

    fn transmit(&mut self, _: NetInstant) -> Option<LinkTx<'_>> {
        Some(LinkTx(&mut self.to_guest))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 14 + mayfly_abi::net::MTU as usize;
        caps
    }
}

/// A published port's host socket.
struct Listener {
    socket: HostListener,
    guest_port: u16,
    /// Poll reported it readable and `accept` has not yet said it would block.
    acceptable: bool,
}

/// One TCP connection carried between a host socket and the guest.
struct Splice {
    host: HostStream,
    socket: SocketHandle,
    /// Bytes received from the guest, not yet written to the host.
    to_host: Vec<u8>,
    /// The host socket may have bytes (or EOF, or an error) to read: not known to be drained.
    readable: bool,
    /// The host socket may take bytes: the last write did not block, or poll said it can.
    writable: bool,
    host_read_closed: bool,
    host_write_closed: bool,
    /// The guest side was ever established.
    established: bool,
    /// For connections from the host: the guest port, and when the host connected.
    inbound: Option<(u16, Instant)>,
    /// When to try the guest again after a refusal.
    retry_at: Option<Instant>,
    /// Refusals so far (for the backoff).
    refusals: u32,
}

/// What became of a connection after moving its bytes.
enum Progress {
    Open,
    Finished,
    /// The guest refused it before it was ever established.
    Refused,
}

/// The user-mode network.
pub struct UserNet {
    link: Link,
    iface: Interface,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    allowed_host_ports: Vec<u16>,
    /// Listening sockets for guest-initiated connections, by host port.
    outbound_listeners: Vec<(SocketHandle, u16)>,
    splices: Vec<Splice>,
    next_port: u16,
    /// Most connections carried at once.
    max_connections: usize,
    started: Instant,
    buf: Vec<u8>,
    /// When readiness was last observed by a poll (the flags are that fresh).
    polled_at: Instant,
    /// Descriptors for the refreshing poll, kept to reuse the allocation.
    fds: Vec<libc::pollfd>,
}

fn net_now(started: Instant) -> NetInstant {
    NetInstant::from_micros(i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX))
}

fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
        tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
    );
    socket.set_nagle_enabled(false);
    socket
}

impl UserNet {
    /// Listens on every published port (failing if one is taken) and sets up the link.
    pub fn new(
        publish: &[Publish],
        allowed_host_ports: &[u16],
        max_connections: usize,
    ) -> std::io::Result<UserNet> {
        let mut listeners = Vec::new();
        for p in publish {
            let listener = HostListener::bind(&p.host).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", p.host))
            })?;
            // Acceptable until it says otherwise: a client may connect before the first poll.
            listeners.push(Listener {
                socket: listener,
                guest_port: p.guest_port,
                acceptable: true,
            });
        }
        let mut link = Link::default();
        let started = Instant::now();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(HOST_MAC)));
        let mut iface = Interface::new(config, &mut link, net_now(started));
        iface.update_ip_addrs(|addrs| {
            let _ =
                addrs.push(IpCidr::new(IpAddress::Ipv4(Ipv4Address::from(HOST_IP)), PREFIX_LEN));
        });
        Ok(UserNet {
            link,
            iface,
            sockets: SocketSet::new(Vec::new()),
            listeners,
            allowed_host_ports: allowed_host_ports.to_vec(),
            outbound_listeners: Vec::new(),
            splices: Vec::new(),
            next_port: 49152,
            max_connections,
            started,
            buf: vec![0; SOCKET_BUFFER],
            polled_at: started,
            fds: Vec::new(),
        })
    }

    /// The host addresses actually listened on (useful with port 0).
    pub fn local_addrs(&self) -> Vec<HostAddr> {
        self.listeners.iter().filter_map(|l| l.socket.local_addr()).collect()
    }

    /// The directories of the published Unix sockets (their files are removed through them).
    pub fn unix_dir_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.listeners.iter().filter_map(|l| l.socket.unix_dir_fd()).collect()
    }

    fn ephemeral_port(&mut self) -> u16 {
        self.next_port = if self.next_port == u16::MAX { 49152 } else { self.next_port + 1 };
        self.next_port
    }

    /// Accepts host connections on the published ports that poll found ready, and starts
    /// carrying them to the guest.
    fn accept(&mut self) {
        for index in 0..self.listeners.len() {
            while let Some(listener) = self.listeners.get_mut(index)
                && listener.acceptable
            {
                let guest_port = listener.guest_port;
                let stream = match listener.socket.accept() {
                    Ok(stream) => stream,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        listener.acceptable = false;
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                        ) =>
                    {
                        continue;
                    }
                    // Out of descriptors or the like: try again at the next pump.
                    Err(_) => break,
                };
                if self.splices.len() >= self.max_connections || stream.set_nonblocking().is_err() {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                stream.set_nodelay();
                let local = self.ephemeral_port();
                let mut socket = new_socket();
                let remote = (IpAddress::Ipv4(Ipv4Address::from(GUEST_IP)), guest_port);
                if socket.connect(self.iface.context(), remote, local).is_err() {
                    continue;
                }
                let socket = self.sockets.add(socket);
                self.splices.push(Splice {
                    host: stream,
                    socket,
                    to_host: Vec::new(),
                    // The client may have sent its request with the connection.
                    readable: true,
                    writable: true,
                    host_read_closed: false,
                    host_write_closed: false,
                    established: false,
                    inbound: Some((guest_port, Instant::now())),
                    retry_at: None,
                    refusals: 0,
                });
            }
        }
    }

    /// For a guest SYN to an allowed host port, makes sure a socket listens for it.
    fn prepare_outbound(&mut self, frame: &[u8]) {
        let Some(port) = syn_to_host_port(frame) else { return };
        if !self.allowed_host_ports.contains(&port)
            || self.outbound_listeners.iter().any(|(_, p)| *p == port)
            || self.splices.len() >= self.max_connections
        {
            return;
        }
        let mut socket = new_socket();
        if socket.listen(port).is_ok() {
            let handle = self.sockets.add(socket);
            self.outbound_listeners.push((handle, port));
        }
    }

    /// Turns established outbound connections into splices to `127.0.0.1:<port>`.
    fn connect_outbound(&mut self) {
        let mut index = 0;
        while let Some(&(handle, port)) = self.outbound_listeners.get(index) {
            let state = self.sockets.get::<tcp::Socket>(handle).state();
            if matches!(state, tcp::State::Listen | tcp::State::SynReceived) {
                index += 1;
                continue;
            }
            self.outbound_listeners.swap_remove(index);
            // Non-blocking: the connection completes (or fails) while the loop goes on; a
            // failure shows on the first read or write and ends the splice.
            let stream = crate::sys::connect_nonblocking(Ipv4Addr::LOCALHOST, port);
            match stream {
                Ok(host) => {
                    let _ = host.set_nodelay(true);
                    self.splices.push(Splice {
                        host: host.into(),
                        socket: handle,
                        to_host: Vec::new(),
                        readable: true,
                        writable: true,
                        host_read_closed: false,
                        host_write_closed: false,
                        established: true,
                        inbound: None,
                        retry_at: None,
                        refusals: 0,
                    });
                }
                Err(_) => {
                    self.sockets.get_mut::<tcp::Socket>(handle).abort();
                    self.sockets.remove(handle);
                }
            }
        }
    }

    /// Moves bytes both ways on every connection and retires finished ones.
    fn splice(&mut self) {
        let now = Instant::now();
        let mut index = 0;
        while let Some(splice) = self.splices.get_mut(index) {
            let socket = self.sockets.get_mut::<tcp::Socket>(splice.socket);
            let progress = pump_connection(splice, socket, &mut self.buf);
            let held_too_long = |since: Instant| now.saturating_duration_since(since) >= HOLD;
            let gave_up = !splice.established
                && splice.inbound.is_some_and(|(_, since)| held_too_long(since));
            let retry = match (progress, splice.inbound) {
                (Progress::Open, _) if !gave_up => {
                    index += 1;
                    continue;
                }
                (Progress::Refused, Some((port, since))) if !held_too_long(since) => {
                    match splice.retry_at {
                        Some(at) if now >= at => Some(port),
                        Some(_) => {
                            index += 1;
                            continue;
                        }
                        None => {
                            let pause = FIRST_RETRY.saturating_mul(1 << splice.refusals.min(8));
                            splice.refusals = splice.refusals.saturating_add(1);
                            splice.retry_at = Some(now + pause.min(RETRY));
                            index += 1;
                            continue;
                        }
                    }
                }
                _ => None,
            };
            if let Some(port) = retry {
                splice.retry_at = None;
                self.next_port =
                    if self.next_port == u16::MAX { 49152 } else { self.next_port + 1 };
                let remote = (IpAddress::Ipv4(Ipv4Address::from(GUEST_IP)), port);
                if socket.connect(self.iface.context(), remote, self.next_port).is_ok() {
                    index += 1;
                    continue;
                }
            }
            let splice = self.splices.swap_remove(index);
            let _ = splice.host.shutdown(Shutdown::Both);
            self.sockets.remove(splice.socket);
        }
    }

    fn process(&mut self) {
        let now = net_now(self.started);
        // Take in the guest's frames before moving bytes. Without any, this poll would only do
        // what the one below does (timers, sending what the sockets hold).
        if !self.link.from_guest.is_empty() {
            self.iface.poll(now, &mut self.link, &mut self.sockets);
        }
        self.accept();
        self.connect_outbound();
        self.splice();
        // Send what the splices queued.
        self.iface.poll(now, &mut self.link, &mut self.sockets);
    }

    /// Polls every descriptor without blocking, to refresh the readiness flags.
    fn refresh(&mut self) {
        let mut fds = std::mem::take(&mut self.fds);
        fds.clear();
        self.poll_fds(&mut fds);
        if crate::sys::poll(&mut fds, Duration::ZERO).is_err() {
            for fd in &mut fds {
                fd.revents = fd.events;
            }
        }
        self.ready(&fds);
        self.fds = fds;
    }
}

/// Carries bytes between the host stream and the guest socket.
fn pump_connection(s: &mut Splice, socket: &mut tcp::Socket<'static>, buf: &mut [u8]) -> Progress {
    if socket.state() == tcp::State::Established {
        s.established = true;
    }
    // Guest refused or reset the connection, or it fully closed.
    if matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait) {
        if !s.established {
            return Progress::Refused;
        }
        flush_to_host(s);
        return if s.to_host.is_empty() { Progress::Finished } else { Progress::Open };
    }
    // Host -> guest, while the host socket is not known to be drained.
    while s.readable && !s.host_read_closed && socket.can_send() {
        let room = socket.send_capacity() - socket.send_queue();
        let Some(chunk) = buf.get_mut(..room.min(buf.len())) else { break };
        if chunk.is_empty() {
            break;
        }
        match s.host.read(chunk) {
            Ok(0) => {
                s.host_read_closed = true;
                socket.close();
            }
            Ok(n) => {
                let _ = socket.send_slice(chunk.get(..n).unwrap_or_default());
                // A short read emptied the socket's queue: reading again would only say it
                // would block. Anything arriving later is reported by the next poll.
                if n < chunk.len() {
                    s.readable = false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                s.readable = false;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                socket.abort();
                return Progress::Finished;
            }
        }
    }
    // Guest -> host.
    flush_to_host(s);
    while s.to_host.is_empty() && socket.can_recv() {
        match socket.recv_slice(buf) {
            Ok(n) if n > 0 => {
                s.to_host.extend_from_slice(buf.get(..n).unwrap_or_default());
                flush_to_host(s);
            }
            _ => break,
        }
    }
    // The guest sent FIN and everything it sent reached the host: close the host's write side.
    if !socket.may_recv() && s.to_host.is_empty() && !s.host_write_closed && s.established {
        let _ = s.host.shutdown(Shutdown::Write);
        s.host_write_closed = true;
    }
    Progress::Open
}

fn flush_to_host(s: &mut Splice) {
    while s.writable && !s.to_host.is_empty() {
        match s.host.write(&s.to_host) {
            Ok(0) => break,
            Ok(n) => {
                s.to_host.drain(..n.min(s.to_host.len()));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Poll is asked for POLLOUT while bytes wait.
                s.writable = false;
                break;
            }
            Err(_) => {
                s.to_host.clear();
                s.host_write_closed = true;
                break;
            }
        }
    }
}

/// The destination port of a TCP SYN (without ACK) from the guest to the host, if `frame` is one.
fn syn_to_host_port(frame: &[u8]) -> Option<u16> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != Ipv4Address::from(HOST_IP) {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    (tcp.syn() && !tcp.ack()).then(|| tcp.dst_port())
}

impl Backend for UserNet {
    fn send(&mut self, frame: &[u8]) {
        self.prepare_outbound(frame);
        if self.link.from_guest.len() < MAX_QUEUED_FRAMES {
            self.link.from_guest.push_back(frame.to_vec());
        }
    }

    fn receive(&mut self, now: Instant, deliver: &mut dyn FnMut(&[u8]) -> bool) {
        if now.saturating_duration_since(self.polled_at) >= REFRESH {
            self.refresh();
        }
        self.process();
        while let Some(frame) = self.link.to_guest.front() {
            if !deliver(frame) {
                return;
            }
            self.link.to_guest.pop_front();
        }
    }

    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        // Every listener and every host socket still open for reading is always asked about,
        // whatever its flags: that is what makes clearing a flag safe.
        for listener in &self.listeners {
            let fd = listener.socket.as_raw_fd();
            fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        }
        for s in &self.splices {
            let mut events = 0;
            if !s.host_read_closed {
                events |= libc::POLLIN;
            }
            if !s.to_host.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd { fd: s.host.as_raw_fd(), events, revents: 0 });
        }
    }

    fn ready(&mut self, fds: &[libc::pollfd]) {
        self.polled_at = Instant::now();
        // `fds` is what `poll_fds` gave (nothing changes in between): listeners, then splices.
        let (for_listeners, for_splices) = fds.split_at(self.listeners.len().min(fds.len()));
        let matches = fds.len() == self.listeners.len() + self.splices.len()
            && self.listeners.iter().zip(for_listeners).all(|(l, p)| l.socket.as_raw_fd() == p.fd)
            && self.splices.iter().zip(for_splices).all(|(s, p)| s.host.as_raw_fd() == p.fd);
        if !matches {
            // Not what was asked about: assume everything is ready rather than miss anything.
            self.listeners.iter_mut().for_each(|l| l.acceptable = true);
            for s in &mut self.splices {
                s.readable = true;
                s.writable = true;
            }
            return;
        }
        let trouble = libc::POLLERR | libc::POLLHUP;
        for (listener, p) in self.listeners.iter_mut().zip(for_listeners) {
            if p.revents & (libc::POLLIN | trouble) != 0 {
                listener.acceptable = true;
            }
        }
        for (splice, p) in self.splices.iter_mut().zip(for_splices) {
            if p.revents & (libc::POLLIN | libc::POLLRDHUP | trouble) != 0 {
                splice.readable = true;
            }
            if p.revents & (libc::POLLOUT | trouble) != 0 {
                splice.writable = true;
            }
        }
    }

    fn next_timer(&mut self, now: Instant) -> Option<Duration> {
        let stack = self
            .iface
            .poll_delay(net_now(self.started), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        let retry = self
            .splices
            .iter()
            .filter_map(|s| s.retry_at)
            .min()
            .map(|at| at.saturating_duration_since(now));
        match (stack, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> UserNet {
        let any_port = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let publish = Publish { host: HostAddr::Tcp(any_port), guest_port: 80 };
        UserNet::new(&[publish], &[], MAX_CONNECTIONS).expect("listen")
    }

    /// Runs the backend as `Nic::pump` does, `after` the last poll (no refresh if under
    /// [`REFRESH`]).
    fn pump_at(net: &mut UserNet, after: Duration) {
        let now = net.polled_at + after;
        net.receive(now, &mut |_| true);
    }

    /// What `Nic::block` does.
    fn block(net: &mut UserNet) {
        let mut fds = Vec::new();
        net.poll_fds(&mut fds);
        crate::sys::poll(&mut fds, Duration::from_secs(5)).expect("poll");
        net.ready(&fds);
    }

    #[test]
    fn a_listener_is_accepted_on_only_once_poll_says_it_is_ready() {
        let mut net = published();
        let HostAddr::Tcp(addr) = net.local_addrs()[0] else { panic!("not TCP") };
        // Acceptable at first; the empty accept clears the flag.
        pump_at(&mut net, Duration::ZERO);
        assert!(!net.listeners[0].acceptable);
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        pump_at(&mut net, Duration::ZERO);
        assert!(net.splices.is_empty(), "accepted without being told the listener was ready");
        // The connection waiting is not lost: the next poll reports it.
        block(&mut net);
        assert!(net.listeners[0].acceptable);
        pump_at(&mut net, Duration::ZERO);
        assert_eq!(net.splices.len(), 1);
        assert!(!net.listeners[0].acceptable);
    }

    #[test]
    fn readiness_is_refreshed_when_the_monitor_does_not_block() {
        let mut net = published();
        let HostAddr::Tcp(addr) = net.local_addrs()[0] else { panic!("not TCP") };
        pump_at(&mut net, Duration::ZERO);
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        pump_at(&mut net, REFRESH);
        assert_eq!(net.splices.len(), 1);
    }

    #[test]
    fn a_mismatched_report_marks_everything_ready() {
        let mut net = published();
        pump_at(&mut net, Duration::ZERO);
        assert!(!net.listeners[0].acceptable);
        net.ready(&[]);
        assert!(net.listeners[0].acceptable);
    }
}
