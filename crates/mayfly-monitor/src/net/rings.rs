//! The NIC's rings in guest memory (see `mayfly_abi::net`), read and written by checked copies.
//!
//! The monitor owns the RX producer counter and the TX consumer counter: it keeps them here and
//! only ever writes them to guest memory, so a guest that scribbles on them changes nothing but
//! its own view. The counters the guest owns (RX `tail`, TX `head`) are re-read and validated on
//! every use.

use crate::guest_memory::{BadRange, GuestRam};
use mayfly_abi::net::{
    FRAME_MAX, RING_BYTES, RING_SLOTS, frame_addr, head_addr, slot_addr, tail_addr,
};

/// The guest broke the ring protocol.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    #[error("NIC {ring} ring corrupted: the guest claims {count} frames in {RING_SLOTS} slots")]
    BadCounters { ring: &'static str, count: u32 },
    #[error("NIC TX ring corrupted: frame of {0} bytes (at most {FRAME_MAX})")]
    BadLength(u32),
    #[error("NIC ring outside guest memory: {0}")]
    Memory(#[from] BadRange),
}

/// The two rings of one NIC.
#[derive(Debug)]
pub struct Rings {
    rx: u64,
    tx: u64,
    /// RX frames produced by the monitor (authoritative).
    rx_head: u32,
    /// TX frames consumed by the monitor (authoritative).
    tx_tail: u32,
}

impl Rings {
    /// The rings at `base` (RX) and `base + RING_BYTES` (TX), with zeroed counters.
    pub fn new(ram: &GuestRam, base: u64) -> Result<Rings, RingError> {
        ram.check_range(base, 2 * RING_BYTES)?;
        let rings = Rings { rx: base, tx: base + RING_BYTES, rx_head: 0, tx_tail: 0 };
        for ring in [rings.rx, rings.tx] {
            ram.write_bytes(ring, &[0; 8])?;
        }
        Ok(rings)
    }

    /// The rings at `base`, resumed with the monitor's counters of a snapshot. Guest memory is
    /// not touched: the counters the guest owns are validated on every use, as always.
    pub fn resume(base: u64, rx_head: u32, tx_tail: u32) -> Rings {
        Rings { rx: base, tx: base.saturating_add(RING_BYTES), rx_head, tx_tail }
    }

    /// The monitor's counters: RX frames produced, TX frames consumed.
    pub fn counters(&self) -> (u32, u32) {
        (self.rx_head, self.tx_tail)
    }

    /// Frames in RX that the guest has not consumed yet.
    pub fn rx_pending(&self, ram: &GuestRam) -> Result<u32, RingError> {
        let tail = ram.read_u32(tail_addr(self.rx))?;
        let count = self.rx_head.wrapping_sub(tail);
        if count > RING_SLOTS {
            return Err(RingError::BadCounters { ring: "RX", count });
        }
        Ok(count)
    }

    /// Copies `frame` into the next RX slot; `Ok(false)` when the ring is full.
    pub fn push_rx(&mut self, ram: &GuestRam, frame: &[u8]) -> Result<bool, RingError> {
        if self.rx_pending(ram)? >= RING_SLOTS || frame.len() > FRAME_MAX {
            return Ok(false);
        }
        let slot = slot_addr(self.rx, self.rx_head);
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        ram.write_bytes(slot, &len.to_le_bytes())?;
        ram.write_bytes(frame_addr(slot), frame)?;
        self.rx_head = self.rx_head.wrapping_add(1);
        ram.write_bytes(head_addr(self.rx), &self.rx_head.to_le_bytes())?;
        Ok(true)
    }

    /// Takes every frame the guest has queued on TX, in order, handing each to `send`.
    pub fn drain_tx(
        &mut self,
        ram: &GuestRam,
        mut send: impl FnMut(&[u8]),
    ) -> Result<usize, RingError> {
        let head = ram.read_u32(head_addr(self.tx))?;
        let count = head.wrapping_sub(self.tx_tail);
        if count > RING_SLOTS {
            return Err(RingError::BadCounters { ring: "TX", count });
        }
        for _ in 0..count {
            let slot = slot_addr(self.tx, self.tx_tail);
            let len = ram.read_u32(slot)?;
            if len as usize > FRAME_MAX {
                return Err(RingError::BadLength(len));
            }
            let frame = ram.read_bytes(frame_addr(slot), len as usize)?;
            send(&frame);
            self.tx_tail = self.tx_tail.wrapping_add(1);
        }
        ram.write_bytes(tail_addr(self.tx), &self.tx_tail.to_le_bytes())?;
        Ok(count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x20_0000;

    fn guest_push_tx(ram: &GuestRam, frame: &[u8]) {
        let tx = BASE + RING_BYTES;
        let head = ram.read_u32(tx).unwrap();
        let slot = slot_addr(tx, head);
        ram.write_bytes(slot, &u32::try_from(frame.len()).unwrap().to_le_bytes()).unwrap();
        ram.write_bytes(frame_addr(slot), frame).unwrap();
        ram.write_bytes(tx, &(head + 1).to_le_bytes()).unwrap();
    }

    #[test]
    fn frames_round_trip_in_order() {
        let ram = GuestRam::new(8 << 20).unwrap();
        let mut rings = Rings::new(&ram, BASE).unwrap();
        guest_push_tx(&ram, b"first");
        guest_push_tx(&ram, b"second");
        let mut seen = Vec::new();
        assert_eq!(rings.drain_tx(&ram, |f| seen.push(f.to_vec())).unwrap(), 2);
        assert_eq!(seen, vec![b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(rings.drain_tx(&ram, |_| panic!("no more frames")).unwrap(), 0);

        assert!(rings.push_rx(&ram, b"hello guest").unwrap());
        assert_eq!(rings.rx_pending(&ram).unwrap(), 1);
        let slot = slot_addr(BASE, 0);
        assert_eq!(ram.read_u32(slot).unwrap(), 11);
        assert_eq!(ram.read_bytes(frame_addr(slot), 11).unwrap(), b"hello guest");
    }

    #[test]
    fn full_rx_ring_refuses_without_error() {
        let ram = GuestRam::new(8 << 20).unwrap();
        let mut rings = Rings::new(&ram, BASE).unwrap();
        for _ in 0..RING_SLOTS {
            assert!(rings.push_rx(&ram, b"x").unwrap());
        }
        assert!(!rings.push_rx(&ram, b"x").unwrap());
        ram.write_bytes(tail_addr(BASE), &1u32.to_le_bytes()).unwrap(); // guest consumed one
        assert!(rings.push_rx(&ram, b"x").unwrap());
    }

    #[test]
    fn garbage_counters_and_lengths_are_errors() {
        let ram = GuestRam::new(8 << 20).unwrap();
        let mut rings = Rings::new(&ram, BASE).unwrap();
        ram.write_bytes(BASE + RING_BYTES, &u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(rings.drain_tx(&ram, |_| {}), Err(RingError::BadCounters { .. })));
        ram.write_bytes(BASE + RING_BYTES, &1u32.to_le_bytes()).unwrap();
        ram.write_bytes(slot_addr(BASE + RING_BYTES, 0), &99_999u32.to_le_bytes()).unwrap();
        assert_eq!(rings.drain_tx(&ram, |_| {}), Err(RingError::BadLength(99_999)));
        ram.write_bytes(tail_addr(BASE), &500u32.to_le_bytes()).unwrap();
        assert!(matches!(rings.rx_pending(&ram), Err(RingError::BadCounters { .. })));
        // Overwriting the monitor-owned RX head changes nothing for the monitor.
        ram.write_bytes(tail_addr(BASE), &0u32.to_le_bytes()).unwrap();
        ram.write_bytes(head_addr(BASE), &77u32.to_le_bytes()).unwrap();
        assert_eq!(rings.rx_pending(&ram).unwrap(), 0);
    }

    #[test]
    fn rings_outside_memory_are_refused() {
        let ram = GuestRam::new(4 << 20).unwrap();
        assert!(Rings::new(&ram, (4 << 20) - RING_BYTES).is_err());
    }
}
