//! The tap backend: frames go to and come from a Linux tap device.
//!
//! `mayfly run --net tap[=<name>] --ip <addr/prefix> [--gateway <addr>]`. The monitor opens the
//! tap (creating it if it does not exist, which needs CAP_NET_ADMIN); the host side of the link
//! is configured by the user as for any tap (`ip addr add 10.0.0.1/24 dev <name>`,
//! `ip link set <name> up`).

use super::Backend;
use mayfly_abi::net::FRAME_MAX;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Frames the tap backend dropped, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Frames from the host larger than a ring slot ([`FRAME_MAX`]).
    pub oversized: u64,
    /// Frames from the guest whose source MAC or IPv4 address is not the guest's own (or that
    /// are neither IPv4 nor ARP).
    pub spoofed: u64,
}

/// The guest's own addresses on the tap: the only source addresses its frames may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub ipv4: [u8; 4],
}

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

impl Identity {
    /// Whether `frame`, sent by the guest, carries only the guest's own source addresses: the
    /// Ethernet source MAC, and the IPv4 source (IPv4) or the sender MAC and IPv4 (ARP). Any
    /// other protocol is refused: the guest speaks IPv4 and ARP only.
    pub fn owns(&self, frame: &[u8]) -> bool {
        let field = |at: usize, len: usize| frame.get(at..at + len);
        if field(6, 6) != Some(self.mac.as_slice()) {
            return false;
        }
        match field(12, 2) {
            Some(t) if t == ETHERTYPE_IPV4 => field(14 + 12, 4) == Some(self.ipv4.as_slice()),
            Some(t) if t == ETHERTYPE_ARP => {
                field(14 + 8, 6) == Some(self.mac.as_slice())
                    && field(14 + 14, 4) == Some(self.ipv4.as_slice())
            }
            _ => false,
        }
    }
}

/// An open tap device.
pub struct Tap {
    file: std::fs::File,
    name: String,
    buf: Vec<u8>,
    /// A frame read while the guest's RX ring was full, delivered first next time.
    held: Option<Vec<u8>>,
    guest: Identity,
    dropped: Dropped,
}

impl Tap {
    /// Opens tap `name` (default `mayfly%d`, numbered by the kernel) for the guest `guest`.
    pub fn open(name: Option<&str>, guest: Identity) -> std::io::Result<Tap> {
        let (file, name) = crate::sys::open_tap(name.unwrap_or("mayfly%d"))?;
        let dropped = Dropped::default();
        Ok(Tap { file, name, buf: vec![0; 65536], held: None, guest, dropped })
    }

    /// What was dropped so far.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Backend for Tap {
    fn send(&mut self, frame: &[u8]) {
        // The guest may not speak for another host on the tap's network.
        if !self.guest.owns(frame) {
            self.dropped.spoofed += 1;
            return;
        }
        // A full tap queue drops the frame, as a busy wire would; TCP retransmits.
        let _ = self.file.write(frame);
    }

    fn receive(&mut self, _now: Instant, deliver: &mut dyn FnMut(&[u8]) -> bool) {
        if let Some(frame) = self.held.take()
            && !deliver(&frame)
        {
            self.held = Some(frame);
            return;
        }
        loop {
            match self.file.read(&mut self.buf) {
                Ok(0) => return,
                Ok(n) => {
                    let frame = self.buf.get(..n).unwrap_or_default();
                    // Larger than a slot: it could never be delivered, and holding it would
                    // stall the guest's receive path for good. Drop it and count it.
                    if frame.len() > FRAME_MAX {
                        self.dropped.oversized += 1;
                        continue;
                    }
                    if !deliver(frame) {
                        self.held = Some(frame.to_vec());
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        fds.push(libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    }

    fn next_timer(&mut self, _now: Instant) -> Option<Duration> {
        None
    }

    fn dropped(&self) -> Dropped {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: Identity = Identity { mac: [2, 0, 0, 0, 0, 7], ipv4: [10, 0, 0, 2] };

    /// An Ethernet frame from `mac` of `ethertype` with `payload`.
    fn frame(mac: [u8; 6], ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0xff; 6];
        out.extend_from_slice(&mac);
        out.extend_from_slice(&ethertype);
        out.extend_from_slice(payload);
        out
    }

    fn ipv4_from(src: [u8; 4]) -> Vec<u8> {
        let mut header = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0];
        header.extend_from_slice(&src);
        header.extend_from_slice(&[10, 0, 0, 1]);
        header
    }

    fn arp_from(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&mac);
        arp.extend_from_slice(&ip);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 0, 0, 1]);
        arp
    }

    /// A tap on a datagram socket pair (one read, one frame), and the host's end.
    fn tap_pair() -> (Tap, std::os::unix::net::UnixDatagram) {
        let (host, ours) = std::os::unix::net::UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        host.set_nonblocking(true).unwrap();
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(ours));
        let tap = Tap {
            file,
            name: "test".into(),
            buf: vec![0; 65536],
            held: None,
            guest: GUEST,
            dropped: Dropped::default(),
        };
        (tap, host)
    }

    #[test]
    fn frames_the_guest_sends_with_a_foreign_source_never_reach_the_tap() {
        let (mut tap, host) = tap_pair();
        tap.send(&frame([2, 0, 0, 0, 0, 9], ETHERTYPE_IPV4, &ipv4_from(GUEST.ipv4)));
        tap.send(&frame(GUEST.mac, ETHERTYPE_IPV4, &ipv4_from([10, 0, 0, 3])));
        let own = frame(GUEST.mac, ETHERTYPE_IPV4, &ipv4_from(GUEST.ipv4));
        tap.send(&own);
        let mut buf = [0u8; 2048];
        assert_eq!(host.recv(&mut buf).ok(), Some(own.len()), "the guest's own frame is sent");
        assert!(host.recv(&mut buf).is_err(), "a spoofed frame reached the tap");
        assert_eq!(tap.dropped(), Dropped { oversized: 0, spoofed: 2 });
    }

    #[test]
    fn an_oversized_frame_from_the_host_is_dropped_and_counted_without_stalling_rx() {
        let (mut tap, host) = tap_pair();
        host.send(&vec![0xaa; FRAME_MAX + 1]).unwrap();
        host.send(&[0xbb; 100]).unwrap();
        let mut delivered = Vec::new();
        // The RX ring takes what fits a slot, as `Rings::push_rx` does.
        let mut deliver = |frame: &[u8]| {
            let fits = frame.len() <= FRAME_MAX;
            if fits {
                delivered.push(frame.len());
            }
            fits
        };
        tap.receive(Instant::now(), &mut deliver);
        tap.receive(Instant::now(), &mut deliver);
        assert_eq!(delivered, vec![100], "the frame after the oversized one was not delivered");
        assert_eq!(tap.dropped(), Dropped { oversized: 1, spoofed: 0 });
        assert!(tap.held.is_none());
    }

    #[test]
    fn the_guest_s_own_frames_pass() {
        assert!(GUEST.owns(&frame(GUEST.mac, ETHERTYPE_IPV4, &ipv4_from(GUEST.ipv4))));
        assert!(GUEST.owns(&frame(GUEST.mac, ETHERTYPE_ARP, &arp_from(GUEST.mac, GUEST.ipv4))));
    }

    #[test]
    fn frames_with_another_source_are_refused() {
        let other_mac = [2, 0, 0, 0, 0, 9];
        let other_ip = [10, 0, 0, 3];
        assert!(!GUEST.owns(&frame(other_mac, ETHERTYPE_IPV4, &ipv4_from(GUEST.ipv4))));
        assert!(!GUEST.owns(&frame(GUEST.mac, ETHERTYPE_IPV4, &ipv4_from(other_ip))));
        assert!(!GUEST.owns(&frame(GUEST.mac, ETHERTYPE_ARP, &arp_from(other_mac, GUEST.ipv4))));
        assert!(!GUEST.owns(&frame(GUEST.mac, ETHERTYPE_ARP, &arp_from(GUEST.mac, other_ip))));
        // Other protocols (here IPv6), and frames too short to show their addresses.
        assert!(!GUEST.owns(&frame(GUEST.mac, [0x86, 0xdd], &[0; 40])));
        assert!(!GUEST.owns(&frame(GUEST.mac, ETHERTYPE_IPV4, &[0x45, 0, 0])));
        assert!(!GUEST.owns(&[]));
        assert!(!GUEST.owns(&GUEST.mac));
    }
}
