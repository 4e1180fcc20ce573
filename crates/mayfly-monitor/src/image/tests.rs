use super::*;
use mayfly_abi::manifest::{NOTE_NAME, NOTE_NAME_LEN, NOTE_TYPE};

const TEXT: u64 = 0x10_0000;
const RODATA: u64 = 0x10_2000;
const DATA: u64 = 0x10_4000;
const ENTRY: u64 = TEXT + 0x10;
const PF_R: u32 = 4;

// Offsets of the fields the tests patch.
const E_TYPE: usize = 16;
const E_MACHINE: usize = 18;
const E_ENTRY: usize = 24;
const E_PHOFF: usize = 32;
const E_PHENTSIZE: usize = 54;
const E_PHNUM: usize = 56;
const P_OFFSET: usize = 8;
const P_FILESZ: usize = 32;

/// One program header and the file bytes of its segment.
#[derive(Debug, Clone)]
struct Ph {
    kind: u32,
    flags: u32,
    vaddr: u64,
    paddr: u64,
    data: Vec<u8>,
    mem_size: u64,
    /// Overrides `p_filesz` (by default the length of `data`).
    file_size: Option<u64>,
}

impl Ph {
    fn load(vaddr: u64, flags: u32, data: Vec<u8>, mem_size: u64) -> Ph {
        Ph { kind: PT_LOAD, flags, vaddr, paddr: vaddr, data, mem_size, file_size: None }
    }

    fn note(data: Vec<u8>) -> Ph {
        let mem_size = data.len() as u64;
        Ph { kind: PT_NOTE, flags: PF_R, vaddr: 0, paddr: 0, data, mem_size, file_size: None }
    }

    fn other(kind: u32, data: Vec<u8>) -> Ph {
        let mem_size = data.len() as u64;
        Ph { kind, flags: PF_R, vaddr: 0, paddr: 0, data, mem_size, file_size: None }
    }
}

/// One ELF note: header, name padded to 4, descriptor padded to 4.
fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// The Mayfly manifest note, laid out by hand as the guest library emits it.
fn manifest_note(abi_version: u32, devices: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&NOTE_NAME_LEN.to_le_bytes()); // namesz = 7
    out.extend_from_slice(&8u32.to_le_bytes()); // descsz = 8
    out.extend_from_slice(&NOTE_TYPE.to_le_bytes());
    out.extend_from_slice(b"Mayfly\0\0"); // name, padded to 8
    out.extend_from_slice(&abi_version.to_le_bytes());
    out.extend_from_slice(&devices.to_le_bytes());
    assert_eq!(out.len(), 28);
    assert_eq!(&out[12..20], NOTE_NAME);
    out
}

/// A hand-built ELF64 file.
#[derive(Debug, Clone)]
struct Elf {
    class: u8,
    data_encoding: u8,
    kind: u16,
    machine: u16,
    entry: u64,
    phdrs: Vec<Ph>,
}

impl Elf {
    /// A valid Mayfly image: text r-x, rodata r--, data+bss rw-, and the manifest. The data
    /// segment's header comes first so that parsing has to sort.
    fn valid() -> Elf {
        Elf {
            class: 2,
            data_encoding: 1,
            kind: ET_EXEC,
            machine: EM_X86_64,
            entry: ENTRY,
            phdrs: vec![
                Ph::load(DATA, PF_R | PF_W, vec![0xdd; 0x40], 0x2000),
                Ph::load(TEXT, PF_R | PF_X, vec![0x90; 0x100], 0x100),
                Ph::load(RODATA, PF_R, vec![0x52; 0x20], 0x20),
                Ph::note(manifest_note(ABI_VERSION, 1)),
            ],
        }
    }

    /// Serializes: ELF header, program header table, then each segment's bytes in order.
    fn build(&self) -> Vec<u8> {
        let phnum = self.phdrs.len();
        let mut offset = EHDR_SIZE + phnum * PHDR_SIZE;
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF");
        out.push(self.class);
        out.push(self.data_encoding);
        out.push(1); // EI_VERSION
        out.push(0); // EI_OSABI: System V
        out.resize(16, 0);
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // e_version
        out.extend_from_slice(&self.entry.to_le_bytes());
        out.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&u16::try_from(EHDR_SIZE).unwrap().to_le_bytes());
        out.extend_from_slice(&u16::try_from(PHDR_SIZE).unwrap().to_le_bytes());
        out.extend_from_slice(&u16::try_from(phnum).unwrap().to_le_bytes());
        out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        assert_eq!(out.len(), EHDR_SIZE);
        for ph in &self.phdrs {
            out.extend_from_slice(&ph.kind.to_le_bytes());
            out.extend_from_slice(&ph.flags.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&ph.vaddr.to_le_bytes());
            out.extend_from_slice(&ph.paddr.to_le_bytes());
            let file_size = ph.file_size.unwrap_or(ph.data.len() as u64);
            out.extend_from_slice(&file_size.to_le_bytes());
            out.extend_from_slice(&ph.mem_size.to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
            offset += ph.data.len();
        }
        assert_eq!(out.len(), EHDR_SIZE + phnum * PHDR_SIZE);
        for ph in &self.phdrs {
            out.extend_from_slice(&ph.data);
        }
        assert_eq!(out.len(), offset);
        out
    }

    fn parse(&self) -> Result<Image, ImageError> {
        Image::parse(&self.build())
    }
}

fn put16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Offset of field `field` of program header `index` in a file from [`Elf::build`].
fn phdr_field(index: usize, field: usize) -> usize {
    EHDR_SIZE + index * PHDR_SIZE + field
}

fn rx() -> SegmentFlags {
    SegmentFlags { write: false, exec: true }
}

#[test]
fn valid_image_parses() {
    let image = Elf::valid().parse().unwrap();
    assert_eq!(image.entry, ENTRY);
    // The segments' bytes follow the header table in header order: data, text, rodata.
    let table_end = (EHDR_SIZE + 4 * PHDR_SIZE) as u64;
    assert_eq!(
        image.segments,
        vec![
            Segment {
                start: TEXT,
                mem_size: 0x100,
                file_offset: table_end + 0x40,
                file_size: 0x100,
                flags: rx()
            },
            Segment {
                start: RODATA,
                mem_size: 0x20,
                file_offset: table_end + 0x140,
                file_size: 0x20,
                flags: SegmentFlags { write: false, exec: false },
            },
            Segment {
                start: DATA,
                mem_size: 0x2000,
                file_offset: table_end,
                file_size: 0x40,
                flags: SegmentFlags { write: true, exec: false },
            },
        ]
    );
    assert_eq!(image.manifest, Manifest { abi_version: ABI_VERSION, devices: 1 });
    assert!(image.manifest.wants(manifest::Device::Net));
    assert_eq!(image.end(), DATA + 0x2000);
    assert_eq!(image.segments[0].end(), TEXT + 0x100);
}

#[test]
fn segments_come_out_sorted_whatever_the_header_order() {
    let mut elf = Elf::valid();
    elf.phdrs.reverse();
    let image = elf.parse().unwrap();
    let starts: Vec<u64> = image.segments.iter().map(|s| s.start).collect();
    assert_eq!(starts, vec![TEXT, RODATA, DATA]);
}

#[test]
fn segment_that_is_writable_and_executable_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs[1].flags = PF_R | PF_W | PF_X;
    let Err(ImageError::BadSegment { start, what }) = elf.parse() else {
        panic!("a W+X segment was accepted: {:?}", elf.parse());
    };
    assert_eq!(start, TEXT);
    assert!(what.contains("both writable and executable"), "{what}");
}

#[test]
fn code_and_writable_data_sharing_a_page_are_refused() {
    let mut elf = Elf::valid();
    // Data starts in the last page of the text segment.
    elf.phdrs[1].mem_size = 0x1800;
    elf.phdrs[0].vaddr = TEXT + 0x1900;
    elf.phdrs[0].paddr = TEXT + 0x1900;
    assert_eq!(
        elf.parse(),
        Err(ImageError::WritableAndExecutablePage { first: TEXT, second: TEXT + 0x1900 })
    );
    // Read-only data sharing a page with code is fine.
    let mut elf = Elf::valid();
    elf.phdrs[1].mem_size = 0x1800;
    elf.phdrs[2].vaddr = TEXT + 0x1900;
    elf.phdrs[2].paddr = TEXT + 0x1900;
    assert!(elf.parse().is_ok());
}

#[test]
fn file_bytes_without_memory_size_are_refused() {
    let mut elf = Elf::valid();
    // 0x20 bytes in the file, none in memory: the old loader copied them where the validator
    // never looked.
    elf.phdrs[2].mem_size = 0;
    elf.phdrs[2].vaddr = 0x1000;
    elf.phdrs[2].paddr = 0x1000;
    assert_eq!(
        elf.parse(),
        Err(ImageError::BadSegment {
            start: 0x1000,
            what: "its file size exceeds its memory size"
        })
    );
}

#[test]
fn loading_copies_exactly_the_validated_segments() {
    let elf = Elf::valid();
    let bytes = elf.build();
    let image = Image::parse(&bytes).unwrap();
    let ram = GuestRam::new(4 << 20).unwrap();
    image.load(&bytes, &ram).unwrap();
    assert_eq!(ram.read_bytes(TEXT, 0x100).unwrap(), vec![0x90; 0x100]);
    assert_eq!(ram.read_bytes(RODATA, 0x20).unwrap(), vec![0x52; 0x20]);
    assert_eq!(ram.read_bytes(DATA, 0x40).unwrap(), vec![0xdd; 0x40]);
    // .bss and everything outside the segments stays zero.
    assert!(ram.read_bytes(DATA + 0x40, 0x2000 - 0x40).unwrap().iter().all(|b| *b == 0));
    assert!(ram.read_bytes(TEXT + 0x100, 0x100).unwrap().iter().all(|b| *b == 0));
    assert!(
        ram.read_bytes(0, usize::try_from(layout::RESERVED_END).unwrap())
            .unwrap()
            .iter()
            .all(|b| *b == 0)
    );
    // Other bytes than those validated are refused, not read out of bounds.
    assert_eq!(image.load(&bytes[..100], &ram), Err(LoadError::NotTheParsedFile));
}

#[test]
fn manifest_without_devices_is_read() {
    let mut elf = Elf::valid();
    elf.phdrs[3] = Ph::note(manifest_note(ABI_VERSION, 0));
    let image = elf.parse().unwrap();
    assert_eq!(image.manifest.devices, 0);
    assert!(!image.manifest.wants(manifest::Device::Net));
}

#[test]
fn manifest_is_found_after_other_notes() {
    let mut notes = note(b"GNU\0", 3, &[0xab; 20]); // NT_GNU_BUILD_ID
    notes.extend(manifest_note(ABI_VERSION, 1));
    let mut elf = Elf::valid();
    elf.phdrs[3] = Ph::note(notes);
    assert_eq!(elf.parse().unwrap().manifest.devices, 1);
}

#[test]
fn manifest_is_found_in_a_second_note_segment() {
    let mut elf = Elf::valid();
    elf.phdrs.insert(0, Ph::note(note(b"GNU\0", 3, &[1; 8])));
    assert_eq!(elf.parse().unwrap().manifest.abi_version, ABI_VERSION);
}

#[test]
fn empty_load_segments_are_ignored() {
    let mut elf = Elf::valid();
    // A zero-sized PT_LOAD, even at address 0 and with a bogus offset, is skipped.
    let mut empty = Ph::load(0, PF_R, Vec::new(), 0);
    empty.paddr = 0x1234;
    elf.phdrs.push(empty);
    assert_eq!(elf.parse().unwrap().segments.len(), 3);
}

#[test]
fn unknown_program_headers_are_ignored() {
    let mut elf = Elf::valid();
    elf.phdrs.push(Ph::other(0x6474_e551, Vec::new())); // PT_GNU_STACK
    assert!(elf.parse().is_ok());
}

#[test]
fn adjacent_segments_do_not_overlap() {
    let mut elf = Elf::valid();
    elf.phdrs[1].mem_size = RODATA - TEXT;
    elf.phdrs[2].mem_size = DATA - RODATA;
    assert!(elf.parse().is_ok());
}

#[test]
fn not_elf_is_refused() {
    assert_eq!(Image::parse(b"#!/bin/sh\necho hello\n"), Err(ImageError::NotElf));
    assert_eq!(Image::parse(b""), Err(ImageError::NotElf));
    assert_eq!(Image::parse(b"\x7fEL"), Err(ImageError::NotElf));
    assert_eq!(Image::parse(&[0u8; 4096]), Err(ImageError::NotElf));
    let mut bytes = Elf::valid().build();
    bytes[0] = b'E';
    assert_eq!(Image::parse(&bytes), Err(ImageError::NotElf));
}

#[test]
fn truncated_header_is_refused() {
    let bytes = Elf::valid().build();
    for len in [4, 5, 20, 40, EHDR_SIZE - 1] {
        assert_eq!(
            Image::parse(&bytes[..len]),
            Err(ImageError::Truncated("the ELF header")),
            "length {len}"
        );
    }
}

#[test]
fn elf32_is_refused() {
    let mut elf = Elf::valid();
    elf.class = 1;
    assert_eq!(elf.parse(), Err(ImageError::Not64Bit));
}

#[test]
fn big_endian_is_refused() {
    let mut elf = Elf::valid();
    elf.data_encoding = 2;
    assert_eq!(elf.parse(), Err(ImageError::BigEndian));
}

#[test]
fn other_architectures_are_refused_by_name() {
    for (machine, name) in [
        (183, "AArch64"),
        (3, "x86 (32-bit)"),
        (243, "RISC-V"),
        (40, "ARM"),
        (0x1234, "another architecture"),
    ] {
        let mut elf = Elf::valid();
        elf.machine = machine;
        assert_eq!(elf.parse(), Err(ImageError::WrongArch(name)));
    }
}

#[test]
fn position_independent_executable_is_refused() {
    let mut elf = Elf::valid();
    elf.kind = ET_DYN;
    assert_eq!(elf.parse(), Err(ImageError::NotStatic));
}

#[test]
fn interpreter_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs.insert(0, Ph::other(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec()));
    assert_eq!(elf.parse(), Err(ImageError::NotStatic));
}

#[test]
fn dynamic_section_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs.push(Ph::other(PT_DYNAMIC, vec![0; 16]));
    assert_eq!(elf.parse(), Err(ImageError::NotStatic));
}

#[test]
fn non_executable_types_are_refused() {
    for kind in [0u16, 1, 4] {
        let mut elf = Elf::valid();
        elf.kind = kind;
        assert_eq!(elf.parse(), Err(ImageError::NotExecutable(kind)));
    }
}

#[test]
fn missing_manifest_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs.pop();
    assert_eq!(elf.parse(), Err(ImageError::NoManifest));
}

#[test]
fn note_with_wrong_name_or_type_is_not_a_manifest() {
    let desc = [1u8, 0, 0, 0, 0, 0, 0, 0];
    for bad in [
        note(b"Mayflx\0", NOTE_TYPE, &desc),
        note(b"Mayfly", NOTE_TYPE, &desc),
        note(b"GNU\0", NOTE_TYPE, &desc),
        note(b"Mayfly\0", NOTE_TYPE + 1, &desc),
    ] {
        let mut elf = Elf::valid();
        elf.phdrs[3] = Ph::note(bad);
        assert_eq!(elf.parse(), Err(ImageError::NoManifest));
    }
}

#[test]
fn short_manifest_descriptor_is_not_a_manifest() {
    let mut elf = Elf::valid();
    elf.phdrs[3] = Ph::note(note(b"Mayfly\0", NOTE_TYPE, &[1, 0, 0, 0]));
    assert_eq!(elf.parse(), Err(ImageError::NoManifest));
}

#[test]
fn cut_manifest_note_is_not_a_manifest() {
    let mut elf = Elf::valid();
    let mut cut = manifest_note(ABI_VERSION, 0);
    cut.truncate(24);
    elf.phdrs[3] = Ph::note(cut);
    assert_eq!(elf.parse(), Err(ImageError::NoManifest));
}

#[test]
fn other_abi_version_is_refused() {
    for version in [0, ABI_VERSION + 1, u32::MAX] {
        let mut elf = Elf::valid();
        elf.phdrs[3] = Ph::note(manifest_note(version, 0));
        assert_eq!(
            elf.parse(),
            Err(ImageError::AbiMismatch { image: version, monitor: ABI_VERSION })
        );
    }
}

#[test]
fn no_loadable_segment_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs.retain(|ph| ph.kind != PT_LOAD);
    assert_eq!(elf.parse(), Err(ImageError::NoLoadableSegment));
}

#[test]
fn segment_in_reserved_area_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs[1].vaddr = 0xf_f000;
    elf.phdrs[1].paddr = 0xf_f000;
    elf.phdrs[1].mem_size = 0x2000;
    assert_eq!(elf.parse(), Err(ImageError::OverlapsReserved { start: 0xf_f000, end: 0x10_1000 }));

    let mut elf = Elf::valid();
    elf.phdrs[1].vaddr = 0;
    elf.phdrs[1].paddr = 0;
    assert_eq!(elf.parse(), Err(ImageError::OverlapsReserved { start: 0, end: 0x100 }));
}

#[test]
fn file_size_above_memory_size_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs[1].mem_size = 0x80; // 0x100 bytes in the file
    assert_eq!(
        elf.parse(),
        Err(ImageError::BadSegment { start: TEXT, what: "its file size exceeds its memory size" })
    );
}

#[test]
fn wrapping_segment_is_refused() {
    let start = u64::MAX - 0xfff;
    let mut elf = Elf::valid();
    elf.phdrs[0].vaddr = start;
    elf.phdrs[0].paddr = start;
    elf.phdrs[0].mem_size = 0x2000;
    assert_eq!(
        elf.parse(),
        Err(ImageError::BadSegment { start, what: "it wraps around the address space" })
    );
}

#[test]
fn segment_ending_exactly_at_the_top_does_not_wrap() {
    // vaddr + memsz == 2^64 would overflow; memsz one less ends at u64::MAX, which is fine for
    // the parser (the memory plan refuses it later).
    let start = u64::MAX - 0xfff;
    let mut elf = Elf::valid();
    elf.phdrs[0].vaddr = start;
    elf.phdrs[0].paddr = start;
    elf.phdrs[0].mem_size = 0xfff;
    let image = elf.parse().unwrap();
    assert_eq!(image.end(), u64::MAX);
}

#[test]
fn differing_physical_address_is_refused() {
    let mut elf = Elf::valid();
    elf.phdrs[1].paddr = 0x20_0000;
    assert_eq!(elf.parse(), Err(ImageError::NotIdentityMapped { start: TEXT, paddr: 0x20_0000 }));
}

#[test]
fn overlapping_segments_are_refused() {
    let mut elf = Elf::valid();
    elf.phdrs[1].mem_size = RODATA - TEXT + 1; // one byte into rodata
    assert_eq!(elf.parse(), Err(ImageError::OverlappingSegments { first: TEXT, second: RODATA }));

    // Two segments at the same address.
    let mut elf = Elf::valid();
    elf.phdrs.push(Ph::load(DATA, PF_R, vec![1; 8], 8));
    assert_eq!(elf.parse(), Err(ImageError::OverlappingSegments { first: DATA, second: DATA }));
}

#[test]
fn entry_outside_executable_segments_is_refused() {
    for entry in [
        0,
        TEXT - 1,
        TEXT + 0x100, // one past the end of text
        RODATA,       // readable but not executable
        DATA + 0x10,  // writable, not executable
        u64::MAX,
    ] {
        let mut elf = Elf::valid();
        elf.entry = entry;
        assert_eq!(elf.parse(), Err(ImageError::BadEntry(entry)), "{entry:#x}");
    }
    for entry in [TEXT, TEXT + 0xff] {
        let mut elf = Elf::valid();
        elf.entry = entry;
        assert_eq!(elf.parse().unwrap().entry, entry);
    }
}

#[test]
fn program_header_table_beyond_file_is_refused() {
    let table = Err(ImageError::Truncated("the program header table"));
    let valid = Elf::valid().build();
    let len = valid.len() as u64;

    let mut bytes = valid.clone();
    put64(&mut bytes, E_PHOFF, len);
    assert_eq!(Image::parse(&bytes), table);

    let mut bytes = valid.clone();
    put64(&mut bytes, E_PHOFF, len - 100); // starts inside, ends outside
    assert_eq!(Image::parse(&bytes), table);

    let mut bytes = valid.clone();
    put64(&mut bytes, E_PHOFF, u64::MAX - 10); // offset + size would overflow
    assert_eq!(Image::parse(&bytes), table);

    let mut bytes = valid.clone();
    put16(&mut bytes, E_PHNUM, u16::MAX);
    assert_eq!(Image::parse(&bytes), table);

    // The table itself cut off by the end of the file.
    let cut = &valid[..EHDR_SIZE + PHDR_SIZE + 10];
    assert_eq!(Image::parse(cut), table);
}

#[test]
fn unexpected_program_header_size_is_refused() {
    let mut bytes = Elf::valid().build();
    put16(&mut bytes, E_PHENTSIZE, 32);
    assert_eq!(
        Image::parse(&bytes),
        Err(ImageError::Truncated("program headers of an unexpected size"))
    );
}

#[test]
fn segment_beyond_file_is_refused() {
    let valid = Elf::valid().build();
    let len = valid.len() as u64;
    let loadable = Err(ImageError::Truncated("a loadable segment"));

    // Text's file bytes start past the end.
    let mut bytes = valid.clone();
    put64(&mut bytes, phdr_field(1, P_OFFSET), len + 0x1000);
    assert_eq!(Image::parse(&bytes), loadable);

    // Text's file bytes start inside but end outside.
    let mut bytes = valid.clone();
    put64(&mut bytes, phdr_field(1, P_OFFSET), len - 0x10);
    assert_eq!(Image::parse(&bytes), loadable);

    // Offset + size overflows.
    let mut bytes = valid.clone();
    put64(&mut bytes, phdr_field(1, P_OFFSET), u64::MAX);
    assert_eq!(Image::parse(&bytes), loadable);

    // Data: a file size within the memory size, but beyond the end of the file.
    let mut bytes = valid.clone();
    put64(&mut bytes, phdr_field(0, P_FILESZ), 0x2000);
    assert_eq!(Image::parse(&bytes), loadable);

    // The file cut one byte short of its last segment (the manifest note).
    assert_eq!(
        Image::parse(&valid[..valid.len() - 1]),
        Err(ImageError::Truncated("a note segment"))
    );

    // The note's bytes beyond the file.
    let mut bytes = valid.clone();
    put64(&mut bytes, phdr_field(3, P_OFFSET), len);
    assert_eq!(Image::parse(&bytes), Err(ImageError::Truncated("a note segment")));
}

#[test]
fn header_patches_are_seen() {
    // Sanity check of the patch helpers against the builder.
    let mut bytes = Elf::valid().build();
    put16(&mut bytes, E_TYPE, ET_DYN);
    assert_eq!(Image::parse(&bytes), Err(ImageError::NotStatic));
    let mut bytes = Elf::valid().build();
    put16(&mut bytes, E_MACHINE, 183);
    assert_eq!(Image::parse(&bytes), Err(ImageError::WrongArch("AArch64")));
    let mut bytes = Elf::valid().build();
    put64(&mut bytes, E_ENTRY, RODATA);
    assert_eq!(Image::parse(&bytes), Err(ImageError::BadEntry(RODATA)));
}

/// Deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// What every accepted image guarantees.
fn check_invariants(image: &Image) {
    assert!(!image.segments.is_empty());
    for seg in &image.segments {
        assert!(seg.mem_size > 0);
        assert!(seg.start >= layout::RESERVED_END);
        assert!(seg.start.checked_add(seg.mem_size).is_some());
    }
    for pair in image.segments.windows(2) {
        assert!(pair[0].end() <= pair[1].start, "{:?}", image.segments);
    }
    assert!(
        image
            .segments
            .iter()
            .any(|s| s.flags.exec && s.start <= image.entry && image.entry < s.end())
    );
    assert_eq!(image.manifest.abi_version, ABI_VERSION);
}

fn parse_without_panic(bytes: &[u8], what: &str) -> Result<Image, ImageError> {
    match std::panic::catch_unwind(|| Image::parse(bytes)) {
        Ok(result) => {
            if let Ok(image) = &result {
                check_invariants(image);
            }
            result
        }
        Err(_) => panic!("Image::parse panicked on {what}: {bytes:02x?}"),
    }
}

#[test]
fn mutated_images_never_panic() {
    let valid = Elf::valid().build();
    let headers = EHDR_SIZE + Elf::valid().phdrs.len() * PHDR_SIZE;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    let mut refused = 0;
    for iteration in 0..2000 {
        let mut bytes = valid.clone();
        let flips = 1 + rng.below(6);
        for _ in 0..flips {
            match rng.below(4) {
                // Flip bits of a header byte (where the interesting fields are).
                0 | 1 => {
                    let at = rng.below(headers);
                    bytes[at] ^= u8::try_from(rng.next() & 0xff).unwrap().max(1);
                }
                // Put an extreme or random 64-bit value in a header field.
                2 => {
                    let at = rng.below(headers - 8) & !7;
                    let value = match rng.below(4) {
                        0 => u64::MAX,
                        1 => u64::MAX - rng.next() % 0x1_0000,
                        2 => rng.next() % 0x20_0000,
                        _ => rng.next(),
                    };
                    put64(&mut bytes, at, value);
                }
                // Flip a byte anywhere (including the note).
                _ => {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 0xff;
                }
            }
        }
        if rng.below(4) == 0 {
            let len = rng.below(bytes.len() + 1);
            bytes.truncate(len);
        }
        match parse_without_panic(&bytes, &format!("mutation {iteration}")) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    // The mutations must exercise both outcomes, or they test little.
    assert!(accepted > 0, "no mutation was accepted");
    assert!(refused > 0, "no mutation was refused");
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let valid = Elf::valid().build();
    assert!(parse_without_panic(&valid, "the valid image").is_ok());
    for len in 0..valid.len() {
        // Every byte of the file is needed, so every strict prefix is refused.
        assert!(
            parse_without_panic(&valid[..len], &format!("prefix of {len} bytes")).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for iteration in 0..500 {
        let len = rng.below(400);
        let mut bytes: Vec<u8> =
            (0..len).map(|_| u8::try_from(rng.next() & 0xff).unwrap()).collect();
        if iteration % 2 == 0 && bytes.len() >= 6 {
            // Give half of them a plausible identification so parsing goes further.
            bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        }
        let _ = parse_without_panic(&bytes, &format!("random input {iteration}"));
    }
}
