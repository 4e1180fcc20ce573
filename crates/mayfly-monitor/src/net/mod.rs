//! The virtual NIC: the guest's rings on one side, a backend (tap or user-mode) on the other.
//!
//! The monitor is single-threaded: frames move when the guest exits. In the `Wait` hypercall
//! the NIC sends what the guest queued, delivers what arrived, and, if there is nothing for the
//! guest yet, blocks in `poll(2)` on the backend's descriptors until something arrives or the
//! guest's deadline passes (busy-polling briefly first while traffic flows). So a
//! request/response exchange costs the guest one exit.

pub mod host;
pub mod rings;
pub mod tap;
pub mod usernet;

use crate::guest_memory::GuestRam;
use mayfly_abi::net::{MTU, NetInfo, RING_SLOTS};
use rings::{RingError, Rings};
use std::time::{Duration, Instant};

pub use host::HostAddr;
pub use usernet::Publish;

/// The host side of the NIC.
pub trait Backend {
    /// Sends one frame the guest transmitted.
    fn send(&mut self, frame: &[u8]);
    /// Does pending work and offers frames for the guest to `deliver`, which returns false when
    /// the guest's RX ring is full (the backend keeps the frame for later).
    fn receive(&mut self, now: Instant, deliver: &mut dyn FnMut(&[u8]) -> bool);
    /// Descriptors whose readiness means there is work.
    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>);
    /// What `poll(2)` found: the descriptors [`Backend::poll_fds`] just gave, in the same order,
    /// with their `revents` filled in. A backend that keeps readiness flags sets them here (and
    /// clears them itself only when an operation would block), so that it makes system calls
    /// only on descriptors that are ready. Poll is level-triggered: a descriptor that becomes
    /// ready after this call is reported by the next poll.
    fn ready(&mut self, fds: &[libc::pollfd]) {
        let _ = fds;
    }
    /// When the backend next needs to run even without I/O (protocol timers).
    fn next_timer(&mut self, now: Instant) -> Option<Duration>;
    /// Frames it dropped that the guest's traffic did not make it drop (tap only).
    fn dropped(&self) -> tap::Dropped {
        tap::Dropped::default()
    }
}

/// How the guest's network is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetConfig {
    /// User-mode networking: published ports and allowed host ports, no privileges needed.
    User {
        /// Host ports carried to guest ports.
        publish: Vec<Publish>,
        /// Host loopback ports the guest may connect to (as `10.0.2.2:<port>`).
        allow_host_ports: Vec<u16>,
        /// Most connections carried at once (further ones are closed at once).
        max_connections: usize,
    },
    /// A tap device, with a static address for the guest.
    Tap {
        /// The tap's name (created if missing); `None` lets the kernel choose.
        name: Option<String>,
        /// The guest's IPv4 address.
        ip: [u8; 4],
        /// Its prefix length.
        prefix_len: u8,
        /// The default gateway, if any.
        gateway: Option<[u8; 4]>,
    },
}

/// Why the NIC could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "cannot open tap device {name}: {cause}; creating a tap needs root or CAP_NET_ADMIN \
         (or a persistent tap owned by you: `ip tuntap add dev <name> mode tap user $USER`)"
    )]
    Tap { name: String, cause: std::io::Error },
    #[error(
        "{0}; choose another host port (for a Unix socket: a new path in an existing directory)"
    )]
    Listen(std::io::Error),
}

/// An attached NIC.
pub struct Nic {
    backend: Box<dyn Backend>,
    rings: Option<Rings>,
    info: NetInfo,
    /// Host addresses listened on (user-mode networking).
    pub published: Vec<HostAddr>,
    /// Directories of published Unix sockets, as descriptors (the sandbox lets the monitor
    /// remove its socket files through them at exit).
    pub unix_dirs: Vec<std::os::fd::RawFd>,
    /// The tap's name (tap networking).
    pub tap_name: Option<String>,
    /// The descriptors of the last [`Nic::block`], kept to reuse the allocation.
    fds: Vec<libc::pollfd>,
    /// The last [`Nic::block`] ended within [`SHORT_BLOCK`].
    last_block_short: bool,
}

/// The monitor's ring counters (RX produced, TX consumed) and the RX frames pending.
pub type RingState = ((u32, u32), u32);

/// How long [`Nic::block`] busy-polls the backend before it sleeps, while traffic flows.
const BUSY_POLL: Duration = Duration::from_micros(50);
/// A block that ended within this long means traffic is flowing: the next one busy-polls first.
const SHORT_BLOCK: Duration = Duration::from_micros(250);

impl Nic {
    /// Opens the backend. The rings are placed later ([`Nic::attach`]), once memory exists.
    pub fn open(config: &NetConfig, entropy: &[u8; 32]) -> Result<Nic, NetError> {
        match config {
            NetConfig::User { publish, allow_host_ports, max_connections } => {
                let net = usernet::UserNet::new(publish, allow_host_ports, *max_connections)
                    .map_err(NetError::Listen)?;
                let published = net.local_addrs();
                let unix_dirs = net.unix_dir_fds();
                let info = NetInfo {
                    mac: usernet::GUEST_MAC,
                    ipv4: usernet::GUEST_IP,
                    prefix_len: usernet::PREFIX_LEN,
                    gateway: usernet::HOST_IP,
                    ..NetInfo::default()
                };
                Ok(Nic {
                    backend: Box::new(net),
                    rings: None,
                    info,
                    published,
                    unix_dirs,
                    tap_name: None,
                    fds: Vec::new(),
                    last_block_short: false,
                })
            }
            NetConfig::Tap { name, ip, prefix_len, gateway } => {
                // A random, locally administered, unicast MAC.
                let mut mac = [0x02, 0, 0, 0, 0, 0];
                for (dst, src) in mac.iter_mut().skip(1).zip(entropy.iter().skip(20)) {
                    *dst = *src;
                }
                let guest = tap::Identity { mac, ipv4: *ip };
                let tap =
                    tap::Tap::open(name.as_deref(), guest).map_err(|source| NetError::Tap {
                        name: name.clone().unwrap_or_else(|| "mayfly%d".into()),
                        cause: source,
                    })?;
                let info = NetInfo {
                    mac,
                    ipv4: *ip,
                    prefix_len: *prefix_len,
                    gateway: gateway.unwrap_or_default(),
                    ..NetInfo::default()
                };
                let tap_name = Some(tap.name().to_owned());
                Ok(Nic {
                    backend: Box::new(tap),
                    rings: None,
                    info,
                    published: Vec::new(),
                    unix_dirs: Vec::new(),
                    tap_name,
                    fds: Vec::new(),
                    last_block_short: false,
                })
            }
        }
    }

    /// Frames the backend dropped: oversized from the host, spoofed from the guest.
    pub fn dropped(&self) -> tap::Dropped {
        self.backend.dropped()
    }

    /// Places the rings at `base` in guest memory; returns what the guest is told.
    pub fn attach(&mut self, ram: &GuestRam, base: u64) -> Result<NetInfo, RingError> {
        self.rings = Some(Rings::new(ram, base)?);
        self.info.rings = base;
        self.info.mtu = MTU;
        self.info.ring_slots = RING_SLOTS;
        Ok(self.info)
    }

    /// Places the rings at `base` as a snapshot left them (the monitor's counters `rx_head`,
    /// `tx_tail`); the backend is this NIC's own, fresh. Returns what the guest is told.
    pub fn reattach(&mut self, base: u64, rx_head: u32, tx_tail: u32) -> NetInfo {
        self.rings = Some(Rings::resume(base, rx_head, tx_tail));
        self.info.rings = base;
        self.info.mtu = MTU;
        self.info.ring_slots = RING_SLOTS;
        self.info
    }

    /// The monitor's ring counters (RX produced, TX consumed), for a snapshot, and whether
    /// frames are waiting in RX for the guest.
    pub fn ring_state(&self, ram: &GuestRam) -> Result<Option<RingState>, RingError> {
        match &self.rings {
            Some(rings) => Ok(Some((rings.counters(), rings.rx_pending(ram)?))),
            None => Ok(None),
        }
    }

    /// Sends what the guest queued and delivers what arrived; returns whether RX holds frames.
    pub fn pump(&mut self, ram: &GuestRam) -> Result<bool, RingError> {
        let Some(rings) = self.rings.as_mut() else { return Ok(false) };
        let backend = &mut self.backend;
        rings.drain_tx(ram, |frame| backend.send(frame))?;
        let mut failure = None;
        backend.receive(Instant::now(), &mut |frame| match rings.push_rx(ram, frame) {
            Ok(pushed) => pushed,
            Err(e) => {
                failure = Some(e);
                false
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(rings.rx_pending(ram)? > 0)
    }

    /// Blocks until the backend has work or `timeout` passes, then tells the backend which of
    /// its descriptors are ready.
    ///
    /// While traffic flows (the last block was short), it first busy-polls for up to
    /// [`BUSY_POLL`] (zero-timeout polls), like Linux's `SO_BUSY_POLL`: the next request of a
    /// keep-alive client usually arrives within that time, and taking it without going to sleep
    /// saves the wake-up, which on these nested hosts costs about as much as the request's own
    /// work. An idle guest's monitor sleeps at once.
    pub fn block(&mut self, timeout: Duration) {
        let fds = &mut self.fds;
        fds.clear();
        self.backend.poll_fds(fds);
        let timeout = match self.backend.next_timer(Instant::now()) {
            Some(timer) => timeout.min(timer),
            None => timeout,
        };
        let start = Instant::now();
        let mut result = Ok(0);
        if self.last_block_short {
            let until = start + BUSY_POLL.min(timeout);
            loop {
                result = crate::sys::poll(fds, Duration::ZERO);
                if !matches!(result, Ok(0)) || Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let waited = start.elapsed();
        if matches!(result, Ok(0)) && waited < timeout {
            result = crate::sys::poll(fds, timeout - waited);
        }
        self.last_block_short = start.elapsed() <= SHORT_BLOCK;
        if result.is_err() {
            // Nothing is known: report everything asked for as ready, so that no wake-up is
            // lost (the backend then finds out by trying).
            for fd in fds.iter_mut() {
                fd.revents = fd.events;
            }
        }
        self.backend.ready(fds);
    }
}
