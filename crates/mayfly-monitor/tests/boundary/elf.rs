//! The ELF validator: images built from fuzzed but structured fields (a valid header, program
//! headers whose every field is chosen from valid, edge and random values, a manifest note),
//! so that cases reach the program-header loop and every check in it, with an oracle for the
//! verdict when the file is laid out honestly.

use super::Reader;
use mayfly_abi::ABI_VERSION;
use mayfly_abi::layout::RESERVED_END;
use mayfly_monitor::{Image, ImageError};

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const PAGE: u64 = mayfly_abi::layout::PAGE_SIZE;

/// One program header and its segment's file bytes.
#[derive(Debug, Clone)]
pub struct Ph {
    pub kind: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub paddr: u64,
    pub data: Vec<u8>,
    pub mem_size: u64,
    /// Overrides `p_filesz` / `p_offset` (then the file is no longer laid out honestly).
    pub file_size: Option<u64>,
    pub offset: Option<u64>,
}

/// An image to build.
#[derive(Debug, Clone)]
pub struct ElfCase {
    pub kind: u16,
    pub machine: u16,
    pub entry: u64,
    pub phdrs: Vec<Ph>,
    /// Overrides `e_phnum`; cuts the file short.
    pub phnum: Option<u16>,
    pub truncate: Option<usize>,
}

fn manifest_note(abi_version: u32, devices: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&7u32.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&mayfly_abi::manifest::NOTE_TYPE.to_le_bytes());
    out.extend_from_slice(mayfly_abi::manifest::NOTE_NAME);
    out.extend_from_slice(&abi_version.to_le_bytes());
    out.extend_from_slice(&devices.to_le_bytes());
    out
}

/// An address: mostly page-aligned just above the reserved area, sometimes an edge or noise.
fn address(r: &mut Reader) -> u64 {
    match r.pick(8) {
        0..=3 => RESERVED_END + u64::from(r.pick(16)) * 0x1000,
        4 => RESERVED_END - 0x1000 + u64::from(r.u16()),
        5 => u64::MAX - u64::from(r.u16()),
        6 => u64::from(r.u32()),
        _ => r.u64(),
    }
}

/// A size: mostly small, sometimes huge.
fn size(r: &mut Reader) -> u64 {
    match r.pick(6) {
        0..=3 => u64::from(r.u16() % 0x3000),
        4 => 0,
        _ => r.u64(),
    }
}

impl ElfCase {
    pub fn decode(r: &mut Reader) -> ElfCase {
        let mut phdrs = Vec::new();
        for index in 0..1 + r.pick(5) {
            let kind = match r.pick(32) {
                0..=25 => PT_LOAD,
                26 | 27 => PT_NOTE,
                28 => PT_INTERP,
                29 => PT_DYNAMIC,
                _ => r.u32(),
            };
            let flags = match r.pick(4) {
                0 => PF_R | PF_X,
                1 => PF_R | PF_W,
                2 => PF_R,
                _ => r.u32(),
            };
            // Mostly one 16 KiB slot per header (disjoint unless sizes say otherwise); sometimes
            // right after the previous segment, so that two segments share a page.
            let previous_end = phdrs.last().map(|p: &Ph| p.vaddr.wrapping_add(p.mem_size));
            let vaddr = match (r.pick(4), previous_end) {
                (0 | 1, _) => {
                    RESERVED_END + u64::from(index) * 0x4000 + u64::from(r.pick(4)) * 0x1000
                }
                (2, Some(end)) => end,
                _ => address(r),
            };
            let paddr = if r.pick(16) == 15 { address(r) } else { vaddr };
            let data = vec![0x90; usize::from(r.u8())];
            let mem_size = match r.pick(4) {
                0 => data.len() as u64,
                _ => size(r).max(data.len() as u64 * u64::from(r.pick(2))),
            };
            let file_size = (r.pick(10) == 9).then(|| size(r));
            let offset = (r.pick(12) == 11).then(|| r.u64() % 0x2000);
            phdrs.push(Ph { kind, flags, vaddr, paddr, data, mem_size, file_size, offset });
        }
        match r.pick(8) {
            0 => {}
            1 => phdrs.push(Ph::note(manifest_note(r.u32(), 1))),
            _ => {
                let at = usize::from(r.u8()) % (phdrs.len() + 1);
                phdrs.insert(at, Ph::note(manifest_note(ABI_VERSION, u32::from(r.pick(4)))));
            }
        }
        // Mostly inside an executable segment, if there is one.
        let executable: Vec<&Ph> = phdrs.iter().filter(|p| p.flags & PF_X != 0).collect();
        let entry = match (r.pick(6), executable.is_empty()) {
            (0, _) | (_, true) => address(r),
            _ => {
                let chosen = executable[usize::from(r.u8()) % executable.len()];
                chosen.vaddr.wrapping_add(u64::from(r.u16()) % chosen.mem_size.max(1))
            }
        };
        ElfCase {
            kind: if r.pick(16) == 15 { r.u16() } else { 2 },
            machine: if r.pick(16) == 15 { r.u16() } else { 62 },
            entry,
            phdrs,
            phnum: (r.pick(16) == 15).then(|| r.u16()),
            truncate: (r.pick(16) == 15).then(|| usize::from(r.u16())),
        }
    }

    /// Whether the file is laid out as the fields say (no overridden size, offset or count).
    pub fn honest(&self) -> bool {
        self.phnum.is_none()
            && self.truncate.is_none()
            && self.phdrs.iter().all(|p| p.file_size.is_none() && p.offset.is_none())
    }

    pub fn build(&self) -> Vec<u8> {
        let phnum = self.phdrs.len();
        let mut offset = EHDR_SIZE + phnum * PHDR_SIZE;
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
        out.resize(16, 0);
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&self.entry.to_le_bytes());
        out.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        out.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        out.extend_from_slice(&self.phnum.unwrap_or(phnum as u16).to_le_bytes());
        out.extend_from_slice(&[64, 0, 0, 0, 0, 0]);
        for ph in &self.phdrs {
            out.extend_from_slice(&ph.kind.to_le_bytes());
            out.extend_from_slice(&ph.flags.to_le_bytes());
            out.extend_from_slice(&ph.offset.unwrap_or(offset as u64).to_le_bytes());
            out.extend_from_slice(&ph.vaddr.to_le_bytes());
            out.extend_from_slice(&ph.paddr.to_le_bytes());
            out.extend_from_slice(&ph.file_size.unwrap_or(ph.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&ph.mem_size.to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes());
            offset += ph.data.len();
        }
        for ph in &self.phdrs {
            out.extend_from_slice(&ph.data);
        }
        if let Some(len) = self.truncate {
            out.truncate(len);
        }
        out
    }

    /// The verdict the validator must reach on an honestly laid out file.
    pub fn expected_ok(&self) -> bool {
        let loads: Vec<&Ph> = self
            .phdrs
            .iter()
            .filter(|p| p.kind == PT_LOAD && (p.mem_size > 0 || !p.data.is_empty()))
            .collect();
        let each_fine = loads.iter().all(|p| {
            p.data.len() as u64 <= p.mem_size
                && p.flags & (PF_W | PF_X) != PF_W | PF_X
                && p.vaddr.checked_add(p.mem_size).is_some()
                && p.vaddr == p.paddr
                && p.vaddr >= RESERVED_END
        });
        let mut spans: Vec<(u64, u64, u32)> = loads
            .iter()
            .map(|p| (p.vaddr, p.vaddr.wrapping_add(p.mem_size), p.flags & (PF_W | PF_X)))
            .collect();
        spans.sort_unstable();
        let disjoint = spans.windows(2).all(|w| w[0].1 <= w[1].0);
        // W^X per page: code and writable data never share a page.
        let pages_wx = spans.windows(2).all(|w| {
            let shared = w[0].1.saturating_sub(1) / PAGE == w[1].0 / PAGE;
            !(shared && (w[0].2 | w[1].2) == PF_W | PF_X)
        });
        let manifest_ok = self
            .phdrs
            .iter()
            .rev()
            .filter(|p| p.kind == PT_NOTE)
            .find_map(|p| note_abi(&p.data))
            .is_some_and(|abi| abi == ABI_VERSION);
        let entry_ok = loads.iter().any(|p| {
            p.flags & PF_X != 0
                && p.vaddr <= self.entry
                && self.entry < p.vaddr.saturating_add(p.mem_size)
        });
        self.machine == 62
            && self.kind == 2
            && !self.phdrs.iter().any(|p| p.kind == PT_INTERP || p.kind == PT_DYNAMIC)
            && each_fine
            && disjoint
            && pages_wx
            && !loads.is_empty()
            && manifest_ok
            && entry_ok
    }
}

impl Ph {
    fn note(data: Vec<u8>) -> Ph {
        let mem_size = data.len() as u64;
        Ph {
            kind: PT_NOTE,
            flags: PF_R,
            vaddr: 0,
            paddr: 0,
            data,
            mem_size,
            file_size: None,
            offset: None,
        }
    }
}

/// The ABI version in a manifest note this module built (`None` for other notes).
fn note_abi(data: &[u8]) -> Option<u32> {
    (data.len() == 28 && &data[12..20] == mayfly_abi::manifest::NOTE_NAME)
        .then(|| u32::from_le_bytes([data[20], data[21], data[22], data[23]]))
}

fn le(bytes: &[u8], at: usize, n: usize) -> u64 {
    bytes[at..at + n].iter().rev().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// What an accepted image must satisfy, read back from the file independently of the parser.
fn assert_accepted_image_is_sound(bytes: &[u8], image: &Image) {
    assert_eq!(le(bytes, 18, 2), 62, "accepted a machine other than x86-64");
    assert_eq!(le(bytes, 16, 2), 2, "accepted a file that is not ET_EXEC");
    let phoff = le(bytes, 32, 8) as usize;
    let phnum = le(bytes, 56, 2) as usize;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let ph = &bytes[phoff + i * PHDR_SIZE..phoff + (i + 1) * PHDR_SIZE];
        let kind = le(ph, 0, 4) as u32;
        assert!(kind != PT_INTERP && kind != PT_DYNAMIC, "accepted a dynamic image");
        let (offset, vaddr, paddr) = (le(ph, 8, 8), le(ph, 16, 8), le(ph, 24, 8));
        let (file_size, mem_size) = (le(ph, 32, 8), le(ph, 40, 8));
        let flags = le(ph, 4, 4) as u32;
        if kind == PT_LOAD && (mem_size > 0 || file_size > 0) {
            assert!(file_size <= mem_size, "file size above memory size");
            assert!(
                flags & (PF_W | PF_X) != PF_W | PF_X,
                "accepted a writable, executable segment"
            );
            assert!(offset.checked_add(file_size).is_some_and(|e| e <= bytes.len() as u64));
            assert_eq!(vaddr, paddr, "not identity-mapped");
            assert!(vaddr >= RESERVED_END, "a segment in the reserved area");
            loads.push((vaddr, mem_size));
        }
    }
    loads.sort_unstable();
    let got: Vec<(u64, u64)> = image.segments.iter().map(|s| (s.start, s.mem_size)).collect();
    assert_eq!(got, loads, "segments differ from the file's loadable headers");
    for pair in image.segments.windows(2) {
        assert!(pair[0].start.checked_add(pair[0].mem_size).is_some_and(|e| e <= pair[1].start));
        let shared = (pair[0].end() - 1) / PAGE == pair[1].start / PAGE;
        let mixed = (pair[0].flags.write && pair[1].flags.exec)
            || (pair[0].flags.exec && pair[1].flags.write);
        assert!(!(shared && mixed), "accepted code and writable data on one page");
    }
    assert!(
        image
            .segments
            .iter()
            .any(|s| s.flags.exec && s.start <= image.entry && image.entry < s.end())
    );
    assert_eq!(image.entry, le(bytes, 24, 8));
    assert_eq!(image.manifest.abi_version, ABI_VERSION);
}

/// Validates the case's image: never a panic; an accepted image is sound; an honest file gets
/// the oracle's verdict. Returns the path taken.
pub fn check(case: &ElfCase) -> String {
    let bytes = case.build();
    let result = Image::parse(&bytes);
    if let Ok(image) = &result {
        assert_accepted_image_is_sound(&bytes, image);
    }
    if case.honest() {
        assert_eq!(result.is_ok(), case.expected_ok(), "{case:#?}: {result:?}");
    }
    match result {
        Ok(_) => "accepted".into(),
        Err(e) => label(&e).into(),
    }
}

fn label(e: &ImageError) -> &'static str {
    match e {
        ImageError::Truncated(_) | ImageError::NotElf => "truncated",
        ImageError::NotStatic => "not static",
        ImageError::NotExecutable(_) => "not executable",
        ImageError::WrongArch(_) => "wrong arch",
        ImageError::NoManifest => "no manifest",
        ImageError::AbiMismatch { .. } => "abi mismatch",
        ImageError::NoLoadableSegment => "no loadable segment",
        ImageError::OverlapsReserved { .. } => "overlaps reserved",
        ImageError::NotIdentityMapped { .. } => "not identity-mapped",
        ImageError::BadSegment { .. } => "bad segment",
        ImageError::OverlappingSegments { .. } => "overlapping segments",
        ImageError::WritableAndExecutablePage { .. } => "writable and executable page",
        ImageError::BadEntry(_) => "bad entry",
        other => panic!("an image built with a valid ELF header was refused with {other:?}"),
    }
}

/// Decodes `bytes` into a case and checks it.
pub fn check_bytes(bytes: &[u8]) -> String {
    check(&ElfCase::decode(&mut Reader::new(bytes)))
}
