//! The memory plan of one guest: which range of guest memory is what, with which access rights.
//!
//! Pure arithmetic, checked: computed from the validated image and the memory size before any
//! KVM object exists, so a bad combination is refused with a clear message and nothing to undo.

use crate::image::Image;
use mayfly_abi::layout;

/// Access rights of a mapped range, as the guest's page tables will grant them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Reachable from ring 3 (the guest application). If false, only the CPU's exception path.
    pub user: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Access {
    /// Read-only data for the guest.
    pub const USER_RO: Access = Access { user: true, write: false, exec: false };
    /// Read-write data for the guest.
    pub const USER_RW: Access = Access { user: true, write: true, exec: false };
    /// Monitor-owned tables, read by the CPU only.
    pub const SUPERVISOR_RO: Access = Access { user: false, write: false, exec: false };
    /// Monitor-owned exception stack.
    pub const SUPERVISOR_RW: Access = Access { user: false, write: true, exec: false };
    /// Monitor-owned exception stubs.
    pub const SUPERVISOR_RX: Access = Access { user: false, write: false, exec: true };
}

/// A page-aligned range of guest memory and its access rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address (page-aligned).
    pub start: u64,
    /// One past the last address (page-aligned).
    pub end: u64,
    /// Rights granted.
    pub access: Access,
}

/// Why an image and a memory size do not fit together.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "guest memory of {mib} MiB is too small: at least {min} MiB is needed; raise --mem",
        mib = .0 >> 20, min = layout::MIN_MEM_SIZE >> 20
    )]
    TooSmall(u64),
    #[error(
        "guest memory of {mib} MiB is too large: at most {max} MiB is supported; lower --mem",
        mib = .0 >> 20, max = layout::MAX_MEM_SIZE >> 20
    )]
    TooLarge(u64),
    #[error(
        "guest memory of {} KiB is not a multiple of 2 MiB; give an even --mem",
        .0 >> 10
    )]
    Unaligned(u64),
    #[error(
        "the image needs {need} KiB of memory up to {end:#x} but the guest has only {mib} MiB \
         (minus a {stack} KiB stack); raise --mem",
        need = end >> 10, mib = mem >> 20, stack = layout::STACK_SIZE >> 10
    )]
    ImageTooLarge { end: u64, mem: u64 },
}

/// The plan: every mapped region, plus the addresses the boot info reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Bytes of guest memory.
    pub mem_size: u64,
    /// Mapped regions, sorted by address, not overlapping. Gaps are unmapped.
    pub regions: Vec<Region>,
    /// First byte of the heap.
    pub heap_start: u64,
    /// One past the last byte of the heap.
    pub heap_end: u64,
    /// One past the top of the stack (= `mem_size`).
    pub stack_top: u64,
    /// Where the NIC's rings are, if the guest has a NIC.
    pub net_rings: Option<u64>,
}

const fn page_down(addr: u64) -> u64 {
    addr & !(layout::PAGE_SIZE - 1)
}

fn page_up(addr: u64) -> Option<u64> {
    Some(page_down(addr.checked_add(layout::PAGE_SIZE - 1)?))
}

impl MemoryPlan {
    /// Lays out `image` in `mem_size` bytes of guest memory, with room for the NIC's rings if
    /// `nic`.
    pub fn new(image: &Image, mem_size: u64, nic: bool) -> Result<MemoryPlan, PlanError> {
        if mem_size < layout::MIN_MEM_SIZE {
            return Err(PlanError::TooSmall(mem_size));
        }
        if mem_size > layout::MAX_MEM_SIZE {
            return Err(PlanError::TooLarge(mem_size));
        }
        if !mem_size.is_multiple_of(2 << 20) {
            return Err(PlanError::Unaligned(mem_size));
        }
        let stack_bottom = mem_size - layout::STACK_SIZE;
        let guard = stack_bottom - layout::PAGE_SIZE;
        let rings_bytes = if nic { 2 * mayfly_abi::net::RING_BYTES } else { 0 };
        let heap_end = guard.saturating_sub(rings_bytes);
        let too_large = PlanError::ImageTooLarge { end: image.end(), mem: mem_size };
        let heap_start = page_up(image.end()).ok_or(too_large.clone())?;
        if heap_start > heap_end {
            return Err(too_large);
        }

        let mut regions = vec![
            Region { start: layout::GDT_ADDR, end: 0x2000, access: Access::SUPERVISOR_RO },
            Region { start: layout::FAULT_STUBS_ADDR, end: 0x3000, access: Access::SUPERVISOR_RX },
            Region { start: 0x3000, end: layout::FAULT_STACK_TOP, access: Access::SUPERVISOR_RW },
            Region {
                start: layout::BOOT_INFO_ADDR,
                end: layout::BOOT_INFO_END,
                access: Access::USER_RO,
            },
            Region {
                start: layout::CONSOLE_ADDR,
                end: layout::CONSOLE_ADDR + layout::PAGE_SIZE,
                access: Access::USER_RW,
            },
            // The hypercall doorbell: mapped so that a ring-3 store reaches the hypervisor
            // (no memory slot backs it, see `kvm.rs`).
            Region {
                start: layout::DOORBELL_ADDR,
                end: layout::DOORBELL_ADDR + layout::PAGE_SIZE,
                access: Access::USER_RW,
            },
        ];
        regions.extend(segment_regions(image));
        // The heap and the NIC's rings are contiguous and have the same rights.
        if heap_start < guard {
            regions.push(Region { start: heap_start, end: guard, access: Access::USER_RW });
        }
        regions.push(Region { start: stack_bottom, end: mem_size, access: Access::USER_RW });
        Ok(MemoryPlan {
            mem_size,
            regions,
            heap_start,
            heap_end,
            stack_top: mem_size,
            net_rings: nic.then_some(heap_end),
        })
    }
}

impl MemoryPlan {
    /// Whether the guest may write all of `[addr, addr + len)` itself: every byte in a region
    /// its page tables grant ring 3 write access to (not the doorbell, which has no memory).
    /// The monitor writes hypercall results only there, never into the guest's code or
    /// read-only data.
    pub fn guest_writable(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        let mut at = addr;
        for region in &self.regions {
            if at >= end {
                break;
            }
            let writable =
                region.access.user && region.access.write && region.start != layout::DOORBELL_ADDR;
            if region.start <= at && at < region.end && writable {
                at = region.end;
            }
        }
        at >= end && len > 0
    }
}

/// The image's segments as page-aligned regions. Where two segments share a page, the page gets
/// the union of their rights (images from `mayfly build` never share pages).
fn segment_regions(image: &Image) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for seg in &image.segments {
        let access = Access { user: true, write: seg.flags.write, exec: seg.flags.exec };
        let start = page_down(seg.start);
        // `Image::parse` checked that the end does not wrap; image.end() <= heap_start.
        let end = page_up(seg.end()).unwrap_or(u64::MAX);
        match out.last_mut() {
            Some(last) if last.end > start => {
                // Shared page: split off the shared page with merged rights.
                let merged = Access {
                    user: true,
                    write: last.access.write || access.write,
                    exec: last.access.exec || access.exec,
                };
                let shared_start = last.end - layout::PAGE_SIZE;
                last.end = shared_start;
                if last.start == last.end {
                    out.pop();
                }
                out.push(Region {
                    start: shared_start,
                    end: shared_start + layout::PAGE_SIZE,
                    access: merged,
                });
                if shared_start + layout::PAGE_SIZE < end {
                    out.push(Region { start: shared_start + layout::PAGE_SIZE, end, access });
                }
            }
            _ => out.push(Region { start, end, access }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
