//! The tap backend: frames go to and come from a Linux tap device.
//!
//! `mayfly run --net tap[=<name>] --ip <addr/prefix> [--gateway <addr>]`. The monitor opens the
//! tap (creating it if it does not exist, which needs CAP_NET_ADMIN); the host side of the link
//! is configured by the user as for any tap (`ip addr add 10.0.0.1/24 dev <name>`,
//! `ip link set <name> up`).

use super::Backend;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// An open tap device.
pub struct Tap {
    file: std::fs::File,
    name: String,
    buf: Vec<u8>,
    /// A frame read while the guest's RX ring was full, delivered first next time.
    held: Option<Vec<u8>>,
}

impl Tap {
    /// Opens tap `name` (default `mayfly%d`, numbered by the kernel).
    pub fn open(name: Option<&str>) -> std::io::Result<Tap> {
        let (file, name) = crate::sys::open_tap(name.unwrap_or("mayfly%d"))?;
        Ok(Tap { file, name, buf: vec![0; 65536], held: None })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Backend for Tap {
    fn send(&mut self, frame: &[u8]) {
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
}
