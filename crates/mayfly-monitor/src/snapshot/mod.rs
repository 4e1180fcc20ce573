//! Snapshots and clones: a guest captured at its first `Wait` as a template file, and new
//! instances resumed from it with their memory mapped copy-on-write.
//!
//! A template file is a header ([`HEADER_LEN`] bytes: what the clone needs besides memory) and
//! then the guest's memory, page-aligned, written sparsely (pages of zeroes are holes). A clone
//! maps that memory `MAP_PRIVATE`: pages it never writes stay shared with every other clone
//! (through the page cache), pages it writes become its own. The clone trusts nothing in the file
//! beyond what [`Template::check`] accepts: the header must match the image being run, the
//! registers must be ones a ring-3 guest of that image could hold, and the monitor's own pages
//! (descriptor tables, exception stubs, page tables, boot info) are rewritten from the image, not
//! taken from the file. See docs/design.md, "Snapshots and clones".

pub mod capture;
pub mod restore;

use crate::plan::MemoryPlan;
use kvm_bindings::{kvm_fpu, kvm_regs};
use mayfly_abi::{ABI_VERSION, layout};

/// First bytes of a template file.
pub const MAGIC: [u8; 8] = *b"MAYFLYSN";
/// Version of the template format (independent of the ABI version, which is recorded too).
pub const FORMAT: u32 = 1;
/// Bytes before the guest's memory in a template file (page-aligned, so memory can be mapped).
pub const HEADER_LEN: u64 = HEADER_BYTES as u64;
/// [`HEADER_LEN`] as a buffer length.
pub const HEADER_BYTES: usize = 8192;
/// `RFLAGS` bits a ring-3 guest can hold: the arithmetic flags, DF, AC and the fixed bit 1.
/// Everything else (TF, IF, IOPL, NT, RF, VM, VIF, VIP, ID) is refused in a template.
const RFLAGS_ALLOWED: u64 = 0x0cd5 | 0x2 | (1 << 18);
/// Reserved-bit mask of MXCSR (bits 16 and up must be zero).
const MXCSR_ALLOWED: u32 = 0xffff;

/// Why a template cannot be used (or made).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(
        "{0} is not a Mayfly snapshot (bad magic, or cut short); make one with `mayfly run \
         <image> --snapshot-out <file>`"
    )]
    NotATemplate(String),
    #[error(
        "snapshot format {found} / ABI {abi} is not this monitor's (format {FORMAT}, ABI \
         {ABI_VERSION}); make the snapshot again with this mayfly"
    )]
    Version { found: u32, abi: u32 },
    #[error(
        "the snapshot was made from another image ({0}); make it again from this image with \
         `mayfly run <image> --snapshot-out <file>`"
    )]
    OtherImage(&'static str),
    #[error("the snapshot is corrupt: {0}; make it again")]
    Corrupt(String),
    #[error("cannot snapshot this guest: {0}")]
    Unsupported(String),
}

/// What a template holds besides memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Bytes of guest memory (the memory follows the header in the file).
    pub mem_size: u64,
    /// Length of the image the template was made from.
    pub image_len: u64,
    /// FNV-1a digest of that image (identifies it; not a security boundary: memory contents
    /// are the guest's own and get no trust).
    pub image_digest: u64,
    /// The guest's time-stamp counter at the snapshot (restored, so its monotonic clock runs on).
    pub tsc: u64,
    /// The general registers (rip just after the `Wait` store).
    pub regs: kvm_regs,
    /// The x87/SSE state.
    pub fpu: kvm_fpu,
    /// The NIC's monitor-owned counters (RX produced, TX consumed), if the image has a NIC.
    pub rings: Option<(u32, u32)>,
    /// Argument count, environment count and argument block length the guest was given.
    pub argc: u32,
    /// See `argc`.
    pub envc: u32,
    /// See `argc`.
    pub args_len: u32,
}

/// FNV-1a, 64 bits: which image a template belongs to.
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn regs_fields(regs: &mut kvm_regs) -> [&mut u64; 18] {
    [
        &mut regs.rax,
        &mut regs.rbx,
        &mut regs.rcx,
        &mut regs.rdx,
        &mut regs.rsi,
        &mut regs.rdi,
        &mut regs.rsp,
        &mut regs.rbp,
        &mut regs.r8,
        &mut regs.r9,
        &mut regs.r10,
        &mut regs.r11,
        &mut regs.r12,
        &mut regs.r13,
        &mut regs.r14,
        &mut regs.r15,
        &mut regs.rip,
        &mut regs.rflags,
    ]
}

/// Reads little-endian fields from a byte slice; a short slice is an error, never a panic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes().map(u16::from_le_bytes)
    }
}

impl Template {
    /// The header's bytes (exactly [`HEADER_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&ABI_VERSION.to_le_bytes());
        for value in [self.mem_size, self.image_len, self.image_digest, self.tsc] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        let mut regs = self.regs;
        for field in regs_fields(&mut regs) {
            out.extend_from_slice(&field.to_le_bytes());
        }
        let fpu = &self.fpu;
        for reg in fpu.fpr.iter().chain(fpu.xmm.iter()) {
            out.extend_from_slice(reg);
        }
        for value in [fpu.fcw, fpu.fsw, u16::from(fpu.ftwx), fpu.last_opcode] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in [fpu.last_ip, fpu.last_dp] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&fpu.mxcsr.to_le_bytes());
        let (has_nic, rx_head, tx_tail) = match self.rings {
            Some((rx, tx)) => (1u32, rx, tx),
            None => (0, 0, 0),
        };
        for value in [has_nic, rx_head, tx_tail, self.argc, self.envc, self.args_len] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.resize(HEADER_BYTES, 0);
        out
    }

    /// Parses a header (`name` is the file, for messages). Checks only the format; what must
    /// agree with the image is checked by [`Template::check`].
    pub fn decode(bytes: &[u8], name: &str) -> Result<Template, TemplateError> {
        let short = || TemplateError::NotATemplate(name.to_owned());
        let mut r = Reader(bytes);
        if r.bytes::<8>() != Some(MAGIC) {
            return Err(short());
        }
        let format = r.u32().ok_or_else(short)?;
        let abi = r.u32().ok_or_else(short)?;
        if format != FORMAT || abi != ABI_VERSION {
            return Err(TemplateError::Version { found: format, abi });
        }
        let mut t = Template {
            mem_size: r.u64().ok_or_else(short)?,
            image_len: r.u64().ok_or_else(short)?,
            image_digest: r.u64().ok_or_else(short)?,
            tsc: r.u64().ok_or_else(short)?,
            regs: kvm_regs::default(),
            fpu: kvm_fpu::default(),
            rings: None,
            argc: 0,
            envc: 0,
            args_len: 0,
        };
        for field in regs_fields(&mut t.regs) {
            *field = r.u64().ok_or_else(short)?;
        }
        for reg in t.fpu.fpr.iter_mut().chain(t.fpu.xmm.iter_mut()) {
            *reg = r.bytes().ok_or_else(short)?;
        }
        t.fpu.fcw = r.u16().ok_or_else(short)?;
        t.fpu.fsw = r.u16().ok_or_else(short)?;
        t.fpu.ftwx = u8::try_from(r.u16().ok_or_else(short)?)
            .map_err(|_| TemplateError::Corrupt("x87 tag word out of range".into()))?;
        t.fpu.last_opcode = r.u16().ok_or_else(short)?;
        t.fpu.last_ip = r.u64().ok_or_else(short)?;
        t.fpu.last_dp = r.u64().ok_or_else(short)?;
        t.fpu.mxcsr = r.u32().ok_or_else(short)?;
        let has_nic = r.u32().ok_or_else(short)?;
        let rx_head = r.u32().ok_or_else(short)?;
        let tx_tail = r.u32().ok_or_else(short)?;
        t.rings = match has_nic {
            0 => None,
            1 => Some((rx_head, tx_tail)),
            other => return Err(TemplateError::Corrupt(format!("NIC flag {other}"))),
        };
        t.argc = r.u32().ok_or_else(short)?;
        t.envc = r.u32().ok_or_else(short)?;
        t.args_len = r.u32().ok_or_else(short)?;
        Ok(t)
    }

    /// Checks the template against the image (`image_bytes`) and the plan made for it with the
    /// template's memory size: same image, and registers a ring-3 guest of it could hold.
    pub fn check(&self, image_bytes: &[u8], plan: &MemoryPlan) -> Result<(), TemplateError> {
        let corrupt = |what: String| Err(TemplateError::Corrupt(what));
        if self.image_len != image_bytes.len() as u64 {
            return Err(TemplateError::OtherImage("its length differs"));
        }
        if self.image_digest != digest(image_bytes) {
            return Err(TemplateError::OtherImage("its digest differs"));
        }
        if self.rings.is_some() != plan.net_rings.is_some() {
            return Err(TemplateError::OtherImage("its network device differs"));
        }
        let rip = self.regs.rip;
        let executable = plan
            .regions
            .iter()
            .any(|r| r.access.user && r.access.exec && r.start <= rip && rip < r.end);
        if !executable {
            return corrupt(format!("rip {rip:#x} is not in the image's code"));
        }
        let rsp = self.regs.rsp;
        if rsp < layout::RESERVED_END || rsp > plan.mem_size {
            return corrupt(format!("rsp {rsp:#x} is outside the guest's memory"));
        }
        let rflags = self.regs.rflags;
        if rflags & !RFLAGS_ALLOWED != 0 || rflags & 0x2 == 0 {
            return corrupt(format!("rflags {rflags:#x} is not a ring-3 value"));
        }
        if self.fpu.mxcsr & !MXCSR_ALLOWED != 0 {
            return corrupt(format!("mxcsr {:#x} sets reserved bits", self.fpu.mxcsr));
        }
        if self.args_len as usize > mayfly_abi::boot::ARGS_MAX
            || u64::from(self.argc) + u64::from(self.envc) > u64::from(self.args_len)
        {
            return corrupt("argument block sizes out of range".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
