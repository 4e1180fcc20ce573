//! The guest's page tables, built by the monitor from the memory plan.
//!
//! Identity mapping (virtual = physical) in 4-level paging. A 2 MiB chunk whose whole range has
//! one access right is one 2 MiB page; a chunk with mixed rights (the reserved area and the
//! image, the stack guard) gets a page table of 4 KiB pages. Unplanned ranges (the null page,
//! the page tables themselves, the stack guard) are not mapped at all. The tables live in the
//! monitor's reserved area, which the guest cannot reach from ring 3.

use crate::plan::{Access, MemoryPlan, Region};
use mayfly_abi::layout;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const HUGE: u64 = 1 << 7;
const NO_EXEC: u64 = 1 << 63;
const ENTRIES: usize = 512;
const CHUNK: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// One 4 KiB table of 512 entries, with the guest address it will be written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePage {
    /// Guest-physical address of the table.
    pub addr: u64,
    /// The entries.
    pub entries: Box<[u64; ENTRIES]>,
}

/// The page tables were larger than the reserved area allows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the image's segments need more page tables than fit below {:#x}", layout::RESERVED_END)]
pub struct TooManyTables;

/// All tables to write into guest memory; `tables[0]` is the PML4 (the value of CR3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageTables {
    /// The tables.
    pub tables: Vec<TablePage>,
}

impl PageTables {
    /// Address of the top-level table (for CR3).
    pub fn root(&self) -> u64 {
        layout::PAGE_TABLES_ADDR
    }
}

struct Allocator {
    tables: Vec<TablePage>,
}

impl Allocator {
    fn alloc(&mut self) -> Result<usize, TooManyTables> {
        let index = self.tables.len();
        let addr = layout::PAGE_TABLES_ADDR + index as u64 * layout::PAGE_SIZE;
        if addr + layout::PAGE_SIZE > layout::RESERVED_END {
            return Err(TooManyTables);
        }
        self.tables.push(TablePage { addr, entries: Box::new([0; ENTRIES]) });
        Ok(index)
    }

    fn set(&mut self, table: usize, slot: usize, value: u64) {
        if let Some(entry) = self.tables.get_mut(table).and_then(|t| t.entries.get_mut(slot)) {
            *entry = value;
        }
    }
}

fn leaf_bits(access: Access) -> u64 {
    let mut bits = PRESENT | ACCESSED | DIRTY;
    if access.write {
        bits |= WRITABLE;
    }
    if access.user {
        bits |= USER;
    }
    if !access.exec {
        bits |= NO_EXEC;
    }
    bits
}

/// Builds the page tables for `plan`.
pub fn build(plan: &MemoryPlan) -> Result<PageTables, TooManyTables> {
    const TABLE: u64 = PRESENT | WRITABLE | USER | ACCESSED;
    let mut alloc = Allocator { tables: Vec::new() };
    let pml4 = alloc.alloc()?;
    let pdpt = alloc.alloc()?;
    let pdpt_addr = alloc.tables[pdpt].addr;
    alloc.set(pml4, 0, pdpt_addr | TABLE);

    let mut regions = plan.regions.iter().peekable();
    let mut pd = None;
    let mut chunk = 0;
    while chunk < plan.mem_size {
        let gib = (chunk / GIB) as usize;
        if chunk % GIB == 0 {
            let table = alloc.alloc()?;
            let addr = alloc.tables[table].addr;
            alloc.set(pdpt, gib, addr | TABLE);
            pd = Some(table);
        }
        let chunk_end = chunk + CHUNK;
        // Drop regions that end before this chunk.
        while regions.peek().is_some_and(|r| r.end <= chunk) {
            regions.next();
        }
        let covering: Vec<&Region> =
            regions.clone().take_while(|r| r.start < chunk_end).filter(|r| r.end > chunk).collect();
        let slot = ((chunk % GIB) / CHUNK) as usize;
        let pd = pd.unwrap_or(pml4);
        match covering.as_slice() {
            [] => {}
            [only] if only.start <= chunk && only.end >= chunk_end => {
                alloc.set(pd, slot, chunk | leaf_bits(only.access) | HUGE);
            }
            several => {
                let pt = alloc.alloc()?;
                let pt_addr = alloc.tables[pt].addr;
                alloc.set(pd, slot, pt_addr | TABLE);
                for region in several {
                    let from = region.start.max(chunk);
                    let to = region.end.min(chunk_end);
                    let mut page = from;
                    while page < to {
                        let index = ((page - chunk) / layout::PAGE_SIZE) as usize;
                        alloc.set(pt, index, page | leaf_bits(region.access));
                        page += layout::PAGE_SIZE;
                    }
                }
            }
        }
        chunk = chunk_end;
    }
    Ok(PageTables { tables: alloc.tables })
}

#[cfg(test)]
mod tests;
