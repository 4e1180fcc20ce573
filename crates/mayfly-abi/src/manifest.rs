//! The manifest every Mayfly image carries: which ABI it speaks and which devices it needs.
//!
//! It is an ELF note (`PT_NOTE`) named [`NOTE_NAME`] of type [`NOTE_TYPE`] whose descriptor is a
//! [`Manifest`]. The guest library emits it; the monitor reads it before boot, refuses an image
//! without one or with another ABI version, and attaches only the devices it declares.

/// Name of the manifest note, NUL-terminated as ELF requires.
pub const NOTE_NAME: &[u8; 8] = b"Mayfly\0\0";
/// Length of the name as recorded in the note header (including the NUL, excluding padding).
pub const NOTE_NAME_LEN: u32 = 7;
/// Type of the manifest note.
pub const NOTE_TYPE: u32 = 0x4d46_0001;

/// The devices a guest can ask for. A device's number is its bit in masks.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A network interface (shared-memory rings).
    Net = 0,
    /// A block device (a volume: sector requests in batches, see [`crate::block`]).
    Block = 1,
}

/// The manifest proper (the note's descriptor).
///
/// Plain data: no padding, any bit pattern is valid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The [`crate::ABI_VERSION`] the image was built against.
    pub abi_version: u32,
    /// Bit `n` set: the image needs device `n` (see [`Device`]).
    pub devices: u32,
}

/// Size of the manifest descriptor in bytes.
pub const MANIFEST_SIZE: u32 = 8;

impl Manifest {
    /// Decodes a manifest from the note's descriptor bytes (little-endian).
    pub fn from_bytes(bytes: &[u8]) -> Option<Manifest> {
        let abi_version = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
        let devices = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
        Some(Manifest { abi_version, devices })
    }

    /// Whether the image declares `device`.
    pub fn wants(&self, device: Device) -> bool {
        self.devices & (1 << device as u32) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_decodes_and_rejects_short_input() {
        let m = Manifest::from_bytes(&[1, 0, 0, 0, 1, 0, 0, 0]).unwrap();
        assert_eq!(m, Manifest { abi_version: 1, devices: 1 });
        assert!(m.wants(Device::Net));
        assert_eq!(Manifest::from_bytes(&[1, 0, 0]), None);
        assert_eq!(core::mem::size_of::<Manifest>(), MANIFEST_SIZE as usize);
    }
}
