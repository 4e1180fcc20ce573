//! Setting a device bit in a built image's manifest note (`mayfly_abi::manifest`): std images
//! are linked with a library that can drive a NIC, and declare one only if the program kept
//! the socket code (the linker's map says whether `socket` survived `--gc-sections`).

use anyhow::{Context, Result, bail};
use mayfly_abi::manifest;
use std::path::Path;

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The file offset of the manifest's `devices` word in ELF image `elf`.
fn devices_offset(elf: &[u8]) -> Option<usize> {
    let phoff = usize::try_from(le64(elf, 0x20)?).ok()?;
    let phentsize = usize::from(le16(elf, 0x36)?);
    let phnum = usize::from(le16(elf, 0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if le32(elf, ph)? != 4 {
            continue; // not PT_NOTE
        }
        let start = usize::try_from(le64(elf, ph + 0x08)?).ok()?;
        let end = start.checked_add(usize::try_from(le64(elf, ph + 0x20)?).ok()?)?;
        let mut at = start;
        while at + 12 <= end {
            let name_len = usize::try_from(le32(elf, at)?).ok()?;
            let desc_len = usize::try_from(le32(elf, at + 4)?).ok()?;
            let name_start = at + 12;
            let desc_start = name_start + name_len.checked_add(3)? / 4 * 4;
            let name = elf.get(name_start..name_start.checked_add(name_len)?)?;
            let wanted = manifest::NOTE_NAME.get(..manifest::NOTE_NAME_LEN as usize)?;
            if le32(elf, at + 8)? == manifest::NOTE_TYPE
                && name == wanted
                && desc_len == manifest::MANIFEST_SIZE as usize
            {
                return Some(desc_start + 4);
            }
            at = desc_start.checked_add(desc_len.checked_add(3)? / 4 * 4)?;
        }
    }
    None
}

/// Sets or clears `device` in the manifest of the image at `path` (no write if it already is
/// as asked: the image may be one cargo did not link again).
pub fn set_device(path: &Path, device: manifest::Device, wanted: bool) -> Result<()> {
    let mut elf = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Some(at) = devices_offset(&elf) else {
        bail!("{} has no Mayfly manifest note: was it linked with mayfly-libc?", path.display());
    };
    let Some(word) = elf.get_mut(at..at + 4) else {
        bail!("{} has a truncated manifest note", path.display());
    };
    let devices = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    let bit = 1 << device as u32;
    let updated = if wanted { devices | bit } else { devices & !bit };
    if updated != devices {
        word.copy_from_slice(&updated.to_le_bytes());
        std::fs::write(path, &elf).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Whether the linker map at `map` lists symbol `name` (it survived `--gc-sections`).
pub fn map_has_symbol(map: &Path, name: &str) -> Result<bool> {
    let text = std::fs::read_to_string(map)
        .with_context(|| format!("cannot read the linker map {}", map.display()))?;
    Ok(text.lines().any(|line| line.split_whitespace().next_back() == Some(name)))
}
