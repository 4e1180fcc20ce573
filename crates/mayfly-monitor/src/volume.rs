//! The block device: a volume file opened before the sandbox, served with `pread`, `pwrite` and
//! `fdatasync` (the only calls the sandbox adds for it; see `sandbox::VOLUME`).
//!
//! A batch ([`mayfly_abi::block`]) is copied out of guest memory once and every request is
//! validated before any is served: a malformed batch stops the guest and touches nothing.

use crate::guest_memory::GuestRam;
use crate::plan::MemoryPlan;
use mayfly_abi::Status;
use mayfly_abi::block::{
    BLOCK_BATCH_MAX, BLOCK_READ_ONLY, BlockArgs, BlockInfo, BlockOp, BlockRequest,
    REQUEST_SECTORS_MAX, SECTOR_SIZE,
};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Largest volume accepted (1 TiB).
pub const MAX_VOLUME_BYTES: u64 = 1 << 40;

/// Which file to attach, as given on the command line (`FILE[:ro][:size=N]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The volume file.
    pub path: PathBuf,
    /// The guest may only read it.
    pub read_only: bool,
    /// Create the file with this many bytes if it does not exist.
    pub create_size: Option<u64>,
}

impl std::str::FromStr for VolumeSpec {
    type Err = String;

    /// `FILE`, `FILE:ro`, `FILE:size=64M`, options joined by `:` or `,`.
    fn from_str(spec: &str) -> Result<VolumeSpec, String> {
        let mut parts = spec.split(':');
        let path = parts.next().unwrap_or_default();
        if path.is_empty() {
            return Err(format!("--volume {spec:?}: no file; use FILE, FILE:ro or FILE:size=64M"));
        }
        let mut volume = VolumeSpec { path: path.into(), read_only: false, create_size: None };
        for option in parts.flat_map(|p| p.split(',')) {
            if option == "ro" {
                volume.read_only = true;
            } else if let Some(size) = option.strip_prefix("size=") {
                volume.create_size = Some(parse_size(size).ok_or_else(|| {
                    format!(
                        "--volume {spec:?}: bad size {size:?}; give a multiple of 512 bytes \
                         with an optional K, M or G suffix (e.g. size=64M), at most 1T"
                    )
                })?);
            } else {
                return Err(format!(
                    "--volume {spec:?}: unknown option {option:?}; the options are ro and size=N \
                     (e.g. {path}:size=64M)"
                ));
            }
        }
        if volume.read_only && volume.create_size.is_some() {
            return Err(format!(
                "--volume {spec:?}: a read-only volume cannot be created; drop ro or size="
            ));
        }
        Ok(volume)
    }
}

/// `64M`, `1G`, `4096`: bytes, a positive multiple of the sector size, at most 1 TiB.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'K' | 'k') => (&text[..i], 1 << 10),
        (i, 'M' | 'm') => (&text[..i], 1 << 20),
        (i, 'G' | 'g') => (&text[..i], 1 << 30),
        (i, 'T' | 't') => (&text[..i], 1 << 40),
        _ => (text, 1),
    };
    let bytes = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (bytes > 0 && bytes % u64::from(SECTOR_SIZE) == 0 && bytes <= MAX_VOLUME_BYTES).then_some(bytes)
}

/// Why a volume could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {0}: no such file; give a size to create it (--volume {0}:size=64M)")]
    Missing(String),
    #[error("volume {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error(
        "volume {path}: its size, {len} bytes, is not a positive multiple of 512 of at most 1 TiB"
    )]
    BadSize { path: String, len: u64 },
    #[error(
        "volume {0} is in use by another monitor (a writable volume has one user at a time; a \
         read-only one is shared only with other readers)"
    )]
    Busy(String),
    #[error(
        "the image declares no block device, so it cannot be given a volume (--volume); build \
         it with the `block` feature of the mayfly crate"
    )]
    NotDeclared,
}

/// An attached volume.
#[derive(Debug)]
pub struct Volume {
    file: File,
    sectors: u64,
    read_only: bool,
}

impl Volume {
    /// Opens (or creates, if `spec` has a size) the volume file. Called before the sandbox.
    pub fn open(spec: &VolumeSpec) -> Result<Volume, VolumeError> {
        let name = spec.path.display().to_string();
        let io = |cause| VolumeError::Io { path: name.clone(), cause };
        let file = match open_file(&spec.path, !spec.read_only) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match spec.create_size {
                Some(size) => {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&spec.path)
                        .map_err(io)?;
                    file.set_len(size).map_err(io)?;
                    file.sync_all().map_err(io)?;
                    file
                }
                None => return Err(VolumeError::Missing(name)),
            },
            Err(e) => return Err(io(e)),
        };
        if !crate::sys::try_lock(&file, !spec.read_only).map_err(io)? {
            return Err(VolumeError::Busy(name));
        }
        let len = file.metadata().map_err(io)?.len();
        if len == 0 || len % u64::from(SECTOR_SIZE) != 0 || len > MAX_VOLUME_BYTES {
            return Err(VolumeError::BadSize { path: name, len });
        }
        Ok(Volume { file, sectors: len / u64::from(SECTOR_SIZE), read_only: spec.read_only })
    }

    /// What the guest is told at boot.
    pub fn info(&self) -> BlockInfo {
        BlockInfo {
            sectors: self.sectors,
            sector_size: SECTOR_SIZE,
            flags: if self.read_only { BLOCK_READ_ONLY } else { 0 },
        }
    }

    /// Serves the batch whose [`BlockArgs`] are at `addr`. `Err` is the report of a malformed
    /// batch (the guest is stopped); I/O errors of the host are statuses.
    pub fn serve(&self, ram: &GuestRam, plan: &MemoryPlan, addr: u64) -> Result<(), String> {
        let size = |n: usize| n as u64;
        if !plan.guest_writable(addr, size(std::mem::size_of::<BlockArgs>())) {
            return Err(format!(
                "hypercall Block: arguments at {addr:#x} are not in the guest's read-write memory"
            ));
        }
        let mut args: BlockArgs =
            ram.read(addr).map_err(|bad| format!("hypercall Block: arguments: {bad}"))?;
        if args.count > BLOCK_BATCH_MAX {
            return Err(format!(
                "hypercall Block: {} requests in one batch; at most {BLOCK_BATCH_MAX}",
                args.count
            ));
        }
        let entry = size(std::mem::size_of::<BlockRequest>());
        let table_len = u64::from(args.count) * entry;
        if args.count > 0 && !plan.guest_writable(args.requests, table_len) {
            return Err(format!(
                "hypercall Block: the {} requests at {:#x} are not in the guest's read-write \
                 memory",
                args.count, args.requests
            ));
        }
        let mut requests = Vec::with_capacity(args.count as usize);
        for i in 0..u64::from(args.count) {
            let at = args.requests + i * entry;
            let request: BlockRequest =
                ram.read(at).map_err(|bad| format!("hypercall Block: request {i}: {bad}"))?;
            let op = self
                .check(ram, plan, &request)
                .map_err(|why| format!("hypercall Block: request {i} ({request:?}): {why}"))?;
            requests.push((at, op, request));
        }
        let mut all_ok = true;
        for (at, op, mut request) in requests {
            let status = self.one(ram, op, &request);
            all_ok &= status == Status::Ok;
            request.status = status as i32;
            ram.write(at, request).map_err(|bad| format!("hypercall Block: {bad}"))?;
        }
        args.status = if all_ok { Status::Ok } else { Status::Invalid } as i32;
        ram.write(addr, args).map_err(|bad| format!("hypercall Block: {bad}"))
    }

    /// Validates one request (copied): its operation, its sectors, its buffer.
    fn check(
        &self,
        ram: &GuestRam,
        plan: &MemoryPlan,
        request: &BlockRequest,
    ) -> Result<BlockOp, String> {
        let op = BlockOp::from_raw(request.op).ok_or("unknown operation")?;
        if op == BlockOp::Flush {
            return Ok(op);
        }
        if request.sectors == 0 || request.sectors > REQUEST_SECTORS_MAX {
            return Err(format!("sector count not in 1..={REQUEST_SECTORS_MAX}"));
        }
        match request.sector.checked_add(u64::from(request.sectors)) {
            Some(end) if end <= self.sectors => {}
            _ => return Err(format!("outside the volume of {} sectors", self.sectors)),
        }
        let len = u64::from(request.sectors) * u64::from(SECTOR_SIZE);
        let buffer_ok = match op {
            BlockOp::Read => plan.guest_writable(request.buf, len),
            _ => ram.check_guest_range(request.buf, len).is_ok(),
        };
        if !buffer_ok {
            return Err("its buffer is not in the guest's memory (writable, for a read)".into());
        }
        Ok(op)
    }

    /// Serves one validated request.
    fn one(&self, ram: &GuestRam, op: BlockOp, request: &BlockRequest) -> Status {
        // Checked for reads and writes (in `check`); a flush's other fields are ignored and may
        // hold anything, so nothing here may overflow on them.
        let offset = request.sector.saturating_mul(u64::from(SECTOR_SIZE));
        let len = (request.sectors as usize).saturating_mul(SECTOR_SIZE as usize);
        let done = match op {
            BlockOp::Read => {
                let mut buf = vec![0; len];
                self.file.read_exact_at(&mut buf, offset).is_ok()
                    && ram.write_bytes(request.buf, &buf).is_ok()
            }
            BlockOp::Write if self.read_only => return Status::Unsupported,
            BlockOp::Write => match ram.read_bytes(request.buf, len) {
                Ok(buf) => self.file.write_all_at(&buf, offset).is_ok(),
                Err(_) => false,
            },
            BlockOp::Flush if self.read_only => true,
            BlockOp::Flush => self.file.sync_data().is_ok(),
        };
        if done { Status::Ok } else { Status::Invalid }
    }
}

fn open_file(path: &Path, write: bool) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(write).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs_parse_and_bad_ones_say_why() {
        let spec: VolumeSpec = "data.img:size=64M".parse().unwrap();
        assert_eq!(spec.create_size, Some(64 << 20));
        assert!(!spec.read_only);
        let spec: VolumeSpec = "data.img:ro".parse().unwrap();
        assert!(spec.read_only && spec.create_size.is_none());
        assert_eq!(
            "a:size=1G,".parse::<VolumeSpec>().err().map(|e| e.contains("unknown")),
            Some(true)
        );
        for bad in
            [":ro", "a:size=", "a:size=100", "a:size=-1M", "a:size=2T", "a:rw", "a:ro:size=1M"]
        {
            let err = bad.parse::<VolumeSpec>().unwrap_err();
            assert!(!err.contains('\n') && err.contains("--volume"), "{bad}: {err}");
        }
        assert_eq!(parse_size("4k"), Some(4096));
    }
}
