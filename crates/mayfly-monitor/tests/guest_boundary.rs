//! Property tests of the guest boundary: whatever a guest writes into its memory, the hypercall
//! dispatch, the NIC's rings and the ELF validator never panic and never act outside guest
//! memory. (`cargo test` runs them on the stable toolchain; they need no KVM.)

use mayfly_abi::layout::DOORBELL_ADDR;
use mayfly_abi::net::{FRAME_MAX, RING_BYTES, RING_SLOTS};
use mayfly_monitor::guest_memory::GuestRam;
use mayfly_monitor::hypercalls::{self, Step};
use mayfly_monitor::image::{Image, Segment, SegmentFlags};
use mayfly_monitor::net::rings::Rings;
use mayfly_monitor::plan::MemoryPlan;
use proptest::prelude::*;

const MEM: u64 = 8 << 20;
const RINGS_AT: u64 = 0x40_0000;

/// The memory plan of a small image (text at 1 MiB, data after it) in `MEM` bytes.
fn plan() -> MemoryPlan {
    let segment = |start, write, exec| Segment {
        start,
        mem_size: 0x1000,
        file_offset: 0,
        file_size: 0,
        flags: SegmentFlags { write, exec },
    };
    let image = Image {
        entry: 0x10_0000,
        segments: vec![segment(0x10_0000, false, true), segment(0x10_1000, true, false)],
        manifest: mayfly_abi::manifest::Manifest {
            abi_version: mayfly_abi::ABI_VERSION,
            devices: 0,
        },
    };
    MemoryPlan::new(&image, MEM, false).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any doorbell offset, any 32-bit argument, any store width, any bytes at the argument's address:
    /// dispatch answers with a step and no panic.
    #[test]
    fn hypercall_dispatch_survives_anything(
        offset in 0u64..40,
        data in any::<u32>(),
        size in 0usize..=8,
        contents in proptest::collection::vec(any::<u8>(), 0..64),
        near in prop_oneof![Just(0u64), Just(0x1000u64), Just(0x10_0000u64), Just(MEM - 16), 0u64..MEM],
    ) {
        let ram = GuestRam::new(MEM).unwrap();
        let at = near.min(MEM - contents.len() as u64);
        ram.write_bytes(at, &contents).unwrap();
        let data = if data % 2 == 0 { u32::try_from(at).unwrap_or(data) } else { data };
        // A short timeout so that Wait returns quickly: pass a deadline now.
        let deadline = Some((std::time::Instant::now(), std::time::Duration::ZERO));
        let plan = plan();
        let step =
            hypercalls::dispatch(&ram, &plan, DOORBELL_ADDR + offset, data, size, deadline, None);
        prop_assert!(matches!(step, Step::Continue | Step::Stop(_)));
    }

    /// Any counters and slot contents in the rings: the monitor never panics, never hands out a
    /// frame longer than a slot, and never counts more than the ring holds.
    #[test]
    fn rings_survive_any_guest_writes(
        tx_head in any::<u32>(),
        rx_tail in any::<u32>(),
        lengths in proptest::collection::vec(any::<u32>(), 0..8),
        garbage in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let ram = GuestRam::new(MEM).unwrap();
        let mut rings = Rings::new(&ram, RINGS_AT).unwrap();
        let tx = RINGS_AT + RING_BYTES;
        for (i, len) in lengths.iter().enumerate() {
            let slot = mayfly_abi::net::slot_addr(tx, u32::try_from(i).unwrap());
            ram.write_bytes(slot, &len.to_le_bytes()).unwrap();
            ram.write_bytes(slot + 4, &garbage).unwrap();
        }
        ram.write_bytes(tx, &tx_head.to_le_bytes()).unwrap();
        ram.write_bytes(RINGS_AT + 4, &rx_tail.to_le_bytes()).unwrap();
        let mut longest = 0;
        if let Ok(n) = rings.drain_tx(&ram, |frame| longest = longest.max(frame.len())) {
            prop_assert!(n <= RING_SLOTS as usize);
        }
        prop_assert!(longest <= FRAME_MAX);
        if let Ok(pending) = rings.rx_pending(&ram) {
            prop_assert!(pending <= RING_SLOTS);
        }
        let _ = rings.push_rx(&ram, &garbage);
    }

    /// Any bytes as an image: validation answers and never panics.
    #[test]
    fn image_validation_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Image::parse(&bytes);
    }

    /// An ELF header followed by anything: still no panic.
    #[test]
    fn image_validation_survives_any_program_headers(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = Image::parse(&bytes);
    }
}
