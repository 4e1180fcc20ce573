//! Validation of a unikernel image (a static x86-64 ELF executable with a Mayfly manifest).
//!
//! Parse, then represent: [`Image::parse`] reads the headers with checked accessors, refuses
//! anything Mayfly cannot boot with a message saying what is wrong and how to fix it, and yields
//! the loadable segments, the entry point and the manifest. [`Image::load`] then copies exactly
//! those segments (their file bytes; the rest of each is the zero of fresh guest memory), and
//! nothing the validator did not see.

use crate::guest_memory::{BadRange, GuestRam};
use mayfly_abi::manifest::{self, Manifest};
use mayfly_abi::{ABI_VERSION, layout};

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// Images larger than this are refused before being read whole.
pub const MAX_IMAGE_SIZE: u64 = 64 << 20;

/// Why an image cannot be booted. Each message says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("not an ELF file (no ELF magic); build a unikernel image with `mayfly build <crate>`")]
    NotElf,
    #[error("truncated ELF: {0} lies beyond the end of the file")]
    Truncated(&'static str),
    #[error("32-bit ELF; Mayfly boots 64-bit x86-64 images only")]
    Not64Bit,
    #[error("big-endian ELF; Mayfly boots little-endian x86-64 images only")]
    BigEndian,
    #[error("ELF for {0}, not x86-64; build the image for x86-64 with `mayfly build`")]
    WrongArch(&'static str),
    #[error(
        "position-independent or dynamic ELF (a host program?); Mayfly images are static \
         executables linked at {base:#x}: build one with `mayfly build <crate>`",
        base = layout::IMAGE_BASE
    )]
    NotStatic,
    #[error("ELF type {0} is not an executable; build the image with `mayfly build <crate>`")]
    NotExecutable(u16),
    #[error(
        "not a Mayfly image: it has no Mayfly manifest note (is it a host program?); build it \
         with `mayfly build <crate>`"
    )]
    NoManifest,
    #[error(
        "image built for Mayfly ABI version {image}, this monitor speaks version {monitor}; \
         rebuild the image with this version of `mayfly build`"
    )]
    AbiMismatch { image: u32, monitor: u32 },
    #[error("image has no loadable segment")]
    NoLoadableSegment,
    #[error(
        "segment at {start:#x}..{end:#x} overlaps the monitor's reserved area below {reserved:#x}; \
         link images at {reserved:#x} or above (`mayfly build` does)",
        reserved = layout::RESERVED_END
    )]
    OverlapsReserved { start: u64, end: u64 },
    #[error("segment at {start:#x} has virtual and physical addresses that differ ({paddr:#x})")]
    NotIdentityMapped { start: u64, paddr: u64 },
    #[error("segment at {start:#x} is malformed: {what}")]
    BadSegment { start: u64, what: &'static str },
    #[error("segments at {first:#x} and {second:#x} overlap")]
    OverlappingSegments { first: u64, second: u64 },
    #[error(
        "segments at {first:#x} and {second:#x} share a page, and one is writable while the \
         other is executable, so that page would be both (W^X); align segments to 4 KiB pages"
    )]
    WritableAndExecutablePage { first: u64, second: u64 },
    #[error("entry point {0:#x} is not inside an executable segment")]
    BadEntry(u64),
}

/// Access rights of a loadable segment, from its ELF flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFlags {
    /// The segment may be written.
    pub write: bool,
    /// The segment may be executed.
    pub exec: bool,
}

/// A validated loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First guest address of the segment.
    pub start: u64,
    /// Bytes in memory (the part beyond the file's bytes is zero: `.bss`).
    pub mem_size: u64,
    /// Where the segment's bytes start in the file.
    pub file_offset: u64,
    /// Bytes taken from the file (at most `mem_size`; checked to lie inside the file).
    pub file_size: u64,
    /// Access rights.
    pub flags: SegmentFlags,
}

impl Segment {
    /// One past the last guest address of the segment.
    pub fn end(&self) -> u64 {
        // Cannot overflow: checked in `Image::parse`.
        self.start.saturating_add(self.mem_size)
    }
}

/// A validated image: what the loader and the memory plan need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Entry point (`_start`).
    pub entry: u64,
    /// Loadable segments, sorted by address, not overlapping.
    pub segments: Vec<Segment>,
    /// The manifest from the image's note.
    pub manifest: Manifest,
}

impl Image {
    /// Validates `bytes` as a Mayfly image.
    pub fn parse(bytes: &[u8]) -> Result<Image, ImageError> {
        let header = bytes.get(..EHDR_SIZE);
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ImageError::NotElf);
        }
        let header = header.ok_or(ImageError::Truncated("the ELF header"))?;
        if header[4] != 2 {
            return Err(ImageError::Not64Bit);
        }
        if header[5] != 1 {
            return Err(ImageError::BigEndian);
        }
        let machine = le16(header, 18);
        if machine != EM_X86_64 {
            return Err(ImageError::WrongArch(machine_name(machine)));
        }
        match le16(header, 16) {
            ET_EXEC => {}
            ET_DYN => return Err(ImageError::NotStatic),
            other => return Err(ImageError::NotExecutable(other)),
        }
        let entry = le64(header, 24);
        let phoff = le64(header, 32);
        let phentsize = usize::from(le16(header, 54));
        let phnum = usize::from(le16(header, 56));
        if phentsize != PHDR_SIZE {
            return Err(ImageError::Truncated("program headers of an unexpected size"));
        }
        let table = usize::try_from(phoff)
            .ok()
            .and_then(|off| Some((off, off.checked_add(phnum.checked_mul(PHDR_SIZE)?)?)))
            .and_then(|(off, end)| bytes.get(off..end))
            .ok_or(ImageError::Truncated("the program header table"))?;

        let mut segments = Vec::new();
        let mut manifest = None;
        for phdr in table.chunks_exact(PHDR_SIZE) {
            let kind = le32(phdr, 0);
            let flags = le32(phdr, 4);
            let offset = le64(phdr, 8);
            let vaddr = le64(phdr, 16);
            let paddr = le64(phdr, 24);
            let file_size = le64(phdr, 32);
            let mem_size = le64(phdr, 40);
            let file_part = file_range(bytes, offset, file_size);
            match kind {
                PT_INTERP | PT_DYNAMIC => return Err(ImageError::NotStatic),
                PT_NOTE => {
                    let notes = file_part.ok_or(ImageError::Truncated("a note segment"))?;
                    if let Some(found) = find_manifest(notes) {
                        manifest = Some(found);
                    }
                }
                PT_LOAD if mem_size > 0 || file_size > 0 => {
                    let bad = |what| ImageError::BadSegment { start: vaddr, what };
                    if file_size > mem_size {
                        return Err(bad("its file size exceeds its memory size"));
                    }
                    if flags & PF_W != 0 && flags & PF_X != 0 {
                        return Err(bad(
                            "it is both writable and executable; link code and data into \
                             separate segments (W^X)",
                        ));
                    }
                    if file_part.is_none() {
                        return Err(ImageError::Truncated("a loadable segment"));
                    }
                    let end = vaddr
                        .checked_add(mem_size)
                        .ok_or(bad("it wraps around the address space"))?;
                    if vaddr != paddr {
                        return Err(ImageError::NotIdentityMapped { start: vaddr, paddr });
                    }
                    if vaddr < layout::RESERVED_END {
                        return Err(ImageError::OverlapsReserved { start: vaddr, end });
                    }
                    let flags = SegmentFlags { write: flags & PF_W != 0, exec: flags & PF_X != 0 };
                    segments.push(Segment {
                        start: vaddr,
                        mem_size,
                        file_offset: offset,
                        file_size,
                        flags,
                    });
                }
                _ => {}
            }
        }
        segments.sort_by_key(|s| s.start);
        for pair in segments.windows(2) {
            if let [first, second] = pair {
                if first.end() > second.start {
                    return Err(ImageError::OverlappingSegments {
                        first: first.start,
                        second: second.start,
                    });
                }
                // Pages get the union of the rights of the segments in them (see `plan`), so
                // code and writable data sharing a page would make it writable and executable.
                let shared_page = first.end().saturating_sub(1) / layout::PAGE_SIZE
                    == second.start / layout::PAGE_SIZE;
                let mixed = (first.flags.write && second.flags.exec)
                    || (first.flags.exec && second.flags.write);
                if shared_page && mixed {
                    return Err(ImageError::WritableAndExecutablePage {
                        first: first.start,
                        second: second.start,
                    });
                }
            }
        }
        if segments.is_empty() {
            return Err(ImageError::NoLoadableSegment);
        }
        let manifest = manifest.ok_or(ImageError::NoManifest)?;
        if manifest.abi_version != ABI_VERSION {
            return Err(ImageError::AbiMismatch {
                image: manifest.abi_version,
                monitor: ABI_VERSION,
            });
        }
        if !segments.iter().any(|s| s.flags.exec && s.start <= entry && entry < s.end()) {
            return Err(ImageError::BadEntry(entry));
        }
        Ok(Image { entry, segments, manifest })
    }

    /// Copies the segments into `ram`, exactly as validated: each segment's file bytes at its
    /// start; the rest of the segment (`.bss`) is left as it is, zero in fresh guest memory.
    /// `bytes` must be the file this image was parsed from.
    pub fn load(&self, bytes: &[u8], ram: &GuestRam) -> Result<(), LoadError> {
        for seg in &self.segments {
            let data = file_range(bytes, seg.file_offset, seg.file_size)
                .ok_or(LoadError::NotTheParsedFile)?;
            ram.write_bytes(seg.start, data).map_err(LoadError::Memory)?;
        }
        Ok(())
    }

    /// One past the highest address any segment occupies.
    pub fn end(&self) -> u64 {
        self.segments.iter().map(Segment::end).max().unwrap_or(layout::IMAGE_BASE)
    }
}

/// Why validated segments could not be copied into guest memory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("the image bytes are not those that were validated")]
    NotTheParsedFile,
    #[error("a segment does not fit in guest memory: {0}")]
    Memory(BadRange),
}

/// The bytes of `[offset, offset + size)` of the file, if they are all inside it.
fn file_range(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

/// Walks the notes of one note segment and returns the Mayfly manifest, if present.
fn find_manifest(mut notes: &[u8]) -> Option<Manifest> {
    while notes.len() >= 12 {
        let name_len = usize::try_from(le32(notes, 0)).ok()?;
        let desc_len = usize::try_from(le32(notes, 4)).ok()?;
        let kind = le32(notes, 8);
        let name_start = 12;
        let desc_start = name_start + name_len.checked_add(3)? / 4 * 4;
        let next = desc_start.checked_add(desc_len.checked_add(3)? / 4 * 4)?;
        let name = notes.get(name_start..name_start.checked_add(name_len)?)?;
        let desc = notes.get(desc_start..desc_start.checked_add(desc_len)?)?;
        let wanted_name = manifest::NOTE_NAME.get(..manifest::NOTE_NAME_LEN as usize)?;
        if kind == manifest::NOTE_TYPE && name == wanted_name {
            return Manifest::from_bytes(desc);
        }
        notes = notes.get(next..)?;
    }
    None
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "x86 (32-bit)",
        40 => "ARM",
        183 => "AArch64",
        243 => "RISC-V",
        8 => "MIPS",
        20 | 21 => "PowerPC",
        22 => "S390",
        _ => "another architecture",
    }
}

// The header accessors below are only called on slices whose length was checked (64-byte ELF
// header, 56-byte program header, 12-byte note header), so `get` never fails; they still
// return 0 rather than panic if that ever changed.
fn le16(bytes: &[u8], at: usize) -> u16 {
    bytes.get(at..at + 2).and_then(|b| b.try_into().ok()).map_or(0, u16::from_le_bytes)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests;
