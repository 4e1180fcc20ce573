//! Networking: TCP/IP (smoltcp) over the virtual NIC, with async sockets shaped like
//! `std::net` and tokio: [`TcpListener`], [`TcpStream`], [`UdpSocket`].
//!
//! The link is configured by the monitor (address, prefix, gateway, MAC in the boot info): with
//! `mayfly run --publish` the guest is 10.0.2.15/24 behind a host at 10.0.2.2; with
//! `--net tap --ip <addr/prefix>` it has the address given.
//!
//! Resources are bounded: at most [`MAX_SOCKETS`] sockets exist at once, each with fixed
//! buffers; connection attempts beyond that are refused (RST) by the stack.

pub(crate) mod device;
mod tcp;
mod udp;

pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

use crate::platform::{Global, nic};
use crate::time::Instant;
use alloc::vec::Vec;
use core::fmt;
use device::RingDevice;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp as smol_tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

/// Most sockets (listening, connected, closing, UDP) that exist at once.
pub const MAX_SOCKETS: usize = 512;
/// How long a closed connection may linger (unacknowledged data, FIN-WAIT) before it is reset.
const LINGER: core::time::Duration = core::time::Duration::from_secs(10);

/// Why a network operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The image has a NIC but the monitor attached none, or the image was built without one.
    NoNetwork,
    /// Too many sockets are open.
    TooManySockets,
    /// The port is in use or invalid.
    AddrInUse,
    /// The peer refused or reset the connection.
    ConnectionReset,
    /// The connection is closed for writing.
    Closed,
    /// An address was invalid (unspecified, or unreachable).
    InvalidAddress,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetError::NoNetwork => "no network device is attached",
            NetError::TooManySockets => "too many sockets are open",
            NetError::AddrInUse => "address in use",
            NetError::ConnectionReset => "connection refused or reset by the peer",
            NetError::Closed => "connection closed",
            NetError::InvalidAddress => "invalid address",
        })
    }
}

pub(crate) struct Stack {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    device: RingDevice,
    next_port: u16,
    /// Dropped TCP sockets still closing, with the moment they were dropped.
    closing: Vec<(SocketHandle, Instant)>,
    /// Tasks waiting for a socket to be freed (a listener whose backlog ran dry).
    room_waiters: Vec<core::task::Waker>,
}

static STACK: Global<Option<Stack>> = Global::new(None);

fn smol_now() -> smoltcp::time::Instant {
    let micros = Instant::now().since_boot().as_micros();
    smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

fn create_stack() -> Option<Stack> {
    if !nic::attached() {
        return None;
    }
    let mut device = RingDevice;
    let iface = new_interface(&mut device);
    let next_port = 49152 + (crate::random::u64() % 8192) as u16;
    Some(Stack {
        iface,
        sockets: SocketSet::new(Vec::new()),
        device,
        next_port,
        closing: Vec::new(),
        room_waiters: Vec::new(),
    })
}

/// The interface, its random seed (TCP initial sequence numbers) drawn from the generator.
fn new_interface(device: &mut RingDevice) -> Interface {
    let net = crate::platform::boot_info().net;
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(net.mac)));
    config.random_seed = crate::random::u64();
    let mut iface = Interface::new(config, device, smol_now());
    let ip = Ipv4Address::from(net.ipv4);
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(ip.into(), net.prefix_len));
    });
    if net.gateway != [0; 4] {
        let _ = iface.routes_mut().add_default_ipv4_route(Ipv4Address::from(net.gateway));
    }
    iface
}

/// Set when this guest woke as a clone: the next use of the stack gives it a new interface
/// (smoltcp cannot reseed one in place) and new ephemeral ports, from the clone's own entropy,
/// so that clones of one snapshot do not share sequence numbers. The sockets are kept.
static RESEED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub(crate) fn reseed_on_next_use() {
    RESEED.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Runs `f` with the network stack, creating it on first use.
pub(crate) fn with_stack<R>(f: impl FnOnce(&mut Stack) -> R) -> Result<R, NetError> {
    STACK.with(|stack| {
        if stack.is_none() {
            *stack = create_stack();
        } else if RESEED.swap(false, core::sync::atomic::Ordering::Relaxed)
            && let Some(stack) = stack.as_mut()
        {
            stack.iface = new_interface(&mut stack.device);
            stack.next_port = 49152 + (crate::random::u64() % 8192) as u16;
        }
        stack.as_mut().map(f).ok_or(NetError::NoNetwork)
    })
}

impl Stack {
    pub(crate) fn ephemeral_port(&mut self) -> u16 {
        self.next_port = if self.next_port == u16::MAX { 49152 } else { self.next_port + 1 };
        self.next_port
    }

    pub(crate) fn has_room(&self) -> bool {
        self.sockets.iter().count() < MAX_SOCKETS
    }

    /// Wakes `waker` once a socket is freed.
    pub(crate) fn wait_for_room(&mut self, waker: &core::task::Waker) {
        if !self.room_waiters.iter().any(|w| w.will_wake(waker)) {
            self.room_waiters.push(waker.clone());
        }
    }

    pub(crate) fn release_tcp(&mut self, handle: SocketHandle) {
        self.sockets.get_mut::<smol_tcp::Socket>(handle).close();
        self.closing.push((handle, Instant::now()));
    }

    fn reap(&mut self) {
        let now = Instant::now();
        let before = self.closing.len();
        let sockets = &mut self.sockets;
        self.closing.retain(|&(handle, since)| {
            let socket = sockets.get_mut::<smol_tcp::Socket>(handle);
            let done =
                matches!(socket.state(), smol_tcp::State::Closed | smol_tcp::State::TimeWait);
            if done || now.saturating_duration_since(since) > LINGER {
                socket.abort();
                sockets.remove(handle);
                false
            } else {
                true
            }
        });
        if self.closing.len() < before {
            for waker in self.room_waiters.drain(..) {
                waker.wake();
            }
        }
    }
}

/// Processes frames and timers; returns when the stack next needs to run. Called by the
/// executor every turn.
pub(crate) fn poll() -> Option<Instant> {
    STACK.with(|stack| {
        let stack = stack.as_mut()?;
        let now = smol_now();
        stack.iface.poll(now, &mut stack.device, &mut stack.sockets);
        stack.reap();
        let delay = stack.iface.poll_delay(now, &stack.sockets)?;
        Some(Instant::now().saturating_add(core::time::Duration::from_micros(delay.total_micros())))
    })
}

/// Whether data written to TCP sockets (open or closing) has not all been acknowledged yet,
/// or frames wait in TX.
pub fn has_unsent() -> bool {
    nic::tx_pending() > 0
        || STACK.with(|stack| {
            stack.as_ref().is_some_and(|stack| {
                stack.sockets.iter().any(|(_, socket)| match socket {
                    smoltcp::socket::Socket::Tcp(tcp) => {
                        tcp.send_queue() > 0
                            || matches!(
                                tcp.state(),
                                smol_tcp::State::FinWait1
                                    | smol_tcp::State::Closing
                                    | smol_tcp::State::LastAck
                            )
                    }
                    _ => false,
                })
            })
        })
}

/// Whether frames wait in TX for the next exit.
pub(crate) fn has_output() -> bool {
    nic::tx_pending() > 0
}

/// The guest's own IPv4 address, if networking is up.
pub fn local_ipv4() -> Option<[u8; 4]> {
    nic::attached().then(|| crate::platform::boot_info().net.ipv4)
}
