//! Records: encoding a batch, writing it, and replaying a region.

use crate::crc32::Crc32;
use crate::superblock::Superblock;
use crate::{BlockDevice, Error, Op, SECTOR};
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

const MAGIC: u32 = u32::from_le_bytes(*b"MFR1");
const HEADER: usize = 32;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// The last record of a batch.
const FLAG_END: u8 = 1;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// Most bytes written per device request.
const CHUNK: usize = 1 << 20;
/// Bytes read per device request during replay.
const WINDOW: usize = 256 << 10;

struct Header {
    crc: u32,
    seq: u64,
    epoch: u64,
    key_len: usize,
    op: u8,
    flags: u8,
    value_len: usize,
}

fn encode_header(h: &Header) -> [u8; HEADER] {
    let mut out = [0u8; HEADER];
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&h.crc.to_le_bytes());
    out[8..16].copy_from_slice(&h.seq.to_le_bytes());
    out[16..24].copy_from_slice(&h.epoch.to_le_bytes());
    // Both lengths were checked against MAX_KEY and MAX_VALUE, which fit.
    let key_len = u16::try_from(h.key_len).unwrap_or(u16::MAX);
    let value_len = u32::try_from(h.value_len).unwrap_or(u32::MAX);
    out[24..26].copy_from_slice(&key_len.to_le_bytes());
    out[26] = h.op;
    out[27] = h.flags;
    out[28..32].copy_from_slice(&value_len.to_le_bytes());
    out
}

fn decode_header(b: &[u8]) -> Option<Header> {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i + 4)) << 32) | u64::from(u32_at(i));
    if b.len() < HEADER || u32_at(0) != MAGIC {
        return None;
    }
    let h = Header {
        crc: u32_at(4),
        seq: u64_at(8),
        epoch: u64_at(16),
        key_len: usize::from(u16::from_le_bytes([b[24], b[25]])),
        op: b[26],
        flags: b[27],
        value_len: u32_at(28) as usize,
    };
    let valid = matches!(h.op, OP_PUT | OP_DELETE)
        && h.flags & !FLAG_END == 0
        && h.key_len <= MAX_KEY
        && h.value_len <= MAX_VALUE
        && (h.op == OP_PUT || h.value_len == 0);
    valid.then_some(h)
}

fn checksum(h: &Header, key: &[u8], value: &[u8]) -> u32 {
    let mut c = Crc32::default();
    c.update(&encode_header(&Header { crc: 0, ..*h }));
    c.update(key);
    c.update(value);
    c.finish()
}

impl Clone for Header {
    fn clone(&self) -> Header {
        *self
    }
}
impl Copy for Header {}

/// The records of `ops`, numbered from `seq`, of `epoch`, the last flagged `END`, padded to a
/// whole number of sectors.
pub(crate) fn encode_batch(ops: &[Op], seq: u64, epoch: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let (code, key, value) = match op {
            Op::Put(k, v) => (OP_PUT, k.as_slice(), v.as_slice()),
            Op::Delete(k) => (OP_DELETE, k.as_slice(), &[][..]),
        };
        let mut h = Header {
            crc: 0,
            seq: seq + i as u64,
            epoch,
            key_len: key.len(),
            op: code,
            flags: if i + 1 == ops.len() { FLAG_END } else { 0 },
            value_len: value.len(),
        };
        h.crc = checksum(&h, key, value);
        out.extend_from_slice(&encode_header(&h));
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    out.resize(out.len().div_ceil(SECTOR) * SECTOR, 0);
    out
}

/// Writes `bytes` (whole sectors) at `sector`, at most [`CHUNK`] bytes per request.
pub(crate) fn write_chunked(
    dev: &mut impl BlockDevice,
    sector: u64,
    bytes: &[u8],
) -> Result<(), Error> {
    for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
        dev.write(sector + (i * CHUNK / SECTOR) as u64, chunk)?;
    }
    Ok(())
}

/// Reads a region through a window of [`WINDOW`] bytes.
struct Reader<'d, D: BlockDevice> {
    dev: &'d mut D,
    start: u64,
    len: u64,
    window_at: u64,
    window: Vec<u8>,
}

impl<D: BlockDevice> Reader<'_, D> {
    /// `len` bytes at byte `offset` of the region, or `None` past its end.
    fn bytes(&mut self, offset: u64, len: usize) -> Result<Option<&[u8]>, Error> {
        let end = match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => end,
            _ => return Ok(None),
        };
        let loaded = self.window_at + self.window.len() as u64;
        if offset < self.window_at || end > loaded {
            let first = offset / SECTOR as u64 * SECTOR as u64;
            let want = (end - first).max(WINDOW as u64).min(self.len - first);
            let want = want.div_ceil(SECTOR as u64) * SECTOR as u64;
            self.window = vec![0; usize::try_from(want).map_err(|_| Error::Io)?];
            self.dev.read(self.start + first / SECTOR as u64, &mut self.window)?;
            self.window_at = first;
        }
        let at = usize::try_from(offset - self.window_at).map_err(|_| Error::Io)?;
        Ok(self.window.get(at..at + len))
    }
}

/// What replay finds: the map, the tail, the next sequence number.
pub(crate) type Replayed = (BTreeMap<Vec<u8>, Vec<u8>>, u64, u64);

/// Replays the active region of `sb`: the map, the tail (sector-aligned end of the last whole
/// batch) and the next sequence number.
pub(crate) fn replay(dev: &mut impl BlockDevice, sb: &Superblock) -> Result<Replayed, Error> {
    let mut map = BTreeMap::new();
    let mut reader = Reader {
        start: sb.region_start(sb.active),
        len: sb.region_bytes(),
        dev,
        window_at: 0,
        window: Vec::new(),
    };
    let mut tail = 0u64;
    let mut seq = sb.region_seq;
    let mut epoch = sb.region_generation;
    let mut at = 0u64;
    let mut pending: Vec<(u8, Vec<u8>, Vec<u8>)> = Vec::new();
    while let Some(h) = reader.bytes(at, HEADER)?.and_then(decode_header) {
        let expected_seq = seq + pending.len() as u64;
        if h.seq != expected_seq || h.epoch < epoch || h.epoch > sb.generation {
            break;
        }
        let Some(payload) = reader.bytes(at + HEADER as u64, h.key_len + h.value_len)? else {
            break;
        };
        let (key, value) = payload.split_at(h.key_len);
        if checksum(&h, key, value) != h.crc {
            break;
        }
        pending.push((h.op, key.to_vec(), value.to_vec()));
        epoch = h.epoch;
        at += (HEADER + h.key_len + h.value_len) as u64;
        if h.flags & FLAG_END != 0 {
            seq += pending.len() as u64;
            for (op, key, value) in pending.drain(..) {
                if op == OP_PUT {
                    map.insert(key, value);
                } else {
                    map.remove(&key);
                }
            }
            at = at.div_ceil(SECTOR as u64) * SECTOR as u64;
            tail = at;
        }
    }
    Ok((map, tail, seq))
}
