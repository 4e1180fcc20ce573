//! Structured cases for the guest-boundary checks, decoded from plain bytes so that the same
//! code serves the proptests (tests/guest_boundary.rs), the cargo-fuzz targets (fuzz/) and their
//! stable corpus replay: [`elf`] for the image validator, [`hypercall`] for the dispatcher and
//! [`rings`] for the NIC ring reader. Each `check` returns a label naming the path the case took
//! (for coverage tests) and panics when the code under test breaks a promise.
#![allow(dead_code)]
// Decoders cut fuzz words to field widths on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

pub mod block;
pub mod elf;
pub mod hypercall;
pub mod rings;

/// Reads fields from fuzz input; past its end every field reads as zero.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((first, rest)) => {
                self.bytes = rest;
                *first
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// One of `n` choices (`n` > 0).
    pub fn pick(&mut self, n: u8) -> u8 {
        self.u8() % n
    }

    /// The rest of the input, at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.bytes.len().min(max);
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        taken.to_vec()
    }
}

/// Deterministic pseudo-random inputs (xorshift64*) for coverage tests and corpus replay.
pub fn inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % (max_len as u64 + 1)).unwrap_or(0);
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}
