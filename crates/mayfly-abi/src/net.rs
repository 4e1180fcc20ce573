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

/// Byte offset of the producer counter (`head`) from the start of a ring.
pub const HEAD_OFFSET: u64 = core::mem::offset_of!(RingHeader, head) as u64;
/// Byte offset of the consumer counter (`tail`) from the start of a ring.
pub const TAIL_OFFSET: u64 = core::mem::offset_of!(RingHeader, tail) as u64;
/// Byte offset of a slot's frame length (a little-endian `u32`) from the start of the slot.
pub const SLOT_LEN_OFFSET: u64 = 0;
/// Byte offset of a slot's frame from the start of the slot (after the length word).
pub const SLOT_FRAME_OFFSET: u64 = 4;

/// Address of the producer counter of the ring starting at `ring`.
pub const fn head_addr(ring: GuestAddr) -> GuestAddr {
    ring + HEAD_OFFSET
}

/// Address of the consumer counter of the ring starting at `ring`.
pub const fn tail_addr(ring: GuestAddr) -> GuestAddr {
    ring + TAIL_OFFSET
}

/// Address of the frame of the slot at `slot` (see [`slot_addr`]).
pub const fn frame_addr(slot: GuestAddr) -> GuestAddr {
    slot + SLOT_FRAME_OFFSET
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

    #[test]
    fn ring_offsets_are_those_of_the_header_and_slot_layout() {
        assert_eq!(core::mem::offset_of!(RingHeader, head), 0);
        assert_eq!(core::mem::offset_of!(RingHeader, tail), 4);
        assert_eq!(core::mem::offset_of!(RingHeader, reserved), 8);
        assert_eq!((HEAD_OFFSET, TAIL_OFFSET), (0, 4));
        assert_eq!(head_addr(0x2000), 0x2000);
        assert_eq!(tail_addr(0x2000), 0x2004);
        // The length word, then the frame, fill the slot exactly.
        assert_eq!(SLOT_LEN_OFFSET + 4, SLOT_FRAME_OFFSET);
        assert_eq!(SLOT_FRAME_OFFSET + FRAME_MAX as u64, SLOT_SIZE as u64);
        assert_eq!(frame_addr(slot_addr(0x1000, 0)), 0x1000 + SLOTS_OFFSET + 4);
        assert!(SLOTS_OFFSET >= RING_HEADER_SIZE as u64);
    }
}
