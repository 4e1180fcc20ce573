//! A crash-safe key-value store on a block device: checksummed append-only log, replay,
//! compaction into a second region switched by a double superblock.
//! See docs/design.md, "Map", for its place among the other crates, and "Volumes" for the design.
//!
//! `no_std` (with `alloc`) so that the library OS links it into guests (`mayfly::store`, the
//! `block` feature), and tested on the host over an in-memory device that tears and reorders
//! sector writes (`tests/crashes.rs`).
//!
//! # On-disk layout (sectors of [`SECTOR`] bytes)
//! ```text
//! sector 0, 1   superblock copies; generation g is written to copy g % 2
//! 2 ..          region 0 | region 1 (equal halves of the rest); one is active
//! ```
//! The active region holds a log of records from its start. A record is a 32-byte header
//! (magic, CRC-32 of header and payload, sequence number, epoch, key length, operation, flags,
//! value length) and its payload (key, then value). The records of one [`Store::apply`] call (a
//! batch) are contiguous; the last has the `END` flag and the batch is padded to a sector
//! boundary, so that appending never rewrites a sector holding acknowledged data.
//!
//! # Guarantees
//! A batch is acknowledged (its call returns `Ok`) only after its sectors were written and the
//! device flushed. Replay applies whole batches only and stops at the first record that is
//! torn, fails its checksum, breaks the sequence, or carries a stale epoch: every acknowledged
//! batch survives a crash, an unacknowledged one is either wholly present or wholly absent.
//!
//! Epochs keep stale records dead: every open writes a superblock of a new generation and new
//! records carry it as their epoch. Replay accepts epochs that never decrease, from the active
//! region's own generation up to the superblock's, so a record left past the tail by an earlier
//! life (an unacknowledged batch, an older use of the region) is never revived behind newer
//! records.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod crc32;
mod log;
mod superblock;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
pub use log::{MAX_KEY, MAX_VALUE};
use superblock::Superblock;

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// A device of fixed-size sectors that can make its writes durable.
pub trait BlockDevice {
    /// Capacity in sectors.
    fn sectors(&self) -> u64;
    /// Reads whole sectors from `sector` into `buf` (a multiple of [`SECTOR`] bytes).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes whole sectors from `buf` (a multiple of [`SECTOR`] bytes) at `sector`; not
    /// durable before [`BlockDevice::flush`].
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Error>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Error>;
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The device failed a request.
    Io,
    /// The device is too small for a store (at least 8 sectors).
    TooSmall,
    /// The live data does not fit in one region even after compaction.
    Full,
    /// A key longer than [`MAX_KEY`] or a value longer than [`MAX_VALUE`].
    TooLarge,
    /// The store was opened read-only ([`Store::open_read_only`]).
    ReadOnly,
    /// A read-only open found no store on the device.
    NoStore,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Io => "the block device failed a request",
            Error::TooSmall => "the volume is too small for a store (at least 8 sectors)",
            Error::Full => "the store is full: its live data does not fit in half the volume",
            Error::TooLarge => "key or value too large",
            Error::ReadOnly => "the store is open read-only",
            Error::NoStore => "the volume holds no store (and is read-only, so none is made)",
        })
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

/// The store: its map in memory, its log on the device.
#[derive(Debug)]
pub struct Store<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Next free byte of the active region (sector-aligned).
    tail: u64,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Compactions done since open.
    compactions: u64,
    /// Opened with [`Store::open_read_only`]: nothing is ever written.
    read_only: bool,
}

impl<D: BlockDevice> Store<D> {
    /// Opens the store on `dev`, formatting it if it holds none, replaying its log otherwise.
    pub fn open(mut dev: D) -> Result<Store<D>, Error> {
        let sectors = dev.sectors();
        if sectors < 8 {
            return Err(Error::TooSmall);
        }
        let sb = match superblock::load(&mut dev)? {
            Some(sb) => sb,
            None => {
                let sb = Superblock::fresh(sectors);
                superblock::store(&mut dev, &sb)?;
                sb
            }
        };
        let (map, tail, next_seq) = log::replay(&mut dev, &sb)?;
        let mut store = Store { dev, sb, map, tail, next_seq, compactions: 0, read_only: false };
        // A new epoch for this life's records (see the crate documentation).
        let mut next = store.sb;
        next.generation += 1;
        superblock::store(&mut store.dev, &next)?;
        store.sb = next;
        Ok(store)
    }

    /// Opens the store on `dev` without writing anything (for a read-only volume): the
    /// acknowledged state is read, every change is refused with [`Error::ReadOnly`].
    pub fn open_read_only(mut dev: D) -> Result<Store<D>, Error> {
        if dev.sectors() < 8 {
            return Err(Error::TooSmall);
        }
        let sb = superblock::load(&mut dev)?.ok_or(Error::NoStore)?;
        let (map, tail, next_seq) = log::replay(&mut dev, &sb)?;
        Ok(Store { dev, sb, map, tail, next_seq, compactions: 0, read_only: true })
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Compactions made since open.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// Sets `key` to `value`, durably: returns after the flush.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.apply(&[Op::Put(key.to_vec(), value.to_vec())])
    }

    /// Removes `key`, durably; whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, Error> {
        if !self.map.contains_key(key) {
            return Ok(false);
        }
        self.apply(&[Op::Delete(key.to_vec())])?;
        Ok(true)
    }

    /// Applies `ops` atomically and durably: after `Ok`, they survive any crash; before, a
    /// crash leaves all or none of them.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if ops.is_empty() {
            return Ok(());
        }
        for op in ops {
            let (key, value) = match op {
                Op::Put(k, v) => (k, v.as_slice()),
                Op::Delete(k) => (k, &[][..]),
            };
            if key.len() > MAX_KEY || value.len() > MAX_VALUE {
                return Err(Error::TooLarge);
            }
        }
        let epoch = self.sb.generation;
        let mut batch = log::encode_batch(ops, self.next_seq, epoch);
        if self.tail + batch.len() as u64 > self.sb.region_bytes() {
            self.compact()?;
            batch = log::encode_batch(ops, self.next_seq, self.sb.generation);
            if self.tail + batch.len() as u64 > self.sb.region_bytes() {
                return Err(Error::Full);
            }
        }
        let sector = self.sb.region_start(self.sb.active) + self.tail / SECTOR as u64;
        log::write_chunked(&mut self.dev, sector, &batch)?;
        self.dev.flush()?;
        self.tail += batch.len() as u64;
        self.next_seq += ops.len() as u64;
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    self.map.insert(k.clone(), v.clone());
                }
                Op::Delete(k) => {
                    self.map.remove(k);
                }
            }
        }
        Ok(())
    }

    /// Rewrites the live entries into the other region, then switches to it with a superblock
    /// of a new generation. A crash before the switch leaves the old region active and whole.
    pub fn compact(&mut self) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let generation = self.sb.generation + 1;
        let other = 1 - self.sb.active;
        let ops: Vec<Op> = self.map.iter().map(|(k, v)| Op::Put(k.clone(), v.clone())).collect();
        let mut bytes = Vec::new();
        let mut seq = self.next_seq;
        for op in &ops {
            // One record per batch: whole records become visible only with the switch.
            let record = log::encode_batch(core::slice::from_ref(op), seq, generation);
            bytes.extend_from_slice(&record);
            seq += 1;
        }
        if bytes.len() as u64 > self.sb.region_bytes() {
            return Err(Error::Full);
        }
        if !bytes.is_empty() {
            log::write_chunked(&mut self.dev, self.sb.region_start(other), &bytes)?;
        }
        self.dev.flush()?;
        let next = Superblock {
            generation,
            active: other,
            region_generation: generation,
            region_seq: self.next_seq,
            ..self.sb
        };
        superblock::store(&mut self.dev, &next)?;
        self.sb = next;
        self.tail = bytes.len() as u64;
        self.next_seq = seq;
        self.compactions += 1;
        Ok(())
    }

    /// The device (for tests that break it).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// The device (for tests that crash it).
    pub fn into_device(self) -> D {
        self.dev
    }
}
