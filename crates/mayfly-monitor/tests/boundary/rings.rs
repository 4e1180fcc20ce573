//! The NIC ring reader: whatever counters and slot contents the guest writes, the monitor never
//! hands out a frame longer than a slot, never counts more than the ring holds, and touches no
//! guest memory outside the rings.

use super::Reader;
use mayfly_abi::net::{FRAME_MAX, RING_BYTES, RING_SLOTS, slot_addr};
use mayfly_monitor::guest_memory::GuestRam;
use mayfly_monitor::net::rings::Rings;

const MEM: u64 = 8 << 20;
const RINGS_AT: u64 = 0x40_0000;

#[derive(Debug, Clone)]
pub struct RingCase {
    pub tx_head: u32,
    pub tx_tail: u32,
    pub rx_head: u32,
    pub rx_tail: u32,
    pub lengths: Vec<u32>,
    pub garbage: Vec<u8>,
    pub frame: Vec<u8>,
}

impl RingCase {
    pub fn decode(r: &mut Reader) -> RingCase {
        let counter = |r: &mut Reader| match r.pick(4) {
            0 => u32::from(r.pick(8)),
            1 => RING_SLOTS - 2 + u32::from(r.pick(4)),
            2 => u32::MAX - u32::from(r.pick(4)),
            _ => r.u32(),
        };
        let (tx_head, tx_tail, rx_head, rx_tail) = (counter(r), counter(r), counter(r), counter(r));
        let lengths = (0..r.pick(9))
            .map(|_| match r.pick(4) {
                0 => FRAME_MAX as u32 + u32::from(r.pick(8)),
                1 => u32::from(r.u16()) % FRAME_MAX as u32,
                _ => r.u32(),
            })
            .collect();
        let garbage = r.bytes(256);
        let frame = vec![0xab; usize::from(r.u16()) % (FRAME_MAX + 16)];
        RingCase { tx_head, tx_tail, rx_head, rx_tail, lengths, garbage, frame }
    }
}

/// Runs the case; returns the path taken.
pub fn check(case: &RingCase) -> String {
    let ram = GuestRam::new(MEM).expect("guest memory");
    let Ok(mut rings) = Rings::new(&ram, RINGS_AT) else { return "no rings".into() };
    let tx = RINGS_AT + RING_BYTES;
    let guard_before = ram.read_bytes(RINGS_AT - 4096, 4096).unwrap_or_default();
    let guard_after = ram.read_bytes(tx + RING_BYTES, 4096).unwrap_or_default();
    for (i, len) in case.lengths.iter().enumerate() {
        let slot = slot_addr(tx, u32::try_from(i).unwrap_or(0));
        let _ = ram.write_bytes(slot, &len.to_le_bytes());
        let _ = ram.write_bytes(slot + 4, &case.garbage);
    }
    let _ = ram.write_bytes(tx, &case.tx_head.to_le_bytes());
    let _ = ram.write_bytes(tx + 4, &case.tx_tail.to_le_bytes());
    let _ = ram.write_bytes(RINGS_AT, &case.rx_head.to_le_bytes());
    let _ = ram.write_bytes(RINGS_AT + 4, &case.rx_tail.to_le_bytes());
    let mut longest = 0;
    let mut frames = 0usize;
    let drained = rings.drain_tx(&ram, |frame| {
        longest = longest.max(frame.len());
        frames += 1;
    });
    assert!(longest <= FRAME_MAX, "{case:?}: a {longest}-byte frame from a slot");
    if case.tx_head > RING_SLOTS {
        assert!(
            drained.is_err(),
            "{case:?}: {} frames claimed in {RING_SLOTS} slots",
            case.tx_head
        );
    }
    if let Ok(n) = &drained {
        assert!(*n <= RING_SLOTS as usize && frames <= RING_SLOTS as usize, "{case:?}: {n}");
    }
    if let Ok(pending) = rings.rx_pending(&ram) {
        assert!(pending <= RING_SLOTS, "{case:?}: {pending} pending");
    }
    let pushed = rings.push_rx(&ram, &case.frame);
    assert_eq!(ram.read_bytes(RINGS_AT - 4096, 4096).unwrap_or_default(), guard_before);
    assert_eq!(ram.read_bytes(tx + RING_BYTES, 4096).unwrap_or_default(), guard_after);
    match (drained, pushed) {
        (Err(_), _) => "tx rejected".into(),
        (Ok(0), Ok(true)) => "tx empty, rx pushed".into(),
        (Ok(0), _) => "tx empty, rx not pushed".into(),
        (Ok(_), Ok(true)) => "tx frames, rx pushed".into(),
        (Ok(_), _) => "tx frames, rx not pushed".into(),
    }
}

pub fn check_bytes(bytes: &[u8]) -> String {
    check(&RingCase::decode(&mut Reader::new(bytes)))
}
