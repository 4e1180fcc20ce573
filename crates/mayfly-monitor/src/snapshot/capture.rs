//! Making a template: at the guest's first `Wait`, its memory, registers, TSC and NIC counters
//! go to a file.

use super::{HEADER_LEN, Template, TemplateError};
use crate::instance::Instance;
use kvm_bindings::{Msrs, kvm_msr_entry};
use mayfly_abi::{Status, WaitArgs};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

/// The time-stamp counter MSR.
pub(crate) const MSR_IA32_TSC: u32 = 0x10;
/// Guest memory is scanned for non-zero pages this many bytes at a time.
const SCAN_CHUNK: usize = 2 << 20;
const PAGE: usize = 4096;

fn io(what: String) -> impl FnOnce(std::io::Error) -> TemplateError {
    move |cause| TemplateError::Io(what, cause)
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> TemplateError {
    move |cause| TemplateError::Unsupported(format!("{what} failed: {cause}"))
}

impl Instance {
    /// The guest's time-stamp counter now.
    pub(crate) fn guest_tsc(&self) -> Result<u64, crate::kvm::KvmError> {
        let entry = kvm_msr_entry { index: MSR_IA32_TSC, ..Default::default() };
        let mut msrs = Msrs::from_entries(&[entry]).map_err(|_| crate::kvm::KvmError::Ioctl {
            what: "KVM_GET_MSRS",
            cause: kvm_ioctls::Error::new(libc::ENOMEM),
        })?;
        self.vm
            .vcpu
            .get_msrs(&mut msrs)
            .map_err(|cause| crate::kvm::KvmError::Ioctl { what: "KVM_GET_MSRS", cause })?;
        Ok(msrs.as_slice().first().map_or(0, |e| e.data))
    }

    /// Captures the guest, stopped in the `Wait` whose arguments are at `wait_args`, into the
    /// template file named in its configuration. The `Wait` is answered first (nothing ready),
    /// so that a clone resumes just after it as if it had returned.
    pub(crate) fn capture(&mut self, wait_args: u64) -> Result<std::path::PathBuf, TemplateError> {
        let Some(of) = self.snapshot_of.clone() else {
            return Err(TemplateError::Unsupported("no snapshot was asked for".into()));
        };
        let ram = self.vm.ram();
        let len = std::mem::size_of::<WaitArgs>() as u64;
        if !self.plan.guest_writable(wait_args, len) {
            return Err(TemplateError::Unsupported(format!(
                "its Wait arguments at {wait_args:#x} are not in its read-write memory"
            )));
        }
        let corrupt = |e: crate::guest_memory::BadRange| TemplateError::Unsupported(e.to_string());
        let mut args: WaitArgs = ram.read(wait_args).map_err(corrupt)?;
        args.ready = 0;
        args.status = Status::Ok as i32;
        ram.write(wait_args, args).map_err(corrupt)?;
        let rings = match self.nic.as_ref().map(|nic| nic.ring_state(ram)).transpose() {
            Ok(state) => state.flatten(),
            Err(e) => return Err(TemplateError::Unsupported(e.to_string())),
        };
        if let Some((_, pending)) = rings.filter(|(_, pending)| *pending > 0) {
            return Err(TemplateError::Unsupported(format!(
                "{pending} frames wait for it on its NIC; snapshot before any traffic"
            )));
        }

        // Finish the `Wait` store inside KVM (an immediate exit: the vCPU completes the MMIO
        // and returns before running any guest instruction), so the registers read next are
        // those just after it.
        let vcpu = &mut self.vm.vcpu;
        vcpu.set_kvm_immediate_exit(1);
        let completed = vcpu.run().map(|exit| format!("{exit:?}"));
        vcpu.set_kvm_immediate_exit(0);
        match completed {
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(kvm("completing the Wait")(e)),
            Ok(exit) => {
                return Err(TemplateError::Unsupported(format!(
                    "the vCPU ran on after its Wait ({exit})"
                )));
            }
        }
        let regs = vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
        let sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
        if sregs.fs.base != 0 || sregs.gs.base != 0 {
            return Err(TemplateError::Unsupported(
                "it set FS or GS bases, which snapshots do not carry".into(),
            ));
        }
        let fpu = vcpu.get_fpu().map_err(kvm("KVM_GET_FPU"))?;
        let tsc = self.guest_tsc().map_err(|e| TemplateError::Unsupported(e.to_string()))?;
        let template = Template {
            mem_size: self.plan.mem_size,
            image_len: of.image_len,
            image_digest: of.image_digest,
            tsc,
            regs,
            fpu,
            rings: rings.map(|(counters, _)| counters),
            argc: self.args.argc,
            envc: self.args.envc,
            args_len: u32::try_from(self.args.bytes.len()).unwrap_or(u32::MAX),
        };
        self.write_template(&template, &of.path)?;
        Ok(of.path)
    }

    /// Writes the header, then the non-zero pages of memory (zero pages stay holes), to a
    /// temporary file renamed over `path` once complete. The file is the owner's only: it holds
    /// the guest's memory.
    fn write_template(
        &self,
        template: &Template,
        path: &std::path::Path,
    ) -> Result<(), TemplateError> {
        let name = path.display().to_string();
        let tmp = path.with_file_name(format!(
            ".{}.{}.partial",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            std::process::id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(format!("cannot create the snapshot {name}")))?;
        let result = (|| {
            file.write_all(&template.encode())?;
            let ram = self.vm.ram();
            let mut at = 0;
            while at < template.mem_size {
                let len = usize::try_from(template.mem_size - at)
                    .map_or(SCAN_CHUNK, |left| left.min(SCAN_CHUNK));
                let chunk =
                    ram.read_bytes(at, len).map_err(|e| std::io::Error::other(e.to_string()))?;
                for (index, page) in chunk.chunks(PAGE).enumerate() {
                    if page.iter().any(|b| *b != 0) {
                        file.write_all_at(page, HEADER_LEN + at + (index * PAGE) as u64)?;
                    }
                }
                at += len as u64;
            }
            file.set_len(HEADER_LEN + template.mem_size)?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io(format!("cannot write the snapshot {name}")))
    }
}
