//! The virtual NIC: two rings of Ethernet frames in guest memory, shared with the monitor.
//!
//! The monitor places the rings (RX then TX, each [`RING_BYTES`] long, page-aligned) in guest
//! memory below the stack guard and reports them in [`NetInfo`]. A ring is a [`RingHeader`]
//! followed by [`RING_SLOTS`] slots of [`SLOT_SIZE`] bytes; a slot is a little-endian `u32`
//! frame length followed by the frame (at most [`FRAME_MAX`] bytes, no FCS).
//!
//! `head` and `tail` are free-running `u32` counters: the producer writes slot
//! `head % RING_SLOTS` and then increments `head`; the consumer reads slot `tail % RING_SLOTS`
//! and then increments `tail`. The guest produces on TX and consumes on RX; the monitor does the
//! opposite. There are no exits per frame: the monitor moves frames on every exit, and the guest
//! makes one when it has nothing else to do ([`crate::Hypercall::Wait`]), which also tells the
//! monitor to send what the TX ring holds. `Wait` reports [`crate::manifest::Device::Net`] ready
//! when RX holds frames.
//!
//! The monitor keeps its own copies of the counters it owns (RX `head`, TX `tail`) and never
//! trusts the guest's copy of them. A guest whose counters are inconsistent (more frames
//! claimed than slots) or whose TX slot lengths exceed [`FRAME_MAX`] is stopped and reported.

use crate::GuestAddr;

/// Bytes per slot (the length word and the frame).
pub const SLOT_SIZE: usize = 2048;
/// Largest frame a slot holds (Ethernet header + 1500-byte MTU payload fits with room).
pub const FRAME_MAX: usize = SLOT_SIZE - 4;
/// Slots per ring.
pub const RING_SLOTS: u32 = 256;
/// Size of the ring header.
pub const RING_HEADER_SIZE: usize = 64;
/// Bytes of one ring (header and slots), a multiple of the page size.
pub const RING_BYTES: u64 = 4096 + RING_SLOTS as u64 * SLOT_SIZE as u64;
/// Byte offset of slot 0 from the start of a ring.
pub const SLOTS_OFFSET: u64 = 4096;
/// The IP MTU of the link.
pub const MTU: u32 = 1500;

/// The start of a ring. Plain data: no padding, any bit pattern is valid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingHeader {
    /// Frames ever produced into this ring (wrapping).
    pub head: u32,
    /// Frames ever consumed from this ring (wrapping).
    pub tail: u32,
    /// Reserved, zero.
    pub reserved: [u32; 14],
}

/// Where the NIC is and how the guest's link is configured. Plain data: no padding, any bit
/// pattern is valid. All zero when no NIC is attached.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetInfo {
    /// Address of the RX ring; the TX ring follows it at `rings + RING_BYTES`.
    pub rings: GuestAddr,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// Prefix length of `ipv4`.
    pub prefix_len: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// The guest's IPv4 address.
    pub ipv4: [u8; 4],
    /// The default gateway (also the host, in user-mode networking), or zero for none.
    pub gateway: [u8; 4],
    /// The IP MTU.
    pub mtu: u32,
    /// Slots per ring ([`RING_SLOTS`]).
    pub ring_slots: u32,
}

/// Address of slot `index` of the ring starting at `ring`.
pub const fn slot_addr(ring: GuestAddr, index: u32) -> GuestAddr {
    ring + SLOTS_OFFSET + (index % RING_SLOTS) as u64 * SLOT_SIZE as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_aligned_and_frames_fit() {
        assert_eq!(core::mem::size_of::<RingHeader>(), RING_HEADER_SIZE);
        assert_eq!(core::mem::size_of::<NetInfo>(), 8 + 6 + 1 + 1 + 4 + 4 + 4 + 4);
        assert_eq!(RING_BYTES % 4096, 0);
        assert!(FRAME_MAX >= 14 + MTU as usize);
        assert_eq!(slot_addr(0x1000, RING_SLOTS + 1), 0x1000 + 4096 + 2048);
    }
}
