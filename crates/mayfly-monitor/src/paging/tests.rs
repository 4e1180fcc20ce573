use super::*;
use crate::image::{Image, Segment, SegmentFlags};
use crate::plan::MemoryPlan;
use mayfly_abi::ABI_VERSION;
use mayfly_abi::manifest::Manifest;

const MIB: u64 = 1 << 20;
const PAGE: u64 = layout::PAGE_SIZE;
/// Bits 12..51 of an entry: the address of the next table or of a 4 KiB page.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bits 21..51 of a 2 MiB leaf (bit 12 is PAT there).
const HUGE_ADDR_MASK: u64 = 0x000f_ffff_ffe0_0000;

const TEXT: u64 = 0x10_0000;
const RODATA: u64 = 0x10_3000;
const DATA: u64 = 0x10_4000;

fn typical_image() -> Image {
    let seg = |start, mem_size, write, exec| Segment {
        start,
        mem_size,
        file_offset: 0,
        file_size: 0,
        flags: SegmentFlags { write, exec },
    };
    Image {
        entry: TEXT,
        segments: vec![
            seg(TEXT, 0x3000, false, true),
            seg(RODATA, 0x1000, false, false),
            seg(DATA, 0x2500, true, false),
        ],
        manifest: Manifest { abi_version: ABI_VERSION, devices: 0 },
    }
}

fn plan(mem_size: u64) -> MemoryPlan {
    MemoryPlan::new(&typical_image(), mem_size, false).unwrap()
}

fn tables(plan: &MemoryPlan) -> PageTables {
    build(plan).unwrap()
}

/// What a successful walk found: the leaf entry and the rights of the whole walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    /// The leaf entry itself.
    leaf: u64,
    /// Size of the page the leaf maps.
    page_size: u64,
    /// The physical address `addr` translates to.
    phys: u64,
    /// Effective rights, combined over all levels as the CPU does.
    write: bool,
    user: bool,
    exec: bool,
}

fn table(tables: &PageTables, addr: u64) -> &[u64; ENTRIES] {
    let found: Vec<&TablePage> = tables.tables.iter().filter(|t| t.addr == addr).collect();
    assert_eq!(found.len(), 1, "no single table at {addr:#x}");
    &found[0].entries
}

fn index(addr: u64, shift: u32) -> usize {
    usize::try_from((addr >> shift) & 0x1ff).unwrap()
}

/// A software page walk: PML4 -> PDPT -> PD -> (2 MiB leaf | PT -> 4 KiB leaf).
fn walk(tables: &PageTables, addr: u64) -> Option<Mapping> {
    let mut write = true;
    let mut user = true;
    let mut exec = true;
    let mut step = |entry: u64| {
        write &= entry & WRITABLE != 0;
        user &= entry & USER != 0;
        exec &= entry & NO_EXEC == 0;
    };

    let pml4e = table(tables, tables.root())[index(addr, 39)];
    if pml4e & PRESENT == 0 {
        return None;
    }
    assert_eq!(pml4e & HUGE, 0, "PS bit in a PML4 entry");
    step(pml4e);

    let pdpte = table(tables, pml4e & ADDR_MASK)[index(addr, 30)];
    if pdpte & PRESENT == 0 {
        return None;
    }
    assert_eq!(pdpte & HUGE, 0, "unexpected 1 GiB page at {addr:#x}");
    step(pdpte);

    let pde = table(tables, pdpte & ADDR_MASK)[index(addr, 21)];
    if pde & PRESENT == 0 {
        return None;
    }
    step(pde);
    let (leaf, page_size, phys) = if pde & HUGE != 0 {
        (pde, 2 * MIB, (pde & HUGE_ADDR_MASK) | (addr & (2 * MIB - 1)))
    } else {
        let pte = table(tables, pde & ADDR_MASK)[index(addr, 12)];
        if pte & PRESENT == 0 {
            return None;
        }
        step(pte);
        (pte, PAGE, (pte & ADDR_MASK) | (addr & (PAGE - 1)))
    };
    Some(Mapping { leaf, page_size, phys, write, user, exec })
}

/// Walks `addr`, checks the mapping is the identity, and returns it.
fn mapped(tables: &PageTables, addr: u64) -> Mapping {
    let m = walk(tables, addr).unwrap_or_else(|| panic!("{addr:#x} is not mapped"));
    assert_eq!(m.phys, addr, "{addr:#x} is not identity-mapped");
    assert_ne!(m.leaf & PRESENT, 0);
    m
}

fn assert_unmapped(tables: &PageTables, addr: u64) {
    assert_eq!(walk(tables, addr), None, "{addr:#x} is mapped");
}

/// The PD entry that maps the 2 MiB chunk holding `addr`.
fn pd_entry(tables: &PageTables, addr: u64) -> u64 {
    let pml4e = table(tables, tables.root())[index(addr, 39)];
    let pdpte = table(tables, pml4e & ADDR_MASK)[index(addr, 30)];
    table(tables, pdpte & ADDR_MASK)[index(addr, 21)]
}

#[test]
fn root_is_the_first_table() {
    let t = tables(&plan(64 * MIB));
    assert_eq!(t.root(), layout::PAGE_TABLES_ADDR);
    assert_eq!(t.tables[0].addr, layout::PAGE_TABLES_ADDR);
    // Tables are at distinct, consecutive pages of the page-table area.
    for (i, page) in t.tables.iter().enumerate() {
        assert_eq!(page.addr, layout::PAGE_TABLES_ADDR + i as u64 * PAGE);
        assert!(page.addr + PAGE <= layout::RESERVED_END);
    }
    // Only the first PML4 slot is used (everything is below 512 GiB).
    let pml4 = table(&t, t.root());
    assert_ne!(pml4[0] & PRESENT, 0);
    assert!(pml4[1..].iter().all(|&e| e == 0));
}

#[test]
fn null_page_is_not_mapped() {
    let t = tables(&plan(64 * MIB));
    for addr in [0, 8, 0x800, PAGE - 1] {
        assert_unmapped(&t, addr);
    }
}

#[test]
fn page_tables_are_not_mapped() {
    let t = tables(&plan(64 * MIB));
    assert_unmapped(&t, layout::PAGE_TABLES_ADDR);
    for page in t.tables.iter().map(|p| p.addr) {
        assert_unmapped(&t, page);
    }
    // Nor anything else between the doorbell and the image.
    let bell = mapped(&t, layout::DOORBELL_ADDR);
    assert!(bell.user && bell.write && !bell.exec, "the doorbell is user rw-: {bell:?}");
    let mut addr = layout::DOORBELL_ADDR + PAGE;
    while addr < layout::RESERVED_END {
        assert_unmapped(&t, addr);
        addr += PAGE;
    }
}

#[test]
fn stack_guard_is_not_mapped() {
    let p = plan(64 * MIB);
    let t = tables(&p);
    assert_unmapped(&t, p.heap_end);
    assert_unmapped(&t, p.heap_end + PAGE - 1);
    // Its neighbours are.
    assert!(mapped(&t, p.heap_end - 1).write);
    assert!(mapped(&t, p.heap_end + PAGE).write);
}

#[test]
fn heap_is_user_read_write_no_exec() {
    let p = plan(64 * MIB);
    let t = tables(&p);
    let middle = (p.heap_start + p.heap_end) / 2;
    let m = mapped(&t, middle);
    assert!(m.write && m.user && !m.exec, "{m:?}");
    assert_ne!(m.leaf & WRITABLE, 0);
    assert_ne!(m.leaf & USER, 0);
    assert_ne!(m.leaf & NO_EXEC, 0, "heap leaf lacks bit 63");
    // Its first page too (it follows the image in the same 2 MiB chunk).
    let first = mapped(&t, p.heap_start);
    assert!(first.write && first.user && !first.exec, "{first:?}");
}

#[test]
fn image_pages_follow_segment_rights() {
    let t = tables(&plan(64 * MIB));
    let text = mapped(&t, TEXT + 0x1234);
    assert!(text.user && !text.write && text.exec, "{text:?}");
    assert_eq!(text.leaf & NO_EXEC, 0);
    assert_eq!(text.leaf & WRITABLE, 0);
    assert_eq!(text.page_size, PAGE);

    let rodata = mapped(&t, RODATA);
    assert!(rodata.user && !rodata.write && !rodata.exec, "{rodata:?}");

    let data = mapped(&t, DATA + 0x2000);
    assert!(data.user && data.write && !data.exec, "{data:?}");
}

#[test]
fn monitor_pages_are_supervisor_only() {
    let t = tables(&plan(64 * MIB));
    let gdt = mapped(&t, layout::GDT_ADDR);
    assert!(!gdt.user && !gdt.write && !gdt.exec, "{gdt:?}");
    assert_eq!(gdt.leaf & USER, 0);
    let idt = mapped(&t, layout::IDT_ADDR);
    assert!(!idt.user, "{idt:?}");

    let stubs = mapped(&t, layout::FAULT_STUBS_ADDR);
    assert!(!stubs.user && !stubs.write && stubs.exec, "{stubs:?}");

    let fault_stack = mapped(&t, layout::FAULT_STACK_TOP - 8);
    assert!(!fault_stack.user && fault_stack.write && !fault_stack.exec, "{fault_stack:?}");
}

#[test]
fn boot_info_is_user_read_only() {
    let t = tables(&plan(64 * MIB));
    for addr in [layout::BOOT_INFO_ADDR, layout::BOOT_INFO_ADDR + 0x1800, layout::BOOT_INFO_END - 1]
    {
        let m = mapped(&t, addr);
        assert!(m.user && !m.write && !m.exec, "{addr:#x}: {m:?}");
    }
}

#[test]
fn console_is_user_writable() {
    let t = tables(&plan(64 * MIB));
    let m = mapped(&t, layout::CONSOLE_ADDR);
    assert!(m.user && m.write && !m.exec, "{m:?}");
    assert!(mapped(&t, layout::CONSOLE_ADDR + PAGE - 1).write);
}

#[test]
fn stack_is_user_writable_to_the_last_byte() {
    let p = plan(64 * MIB);
    let t = tables(&p);
    for addr in [p.mem_size - 1, p.mem_size - 8, p.mem_size - layout::STACK_SIZE] {
        let m = mapped(&t, addr);
        assert!(m.user && m.write && !m.exec, "{addr:#x}: {m:?}");
    }
}

#[test]
fn nothing_beyond_memory_is_mapped() {
    let p = plan(64 * MIB);
    let t = tables(&p);
    let mut addr = p.mem_size;
    while addr < 8 << 30 {
        assert_unmapped(&t, addr);
        assert_unmapped(&t, addr + PAGE);
        addr += 2 * MIB;
    }
    let mut gib = 8u64;
    while gib < 512 {
        assert_unmapped(&t, gib << 30);
        gib += 1;
    }
    for addr in [1 << 39, 1 << 47, 0xffff_8000_0000_0000, u64::MAX] {
        assert_unmapped(&t, addr);
    }
}

#[test]
fn every_page_matches_the_plan() {
    for mem in [layout::MIN_MEM_SIZE, 64 * MIB] {
        let p = plan(mem);
        let t = tables(&p);
        let mut addr = 0;
        while addr < mem + 4 * MIB {
            let expected =
                p.regions.iter().find(|r| r.start <= addr && addr < r.end).map(|r| r.access);
            match (expected, walk(&t, addr)) {
                (None, None) => {}
                (Some(access), Some(m)) => {
                    assert_eq!(m.phys, addr);
                    assert_eq!(
                        (m.user, m.write, m.exec),
                        (access.user, access.write, access.exec),
                        "{addr:#x}"
                    );
                }
                (expected, found) => {
                    panic!("{addr:#x}: plan says {expected:?}, tables say {found:?}")
                }
            }
            addr += PAGE;
        }
    }
}

#[test]
fn uniform_chunks_use_2_mib_pages() {
    let p = plan(64 * MIB);
    let t = tables(&p);
    // The middle of the heap: a 2 MiB leaf.
    let middle = 32 * MIB;
    let pde = pd_entry(&t, middle);
    assert_ne!(pde & PRESENT, 0);
    assert_ne!(pde & HUGE, 0, "heap chunk not mapped by a 2 MiB page");
    assert_eq!(pde & HUGE_ADDR_MASK, middle);
    assert_eq!(mapped(&t, middle + 0x1_2345).page_size, 2 * MIB);
    // The first chunk (reserved area, image) and the last (guard, stack) mix rights: 4 KiB.
    assert_eq!(pd_entry(&t, 0) & HUGE, 0);
    assert_eq!(mapped(&t, TEXT).page_size, PAGE);
    assert_eq!(pd_entry(&t, p.mem_size - 1) & HUGE, 0);
    assert_eq!(mapped(&t, p.mem_size - 1).page_size, PAGE);
    // Chunk 0 and the stack chunk each need a page table; every other heap chunk is huge:
    // PML4 + PDPT + one PD + two PTs.
    assert_eq!(t.tables.len(), 5);
}

#[test]
fn four_gib_guest_is_mapped_to_its_last_page() {
    let mem = 4 << 30;
    let p = plan(mem);
    let t = build(&p).unwrap();
    // PML4, PDPT, four PDs, and two PTs.
    assert_eq!(t.tables.len(), 8);
    let m = mapped(&t, mem - 1);
    assert!(m.user && m.write && !m.exec, "{m:?}");
    assert_eq!(m.page_size, PAGE);
    // Each GiB has its own PD; the fifth PDPT slot is empty.
    let pml4e = table(&t, t.root())[0];
    let pdpt = table(&t, pml4e & ADDR_MASK);
    for (slot, entry) in pdpt.iter().enumerate() {
        assert_eq!(entry & PRESENT != 0, slot < 4, "PDPT slot {slot}");
    }
    for gib in 1..4u64 {
        let m = mapped(&t, gib << 30);
        assert_eq!(m.page_size, 2 * MIB);
        assert!(m.user && m.write && !m.exec);
    }
    assert_unmapped(&t, mem);
    assert_unmapped(&t, p.heap_end);
}

#[test]
fn minimum_guest_builds() {
    let p = plan(layout::MIN_MEM_SIZE);
    let t = tables(&p);
    assert_unmapped(&t, 0);
    assert_unmapped(&t, p.heap_end);
    assert!(mapped(&t, p.mem_size - 1).write);
    assert!(mapped(&t, TEXT).exec);
    assert_unmapped(&t, p.mem_size);
}
