//! The superblock: which region is active and from which generation, in two checksummed copies.

use crate::crc32::crc32;
use crate::{BlockDevice, Error, SECTOR};

const MAGIC: u64 = u64::from_le_bytes(*b"MFSTORE1");
const ENCODED: usize = 48;

/// The store's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Superblock {
    /// Increments with every superblock written; the epoch of records written under it.
    pub generation: u64,
    /// The active region (0 or 1).
    pub active: u64,
    /// The generation in which the active region was written (its records' lowest epoch).
    pub region_generation: u64,
    /// Sequence number of the active region's first record.
    pub region_seq: u64,
    /// The device's sectors when formatted.
    pub sectors: u64,
}

impl Superblock {
    pub(crate) fn fresh(sectors: u64) -> Superblock {
        Superblock { generation: 1, active: 0, region_generation: 1, region_seq: 0, sectors }
    }

    fn region_sectors(&self) -> u64 {
        (self.sectors - 2) / 2
    }

    /// Bytes of one region.
    pub(crate) fn region_bytes(&self) -> u64 {
        self.region_sectors() * SECTOR as u64
    }

    /// First sector of region `r`.
    pub(crate) fn region_start(&self, r: u64) -> u64 {
        2 + r * self.region_sectors()
    }

    fn encode(&self) -> [u8; SECTOR] {
        let mut out = [0u8; SECTOR];
        let fields = [
            MAGIC,
            self.generation,
            self.active,
            self.region_generation,
            self.region_seq,
            self.sectors,
        ];
        for (i, f) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&f.to_le_bytes());
        }
        let crc = crc32(&out[..ENCODED]);
        out[ENCODED..ENCODED + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8], device_sectors: u64) -> Option<Superblock> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?))
        };
        let crc = u32::from_le_bytes(bytes.get(ENCODED..ENCODED + 4)?.try_into().ok()?);
        if word(0)? != MAGIC || crc32(bytes.get(..ENCODED)?) != crc {
            return None;
        }
        let sb = Superblock {
            generation: word(1)?,
            active: word(2)?,
            region_generation: word(3)?,
            region_seq: word(4)?,
            sectors: word(5)?,
        };
        let sane = sb.active <= 1
            && sb.sectors >= 8
            && sb.sectors <= device_sectors
            && sb.region_generation <= sb.generation;
        sane.then_some(sb)
    }
}

/// The valid copy of the highest generation, if any.
pub(crate) fn load(dev: &mut impl BlockDevice) -> Result<Option<Superblock>, Error> {
    let mut buf = [0u8; 2 * SECTOR];
    dev.read(0, &mut buf)?;
    let sectors = dev.sectors();
    let a = Superblock::decode(&buf[..SECTOR], sectors);
    let b = Superblock::decode(&buf[SECTOR..], sectors);
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(if a.generation >= b.generation { a } else { b }),
        (a, b) => a.or(b),
    })
}

/// Writes `sb` to its copy (`generation % 2`, so the other copy stays whole) and flushes.
pub(crate) fn store(dev: &mut impl BlockDevice, sb: &Superblock) -> Result<(), Error> {
    dev.write(sb.generation % 2, &sb.encode())?;
    dev.flush()
}
