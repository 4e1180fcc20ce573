//! Guest memory: one anonymous mapping, reached only by checked copies.
//!
//! The monitor never holds a reference into guest memory. Every access names a guest address
//! and a length, is bounds-checked with overflow-safe arithmetic, and copies: in with
//! [`GuestRam::read`] (the copy is then validated and used), out with [`GuestRam::write`].
//! Addresses that come from the guest go through [`GuestRam::check_guest_range`] first, which
//! also refuses the monitor's reserved area.

use mayfly_abi::{BootInfo, ExitArgs, WaitArgs, layout};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// A guest address range that is not inside guest memory (or not the guest's to name).
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("guest range {addr:#x}+{len:#x} is outside the guest's memory")]
pub struct BadRange {
    /// Start of the range.
    pub addr: u64,
    /// Length of the range.
    pub len: u64,
}

/// A plain-data value copied in or out of guest memory.
///
/// Only the ABI structures listed below are `Plain`: each is `#[repr(C)]`, made of integers and
/// byte arrays only, with no implicit padding (the ABI crate's tests check each size), so every
/// bit pattern is a valid value and no byte is uninitialised.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain<T>(pub T);

// SAFETY: `ExitArgs` is repr(C), integers only, no padding (see the contract above).
unsafe impl ByteValued for Plain<ExitArgs> {}
// SAFETY: `WaitArgs` is repr(C), integers only, no padding (see the contract above).
unsafe impl ByteValued for Plain<WaitArgs> {}
// SAFETY: `BootInfo` is repr(C), integers and a byte array, no padding (see the contract above).
unsafe impl ByteValued for Plain<BootInfo> {}
// SAFETY: `BlockArgs` is repr(C), integers only, no padding (see the contract above).
unsafe impl ByteValued for Plain<mayfly_abi::block::BlockArgs> {}
// SAFETY: `BlockRequest` is repr(C), integers only, no padding (see the contract above).
unsafe impl ByteValued for Plain<mayfly_abi::block::BlockRequest> {}

/// The guest's memory.
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap<()>,
    size: u64,
}

/// The anonymous mapping for guest memory could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot map {mib} MiB of guest memory: {cause}")]
pub struct MapError {
    mib: u64,
    cause: vm_memory::mmap::FromRangesError,
}

/// A template's memory could not be mapped.
#[derive(Debug, thiserror::Error)]
#[error("cannot map the snapshot's memory: {0}")]
pub struct TemplateMapError(String);

impl GuestRam {
    /// Maps `size` bytes of zeroed guest memory at guest address 0. Nothing is touched: pages
    /// are allocated by the host kernel as the guest (or the loader) first uses them.
    pub fn new(size: u64) -> Result<GuestRam, MapError> {
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
            .map_err(|source| MapError { mib: size >> 20, cause: source })?;
        Ok(GuestRam { mem, size })
    }

    /// Maps `size` bytes of `file`, from `offset` (page-aligned), as guest memory at guest
    /// address 0, copy-on-write (`MAP_PRIVATE`): what the guest writes stays in this mapping,
    /// never reaches the file or any other mapping of it. Pages are shared with other private
    /// mappings of the file until written. The file must hold `offset + size` bytes.
    pub fn private_copy_of(
        file: std::fs::File,
        offset: u64,
        size: u64,
    ) -> Result<GuestRam, TemplateMapError> {
        use vm_memory::mmap::{GuestRegionMmap, MmapRegionBuilder};
        let len = usize::try_from(size).map_err(|_| TemplateMapError("size".into()))?;
        let region = MmapRegionBuilder::new(len)
            .with_file_offset(vm_memory::FileOffset::new(file, offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| TemplateMapError(e.to_string()))?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or_else(|| TemplateMapError("region".into()))?;
        let mem = GuestMemoryMmap::from_regions(vec![region])
            .map_err(|e| TemplateMapError(e.to_string()))?;
        Ok(GuestRam { mem, size })
    }

    /// Makes the pages of guest range `[addr, addr + len)` this mapping's own now
    /// (`MADV_POPULATE_WRITE`: in a private file mapping, each is copied), so that the guest's
    /// first accesses to them fault once, not twice. Best effort: on failure the pages are
    /// simply faulted in later.
    pub fn populate_write(&self, addr: u64, len: u64) {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        if self.check_range(addr, len).is_err() {
            return;
        }
        let (Some(base), Ok(len)) = (self.host_base(), usize::try_from(len)) else { return };
        let Some(start) = base.checked_add(addr) else { return };
        // SAFETY: the range lies inside this mapping, which `self` owns (checked above);
        // MADV_POPULATE_WRITE only faults its pages in as if written, changing no contents
        // and no mapping.
        let _ = unsafe { libc::madvise(start as *mut libc::c_void, len, MADV_POPULATE_WRITE) };
    }

    /// Bytes of guest memory.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The vm-memory view, for the ELF loader and for registering the mapping with KVM.
    pub fn mmap(&self) -> &GuestMemoryMmap<()> {
        &self.mem
    }

    /// Host address of guest address 0, for `KVM_SET_USER_MEMORY_REGION`.
    pub fn host_base(&self) -> Option<u64> {
        self.mem.get_host_address(GuestAddress(0)).ok().map(|p| p as u64)
    }

    /// Checks that `[addr, addr + len)` lies inside guest memory.
    pub fn check_range(&self, addr: u64, len: u64) -> Result<(), BadRange> {
        match addr.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BadRange { addr, len }),
        }
    }

    /// Checks a range named by the guest: inside guest memory and above the reserved area.
    pub fn check_guest_range(&self, addr: u64, len: u64) -> Result<(), BadRange> {
        if addr < layout::RESERVED_END {
            return Err(BadRange { addr, len });
        }
        self.check_range(addr, len)
    }

    /// Copies a plain-data value out of guest memory.
    pub fn read<T>(&self, addr: u64) -> Result<T, BadRange>
    where
        Plain<T>: ByteValued,
    {
        let len = std::mem::size_of::<T>() as u64;
        self.check_range(addr, len)?;
        self.mem
            .read_obj::<Plain<T>>(GuestAddress(addr))
            .map(|plain| plain.0)
            .map_err(|_| BadRange { addr, len })
    }

    /// Copies a plain-data value into guest memory.
    pub fn write<T>(&self, addr: u64, value: T) -> Result<(), BadRange>
    where
        Plain<T>: ByteValued,
    {
        let len = std::mem::size_of::<T>() as u64;
        self.check_range(addr, len)?;
        self.mem.write_obj(Plain(value), GuestAddress(addr)).map_err(|_| BadRange { addr, len })
    }

    /// Copies `len` bytes out of guest memory.
    pub fn read_bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>, BadRange> {
        self.check_range(addr, len as u64)?;
        let mut buf = vec![0; len];
        self.mem
            .read_slice(&mut buf, GuestAddress(addr))
            .map_err(|_| BadRange { addr, len: len as u64 })?;
        Ok(buf)
    }

    /// Copies `bytes` into guest memory.
    pub fn write_bytes(&self, addr: u64, bytes: &[u8]) -> Result<(), BadRange> {
        let len = bytes.len() as u64;
        self.check_range(addr, len)?;
        self.mem.write_slice(bytes, GuestAddress(addr)).map_err(|_| BadRange { addr, len })
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, addr: u64) -> Result<u32, BadRange> {
        let bytes = self.read_bytes(addr, 4)?;
        let array: [u8; 4] = bytes.try_into().map_err(|_| BadRange { addr, len: 4 })?;
        Ok(u32::from_le_bytes(array))
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, addr: u64) -> Result<u64, BadRange> {
        let bytes = self.read_bytes(addr, 8)?;
        let array: [u8; 8] = bytes.try_into().map_err(|_| BadRange { addr, len: 8 })?;
        Ok(u64::from_le_bytes(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_overflow() {
        let ram = GuestRam::new(4 << 20).unwrap();
        assert!(ram.check_range(0, 4 << 20).is_ok());
        assert!(ram.check_range(1, 4 << 20).is_err());
        assert!(ram.check_range(u64::MAX, 2).is_err());
        assert!(ram.check_range(u64::MAX - 1, 1).is_err());
        assert!(ram.check_guest_range(0x1000, 8).is_err(), "reserved area is refused");
        assert!(ram.check_guest_range(layout::RESERVED_END, 8).is_ok());
        assert!(ram.read_bytes((4 << 20) - 2, 4).is_err());
        assert!(ram.read::<ExitArgs>(u64::MAX - 3).is_err());
    }

    #[test]
    fn values_round_trip() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let args = ExitArgs { status: -5, reason: 1, message: 0x1234, message_len: 9, reserved: 0 };
        ram.write(0x20_0000, args).unwrap();
        assert_eq!(ram.read::<ExitArgs>(0x20_0000).unwrap(), args);
        assert_eq!(ram.read_u32(0x20_0000).unwrap(), (-5i32) as u32);
    }
}
