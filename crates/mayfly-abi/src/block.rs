//! The block device (a volume): batches of sector requests passed to one hypercall.
//!
//! A guest with a volume finds its capacity in [`crate::BootInfo::block`]. It fills an array of
//! [`BlockRequest`]s in its own memory and makes one [`crate::Hypercall::Block`] with a
//! [`BlockArgs`] naming the array: the monitor serves the requests in order (reads with `pread`,
//! writes with `pwrite`, flushes with `fdatasync` on the volume's file) and writes each
//! request's `status` back. One exit (~25 us on PVM) serves the whole batch, so a guest batches
//! what it can. A flush makes every write completed before it durable.
//!
//! The monitor copies the array out once and validates every request before serving any: a
//! request with an unknown operation, a sector range outside the volume, a buffer outside the
//! guest's memory (or, for a read, outside its writable memory), or a batch longer than
//! [`BLOCK_BATCH_MAX`] stops the guest with a report. A write to a read-only volume is not
//! malformed: it gets [`crate::Status::Unsupported`] and the guest goes on.

use crate::GuestAddr;

/// Bytes per sector.
pub const SECTOR_SIZE: u32 = 512;
/// Most requests in one batch.
pub const BLOCK_BATCH_MAX: u32 = 256;
/// Most sectors in one request (1 MiB).
pub const REQUEST_SECTORS_MAX: u32 = 2048;

/// [`BlockInfo::flags`]: the volume is read-only.
pub const BLOCK_READ_ONLY: u32 = 1;

/// The volume, as the monitor reports it at boot. All zero when no volume is attached.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Capacity in sectors.
    pub sectors: u64,
    /// Bytes per sector ([`SECTOR_SIZE`]).
    pub sector_size: u32,
    /// [`BLOCK_READ_ONLY`] or 0.
    pub flags: u32,
}

/// What a [`BlockRequest`] does.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    /// Copy `sectors` sectors from the volume at `sector` into `buf`.
    Read = 0,
    /// Copy `sectors` sectors from `buf` to the volume at `sector`.
    Write = 1,
    /// Make every write completed so far durable (`sector`, `sectors`, `buf` are ignored).
    Flush = 2,
}

impl BlockOp {
    /// Decodes a raw operation; unknown values are `None`.
    pub fn from_raw(raw: u32) -> Option<BlockOp> {
        match raw {
            0 => Some(BlockOp::Read),
            1 => Some(BlockOp::Write),
            2 => Some(BlockOp::Flush),
            _ => None,
        }
    }
}

/// One request of a batch. Plain data: no padding, any bit pattern is valid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockRequest {
    /// IN: a [`BlockOp`] as `u32`.
    pub op: u32,
    /// IN: number of sectors (at most [`REQUEST_SECTORS_MAX`]).
    pub sectors: u32,
    /// IN: first sector.
    pub sector: u64,
    /// IN: address of the data (`sectors * SECTOR_SIZE` bytes).
    pub buf: GuestAddr,
    /// OUT: a [`crate::Status`] as `i32`.
    pub status: i32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Arguments of [`crate::Hypercall::Block`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockArgs {
    /// IN: address of an array of `count` [`BlockRequest`]s (in the guest's writable memory).
    pub requests: GuestAddr,
    /// IN: number of requests (at most [`BLOCK_BATCH_MAX`]).
    pub count: u32,
    /// OUT: a [`crate::Status`] as `i32`: `Ok` when every request succeeded.
    pub status: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_structs_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<BlockInfo>(), 8 + 4 + 4);
        assert_eq!(core::mem::size_of::<BlockRequest>(), 4 + 4 + 8 + 8 + 4 + 4);
        assert_eq!(core::mem::size_of::<BlockArgs>(), 8 + 4 + 4);
        assert_eq!(BlockOp::from_raw(2), Some(BlockOp::Flush));
        assert_eq!(BlockOp::from_raw(3), None);
    }
}
