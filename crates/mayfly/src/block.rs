//! The volume (`mayfly run --volume FILE`): sectors read and written in batches, one exit per
//! batch, and the crash-safe key-value store on it ([`open_store`], [`crate::block::Store`]).
//!
//! Writes are queued and sent with the next flush (or read) in one batch: a flushed write costs
//! one exit. Build with the `block` feature; without a volume attached, [`Volume::attached`]
//! is `None`.

use crate::platform;
use alloc::vec::Vec;
use mayfly_abi::block::{
    BLOCK_BATCH_MAX, BLOCK_READ_ONLY, BlockOp, BlockRequest, REQUEST_SECTORS_MAX, SECTOR_SIZE,
};
use mayfly_abi::manifest::Device;
pub use mayfly_store::{Error as StoreError, Op, Store};

const SECTOR: usize = SECTOR_SIZE as usize;
const REQUEST_MAX: usize = REQUEST_SECTORS_MAX as usize * SECTOR;

/// Why a volume request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// A buffer that is not a whole number of sectors, or a range past the end of the volume.
    Range,
    /// The volume is read-only.
    ReadOnly,
    /// The monitor could not serve the request (a host I/O error).
    Io,
}

/// The attached volume.
#[derive(Debug)]
pub struct Volume {
    sectors: u64,
    read_only: bool,
    /// Writes not yet sent: sector and data.
    queued: Vec<(u64, Vec<u8>)>,
}

impl Volume {
    /// The volume the monitor attached, if any.
    pub fn attached() -> Option<Volume> {
        let info = platform::boot_info();
        if info.devices & (1 << Device::Block as u64) == 0 || info.block.sector_size != SECTOR_SIZE
        {
            return None;
        }
        Some(Volume {
            sectors: info.block.sectors,
            read_only: info.block.flags & BLOCK_READ_ONLY != 0,
            queued: Vec::new(),
        })
    }

    /// Capacity in sectors of [`mayfly_abi::block::SECTOR_SIZE`] bytes.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the guest may only read it.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlockError> {
        let count = (len / SECTOR) as u64;
        match sector.checked_add(count) {
            Some(end) if len.is_multiple_of(SECTOR) && end <= self.sectors => Ok(()),
            _ => Err(BlockError::Range),
        }
    }

    /// Reads whole sectors from `sector` into `buf` (one exit, with any queued writes first).
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len())?;
        let mut requests = self.take_queued();
        for (i, chunk) in buf.chunks_mut(REQUEST_MAX).enumerate() {
            let at = sector + (i * REQUEST_MAX / SECTOR) as u64;
            requests.push(request(BlockOp::Read, at, chunk.as_mut_ptr(), chunk.len()));
        }
        self.send(requests)
    }

    /// Reads several ranges in one exit: `(sector, buffer)` each.
    pub fn read_many(&mut self, reads: &mut [(u64, &mut [u8])]) -> Result<(), BlockError> {
        let mut requests = self.take_queued();
        for (sector, buf) in reads.iter_mut() {
            self.check(*sector, buf.len())?;
            if buf.len() > REQUEST_MAX {
                return Err(BlockError::Range);
            }
            requests.push(request(BlockOp::Read, *sector, buf.as_mut_ptr(), buf.len()));
        }
        self.send(requests)
    }

    /// Queues a write of whole sectors at `sector`; it reaches the volume with the next
    /// [`Volume::flush`] or read.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.check(sector, buf.len())?;
        for (i, chunk) in buf.chunks(REQUEST_MAX).enumerate() {
            self.queued.push((sector + (i * REQUEST_MAX / SECTOR) as u64, chunk.to_vec()));
        }
        Ok(())
    }

    /// Sends the queued writes and makes them durable (`fdatasync` on the host), in one exit.
    pub fn flush(&mut self) -> Result<(), BlockError> {
        let mut requests = self.take_queued();
        requests.push(BlockRequest { op: BlockOp::Flush as u32, ..BlockRequest::default() });
        self.send(requests)
    }

    /// Sends `requests` (which start with the queued writes), then drops the queue.
    fn send(&mut self, mut requests: Vec<BlockRequest>) -> Result<(), BlockError> {
        let result = submit(&mut requests);
        self.queued.clear();
        result
    }

    /// The queued writes as requests (their data stays in `self.queued` until sent).
    fn take_queued(&mut self) -> Vec<BlockRequest> {
        self.queued
            .iter_mut()
            .map(|(sector, data)| request(BlockOp::Write, *sector, data.as_mut_ptr(), data.len()))
            .collect()
    }
}

fn request(op: BlockOp, sector: u64, buf: *mut u8, len: usize) -> BlockRequest {
    BlockRequest {
        op: op as u32,
        sectors: (len / SECTOR) as u32,
        sector,
        buf: buf as u64,
        status: 0,
        reserved: 0,
    }
}

/// Sends `requests` in batches of at most [`BLOCK_BATCH_MAX`].
fn submit(requests: &mut [BlockRequest]) -> Result<(), BlockError> {
    for batch in requests.chunks_mut(BLOCK_BATCH_MAX as usize) {
        if platform::block(batch) != mayfly_abi::Status::Ok as i32 {
            let read_only =
                batch.iter().any(|r| r.status == mayfly_abi::Status::Unsupported as i32);
            return Err(if read_only { BlockError::ReadOnly } else { BlockError::Io });
        }
    }
    Ok(())
}

impl mayfly_store::BlockDevice for Volume {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        Volume::read(self, sector, buf).map_err(|_| StoreError::Io)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), StoreError> {
        Volume::write(self, sector, buf).map_err(|_| StoreError::Io)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        Volume::flush(self).map_err(|_| StoreError::Io)
    }
}

/// Opens the key-value store on the attached volume (formatting it if it holds none; only
/// reading it if the volume is read-only).
pub fn open_store() -> Result<Store<Volume>, StoreError> {
    let volume = Volume::attached().ok_or(StoreError::Io)?;
    if volume.read_only() { Store::open_read_only(volume) } else { Store::open(volume) }
}
