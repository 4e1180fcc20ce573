use super::*;
use crate::image::{Segment, SegmentFlags};
use mayfly_abi::ABI_VERSION;
use mayfly_abi::manifest::Manifest;

const MIB: u64 = 1 << 20;
const PAGE: u64 = layout::PAGE_SIZE;

const R: SegmentFlags = SegmentFlags { write: false, exec: false };
const RW: SegmentFlags = SegmentFlags { write: true, exec: false };
const RX: SegmentFlags = SegmentFlags { write: false, exec: true };

const USER_RX: Access = Access { user: true, write: false, exec: true };
const USER_RWX: Access = Access { user: true, write: true, exec: true };

fn image(segments: &[(u64, u64, SegmentFlags)]) -> Image {
    Image {
        entry: segments.first().map_or(layout::IMAGE_BASE, |s| s.0),
        segments: segments
            .iter()
            .map(|&(start, mem_size, flags)| Segment {
                start,
                mem_size,
                file_offset: 0,
                file_size: 0,
                flags,
            })
            .collect(),
        manifest: Manifest { abi_version: ABI_VERSION, devices: 0 },
    }
}

/// A typical image: text r-x, rodata r--, data and bss rw- ending in the middle of a page.
fn typical() -> Image {
    image(&[(0x10_0000, 0x3000, RX), (0x10_3000, 0x1000, R), (0x10_4000, 0x2500, RW)])
}

/// The rights the plan grants at `addr`, if it maps it.
fn access_at(plan: &MemoryPlan, addr: u64) -> Option<Access> {
    let found: Vec<&Region> =
        plan.regions.iter().filter(|r| r.start <= addr && addr < r.end).collect();
    assert!(found.len() <= 1, "{addr:#x} is in several regions");
    found.first().map(|r| r.access)
}

/// What every plan guarantees.
fn check_invariants(plan: &MemoryPlan) {
    assert!(!plan.regions.is_empty());
    for r in &plan.regions {
        assert!(r.start < r.end, "empty or inverted region {r:?}");
        assert_eq!(r.start % PAGE, 0, "unaligned start {r:?}");
        assert_eq!(r.end % PAGE, 0, "unaligned end {r:?}");
        assert!(r.end <= plan.mem_size, "region beyond memory {r:?}");
    }
    for pair in plan.regions.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "regions out of order or overlapping: {:?} {:?}",
            pair[0],
            pair[1]
        );
    }
    // The null page and the page tables are never mapped.
    assert!(plan.regions.iter().all(|r| r.start >= PAGE));
    assert!(
        plan.regions
            .iter()
            .all(|r| r.end <= layout::PAGE_TABLES_ADDR || r.start >= layout::RESERVED_END)
    );
    // Heap, guard, stack.
    assert_eq!(plan.stack_top, plan.mem_size);
    assert_eq!(plan.heap_start % PAGE, 0);
    assert_eq!(plan.heap_end, plan.mem_size - layout::STACK_SIZE - PAGE);
    assert!(plan.heap_start <= plan.heap_end);
    assert_eq!(access_at(plan, plan.heap_end), None, "guard page mapped");
    assert_eq!(access_at(plan, plan.heap_end + PAGE - 1), None);
    assert_eq!(
        plan.regions.last(),
        Some(&Region {
            start: plan.mem_size - layout::STACK_SIZE,
            end: plan.mem_size,
            access: Access::USER_RW,
        })
    );
}

#[test]
fn memory_too_small_is_refused() {
    let img = typical();
    for mem in [0, 2 * MIB, layout::MIN_MEM_SIZE - 2 * MIB, layout::MIN_MEM_SIZE - 1] {
        assert_eq!(MemoryPlan::new(&img, mem, false), Err(PlanError::TooSmall(mem)));
    }
    assert!(MemoryPlan::new(&img, layout::MIN_MEM_SIZE, false).is_ok());
}

#[test]
fn memory_too_large_is_refused() {
    let img = typical();
    for mem in [layout::MAX_MEM_SIZE + 2 * MIB, layout::MAX_MEM_SIZE + 1, 8 << 30, u64::MAX] {
        assert_eq!(MemoryPlan::new(&img, mem, false), Err(PlanError::TooLarge(mem)));
    }
    assert!(MemoryPlan::new(&img, layout::MAX_MEM_SIZE, false).is_ok());
}

#[test]
fn memory_not_a_multiple_of_2_mib_is_refused() {
    let img = typical();
    for mem in [
        layout::MIN_MEM_SIZE + PAGE,
        layout::MIN_MEM_SIZE + MIB,
        65 * MIB,
        layout::MAX_MEM_SIZE - 1,
    ] {
        assert_eq!(MemoryPlan::new(&img, mem, false), Err(PlanError::Unaligned(mem)));
    }
    assert!(MemoryPlan::new(&img, 6 * MIB, false).is_ok());
}

#[test]
fn image_that_does_not_fit_is_refused() {
    let mem = layout::MIN_MEM_SIZE;
    let guard = mem - layout::STACK_SIZE - PAGE;
    let base = layout::IMAGE_BASE;

    // Up to the guard page exactly: fits, with an empty heap.
    let fits = image(&[(base, guard - base, RX)]);
    let plan = MemoryPlan::new(&fits, mem, false).unwrap();
    check_invariants(&plan);
    assert_eq!(plan.heap_start, guard);
    assert_eq!(plan.heap_end, guard);
    assert_eq!(access_at(&plan, guard - 1), Some(USER_RX));

    // One byte more reaches into the guard page.
    let end = guard + 1;
    let too_big = image(&[(base, end - base, RX)]);
    assert_eq!(MemoryPlan::new(&too_big, mem, false), Err(PlanError::ImageTooLarge { end, mem }));

    // Into the stack, and beyond memory.
    for end in [mem - layout::STACK_SIZE + 0x10, mem, mem + 64 * MIB] {
        let too_big = image(&[(base, 0x1000, RX), (base + 0x1000, end - base - 0x1000, RW)]);
        assert_eq!(
            MemoryPlan::new(&too_big, mem, false),
            Err(PlanError::ImageTooLarge { end, mem })
        );
    }

    // A bigger guest takes the same image.
    assert!(MemoryPlan::new(&too_big, 6 * MIB, false).is_ok());
}

#[test]
fn image_ending_at_the_top_of_the_address_space_is_refused() {
    // Page-rounding its end would overflow: refused, not a panic.
    let img = image(&[(u64::MAX - 0xfff, 0xfff, RX)]);
    assert_eq!(
        MemoryPlan::new(&img, 64 * MIB, false),
        Err(PlanError::ImageTooLarge { end: u64::MAX, mem: 64 * MIB })
    );
}

#[test]
fn normal_plan_layout() {
    let mem = 64 * MIB;
    let img = typical();
    let plan = MemoryPlan::new(&img, mem, false).unwrap();
    check_invariants(&plan);
    assert_eq!(plan.mem_size, mem);
    assert_eq!(plan.stack_top, mem);

    // Heap: from the page after the image (which ends at 0x106500) to the guard page.
    assert_eq!(img.end(), 0x10_6500);
    assert_eq!(plan.heap_start, 0x10_7000);
    assert_eq!(plan.heap_end, mem - layout::STACK_SIZE - PAGE);
    assert!(plan.regions.contains(&Region {
        start: 0x10_7000,
        end: plan.heap_end,
        access: Access::USER_RW,
    }));

    // Exactly the expected regions, in order.
    let expected = vec![
        Region { start: 0x1000, end: 0x2000, access: Access::SUPERVISOR_RO },
        Region { start: 0x2000, end: 0x3000, access: Access::SUPERVISOR_RX },
        Region { start: 0x3000, end: 0x4000, access: Access::SUPERVISOR_RW },
        Region { start: 0x4000, end: 0x6000, access: Access::USER_RO },
        Region { start: 0x6000, end: 0x7000, access: Access::USER_RW },
        Region { start: 0x7000, end: 0x8000, access: Access::USER_RW },
        Region { start: 0x10_0000, end: 0x10_3000, access: USER_RX },
        Region { start: 0x10_3000, end: 0x10_4000, access: Access::USER_RO },
        Region { start: 0x10_4000, end: 0x10_7000, access: Access::USER_RW },
        Region { start: 0x10_7000, end: mem - layout::STACK_SIZE - PAGE, access: Access::USER_RW },
        Region { start: mem - layout::STACK_SIZE, end: mem, access: Access::USER_RW },
    ];
    assert_eq!(plan.regions, expected);
}

#[test]
fn unmapped_ranges() {
    let plan = MemoryPlan::new(&typical(), 64 * MIB, false).unwrap();
    // The null page.
    for addr in [0, 1, 0x800, PAGE - 1] {
        assert_eq!(access_at(&plan, addr), None, "{addr:#x}");
    }
    // The doorbell is mapped for the guest (no memory backs it: see `kvm.rs`).
    assert_eq!(access_at(&plan, layout::DOORBELL_ADDR), Some(Access::USER_RW));
    // The page tables and the gap after them.
    for addr in [layout::PAGE_TABLES_ADDR, 0x8_0000, 0xf_ffff] {
        assert_eq!(access_at(&plan, addr), None, "{addr:#x}");
    }
    // The guard page, one page below the stack.
    assert_eq!(plan.heap_end + PAGE, 64 * MIB - layout::STACK_SIZE);
    for addr in [plan.heap_end, plan.heap_end + 0x800, plan.heap_end + PAGE - 1] {
        assert_eq!(access_at(&plan, addr), None, "{addr:#x}");
    }
    assert_eq!(access_at(&plan, plan.heap_end - 1), Some(Access::USER_RW));
    assert_eq!(access_at(&plan, plan.heap_end + PAGE), Some(Access::USER_RW));
    // Nothing at or beyond the end of memory.
    assert_eq!(access_at(&plan, 64 * MIB), None);
    assert_eq!(access_at(&plan, 64 * MIB - 1), Some(Access::USER_RW));
}

#[test]
fn segment_rights_follow_elf_flags() {
    let img = image(&[
        (0x10_0000, 0x1000, RX),
        (0x10_1000, 0x1000, R),
        (0x10_2000, 0x1000, RW),
        (0x10_3000, 0x1000, SegmentFlags { write: true, exec: true }),
    ]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    assert_eq!(access_at(&plan, 0x10_0000), Some(USER_RX));
    assert_eq!(access_at(&plan, 0x10_0fff), Some(USER_RX));
    assert_eq!(access_at(&plan, 0x10_1000), Some(Access::USER_RO));
    assert_eq!(access_at(&plan, 0x10_2000), Some(Access::USER_RW));
    assert_eq!(access_at(&plan, 0x10_3000), Some(USER_RWX));
    assert_eq!(plan.heap_start, 0x10_4000);
    assert_eq!(access_at(&plan, 0x10_4000), Some(Access::USER_RW));
    // Every image region is user-accessible.
    assert!(plan.regions.iter().filter(|r| r.start >= layout::IMAGE_BASE).all(|r| r.access.user));
}

#[test]
fn unaligned_segments_are_widened_to_pages() {
    // Segments that start and end mid-page, with gaps between them.
    let img = image(&[(0x10_0010, 0x1ff0, RX), (0x10_5800, 0x100, RW)]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    assert!(plan.regions.contains(&Region { start: 0x10_0000, end: 0x10_2000, access: USER_RX }));
    assert!(plan.regions.contains(&Region {
        start: 0x10_5000,
        end: 0x10_6000,
        access: Access::USER_RW,
    }));
    // The gap between the two segments is not mapped.
    assert_eq!(access_at(&plan, 0x10_2000), None);
    assert_eq!(access_at(&plan, 0x10_4fff), None);
    assert_eq!(plan.heap_start, 0x10_6000);
}

#[test]
fn segments_sharing_a_page_get_merged_rights() {
    // Text ends mid-page and data starts in that same page.
    let img = image(&[(0x10_0000, 0x1800, RX), (0x10_1800, 0x1800, RW)]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    let image_regions: Vec<Region> = plan
        .regions
        .iter()
        .copied()
        .filter(|r| r.start >= layout::IMAGE_BASE && r.end <= plan.heap_start)
        .collect();
    assert_eq!(
        image_regions,
        vec![
            Region { start: 0x10_0000, end: 0x10_1000, access: USER_RX },
            Region { start: 0x10_1000, end: 0x10_2000, access: USER_RWX },
            Region { start: 0x10_2000, end: 0x10_3000, access: Access::USER_RW },
        ]
    );
    assert_eq!(plan.heap_start, 0x10_3000);
}

#[test]
fn merged_rights_keep_those_of_the_first_segment() {
    // Writable data first, then read-only code sharing its last page: the shared page must
    // stay writable (and become executable), not take the second segment's rights alone.
    let img = image(&[(0x10_0000, 0x1800, RW), (0x10_1800, 0x1800, RX)]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    assert_eq!(access_at(&plan, 0x10_0000), Some(Access::USER_RW));
    assert_eq!(access_at(&plan, 0x10_1000), Some(USER_RWX));
    assert_eq!(access_at(&plan, 0x10_2000), Some(USER_RX));
    assert_eq!(access_at(&plan, 0x10_2fff), Some(USER_RX));
    assert_eq!(plan.heap_start, 0x10_3000);
}

#[test]
fn first_segment_entirely_in_a_shared_page() {
    let img = image(&[(0x10_0000, 0x800, RX), (0x10_0800, 0x1800, R)]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    assert_eq!(access_at(&plan, 0x10_0000), Some(USER_RX));
    assert_eq!(access_at(&plan, 0x10_0fff), Some(USER_RX));
    assert_eq!(access_at(&plan, 0x10_1000), Some(Access::USER_RO));
    assert_eq!(plan.heap_start, 0x10_2000);
}

#[test]
fn second_segment_entirely_in_a_shared_page() {
    let img = image(&[(0x10_0000, 0x2800, RX), (0x10_2800, 0x100, R), (0x10_2900, 0x2700, RW)]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    assert_eq!(access_at(&plan, 0x10_0000), Some(USER_RX));
    assert_eq!(access_at(&plan, 0x10_1fff), Some(USER_RX));
    // Text, rodata and data all touch page 0x102000.
    assert_eq!(access_at(&plan, 0x10_2000), Some(USER_RWX));
    assert_eq!(access_at(&plan, 0x10_3000), Some(Access::USER_RW));
    assert_eq!(access_at(&plan, 0x10_4fff), Some(Access::USER_RW));
    assert_eq!(plan.heap_start, 0x10_5000);
}

#[test]
fn three_segments_in_one_page() {
    let img = image(&[(0x10_0000, 0x100, RX), (0x10_0100, 0x100, R), (0x10_0200, 0x100, RW)]);
    let plan = MemoryPlan::new(&img, 16 * MIB, false).unwrap();
    check_invariants(&plan);
    let image_regions: Vec<&Region> = plan
        .regions
        .iter()
        .filter(|r| r.start >= layout::IMAGE_BASE && r.end <= plan.heap_start)
        .collect();
    assert_eq!(image_regions, vec![&Region { start: 0x10_0000, end: 0x10_1000, access: USER_RWX }]);
}

#[test]
fn plans_hold_their_invariants_for_many_sizes() {
    let img = typical();
    let mut mem = layout::MIN_MEM_SIZE;
    while mem <= layout::MAX_MEM_SIZE {
        let plan = MemoryPlan::new(&img, mem, false).unwrap();
        check_invariants(&plan);
        assert_eq!(plan.heap_start, 0x10_7000);
        mem += 126 * MIB;
    }
    let plan = MemoryPlan::new(&img, layout::MAX_MEM_SIZE, false).unwrap();
    check_invariants(&plan);
}

#[test]
fn only_guest_writable_memory_counts_as_writable() {
    let plan = MemoryPlan::new(&typical(), 16 * MIB, false).unwrap();
    // Data and bss, heap, stack: writable, also across the boundary of two regions.
    assert!(plan.guest_writable(0x10_4000, 64));
    assert!(plan.guest_writable(plan.heap_start, 64));
    assert!(plan.guest_writable(plan.stack_top - 64, 64));
    assert!(plan.guest_writable(0x10_4000, plan.heap_start + PAGE - 0x10_4000));
    // Code, read-only data, the boot info, the doorbell, the monitor's tables, the stack guard,
    // beyond memory, wrapping, empty: not.
    assert!(!plan.guest_writable(0x10_0000, 64));
    assert!(!plan.guest_writable(0x10_3000, 64));
    assert!(!plan.guest_writable(0x10_3ff0, 32), "straddles read-only data and data");
    assert!(!plan.guest_writable(layout::BOOT_INFO_ADDR, 8));
    assert!(!plan.guest_writable(layout::DOORBELL_ADDR, 8));
    assert!(!plan.guest_writable(layout::GDT_ADDR, 8));
    assert!(!plan.guest_writable(layout::PAGE_TABLES_ADDR, 8));
    assert!(!plan.guest_writable(plan.stack_top - layout::STACK_SIZE - 8, 8));
    assert!(!plan.guest_writable(plan.stack_top - 8, 16));
    assert!(!plan.guest_writable(u64::MAX - 4, 8));
    assert!(!plan.guest_writable(plan.heap_start, 0));
}
