//! Cloning: a new instance whose memory is a private (copy-on-write) mapping of a template's,
//! resumed where the template stopped, with its own entropy, clock and NIC backend.

use super::capture::MSR_IA32_TSC;
use super::{HEADER_LEN, Template, TemplateError};
use crate::boot_args::ArgsBlock;
use crate::guest_memory::GuestRam;
use crate::image::Image;
use crate::instance::{BootError, Instance, Parts, VmConfig, write_monitor_pages};
use crate::kvm::KvmError;
use crate::net::NetConfig;
use crate::paging;
use crate::plan::MemoryPlan;
use kvm_bindings::{Msrs, kvm_msr_entry};
use mayfly_abi::manifest::Device;
use mayfly_abi::{BootInfo, layout};
use std::os::unix::fs::FileExt;
use std::path::Path;

impl Instance {
    /// Prepares a clone of the template at `template_path`, made from `image_bytes`. The
    /// template's memory size, arguments and environment are the clone's (`config`'s are not
    /// used); the rest of `config` (network, limits, sandbox) applies as to a cold boot.
    pub fn resume(
        image_bytes: &[u8],
        template_path: &Path,
        config: &VmConfig,
    ) -> Result<Instance, BootError> {
        let image = Image::parse(image_bytes)?;
        let wants_nic = image.manifest.wants(Device::Net);
        if config.net.is_some() && !wants_nic {
            return Err(BootError::NetNotDeclared);
        }
        if matches!(config.net, Some(NetConfig::Tap { .. })) {
            return Err(TemplateError::Unsupported(
                "clones use user-mode networking only (a tap's guest MAC is chosen per boot)"
                    .into(),
            )
            .into());
        }
        let name = template_path.display().to_string();
        let file = std::fs::File::open(template_path)
            .map_err(|e| TemplateError::Io(format!("cannot open the snapshot {name}"), e))?;
        let mut header = vec![0u8; super::HEADER_BYTES];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| TemplateError::NotATemplate(name.clone()))?;
        let template = Template::decode(&header, &name)?;
        let plan = MemoryPlan::new(&image, template.mem_size, wants_nic)?;
        template.check(image_bytes, &plan)?;
        let file_len = file
            .metadata()
            .map_err(|e| TemplateError::Io(format!("cannot read the snapshot {name}"), e))?
            .len();
        if file_len < HEADER_LEN.saturating_add(template.mem_size) {
            return Err(TemplateError::Corrupt("its memory is cut short".into()).into());
        }
        let tables = paging::build(&plan)?;
        let data = crate::sys::data_ranges(&file, HEADER_LEN, HEADER_LEN + template.mem_size)
            .unwrap_or_default();
        let ram = GuestRam::private_copy_of(file, HEADER_LEN, template.mem_size)?;
        // Copy now the template's non-zero pages that the guest may write (its data, heap and
        // stack as they were): it would fault on each twice (a read mapping the shared page,
        // then a write copying it), and these exits cost far more than the copies. Its code and
        // read-only data, and all pages of zeros, stay shared.
        for (offset, len) in data {
            let start = offset.saturating_sub(HEADER_LEN);
            for (run_start, run_len) in writable_runs(&plan, start, start.saturating_add(len)) {
                ram.populate_write(run_start, run_len);
            }
        }
        // The monitor's pages come from the image, never from the file; the console starts
        // empty. (Each of these writes makes a private copy of one page.)
        write_monitor_pages(&ram, &tables)?;
        ram.write_bytes(layout::CONSOLE_ADDR, &0u32.to_le_bytes())?;
        let args_addr = layout::BOOT_INFO_ADDR + std::mem::size_of::<BootInfo>() as u64;
        let args = ArgsBlock {
            bytes: ram.read_bytes(args_addr, template.args_len as usize)?,
            argc: template.argc,
            envc: template.envc,
        };
        let mut generation = [0u8; 8];
        crate::sys::fill_random(&mut generation).map_err(BootError::Entropy)?;
        // Never 0 (a cold boot's), so the guest always notices it woke as a clone.
        let generation = u64::from_le_bytes(generation) | 1;
        let parts = Parts { image, plan, args, tables, ram, generation, snapshot_of: None };
        let saved = template.clone();
        let mut instance = Instance::assemble(parts, config, template.rings, move |vm| {
            let err = |what| move |cause| KvmError::Ioctl { what, cause };
            vm.vcpu.set_regs(&saved.regs).map_err(err("KVM_SET_REGS"))?;
            vm.vcpu.set_fpu(&saved.fpu).map_err(err("KVM_SET_FPU"))?;
            let tsc = kvm_msr_entry { index: MSR_IA32_TSC, data: saved.tsc, ..Default::default() };
            let msrs = Msrs::from_entries(&[tsc])
                .map_err(|_| err("KVM_SET_MSRS")(kvm_ioctls::Error::new(libc::ENOMEM)))?;
            let set = vm.vcpu.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))?;
            if set != 1 {
                return Err(err("KVM_SET_MSRS (the TSC)")(kvm_ioctls::Error::new(libc::EINVAL)));
            }
            Ok(())
        })?;
        let tsc = instance.guest_tsc()?;
        instance.tsc_anchor = Some((tsc, crate::sys::monotonic_ns()));
        Ok(instance)
    }
}

/// The runs of pages in `[start, end)` (page-aligned) that the guest may write, as
/// `(address, length)`.
fn writable_runs(plan: &MemoryPlan, start: u64, end: u64) -> Vec<(u64, u64)> {
    let page = layout::PAGE_SIZE;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut at = start - start % page;
    while at < end {
        if plan.guest_writable(at, page) {
            match runs.last_mut() {
                Some((run_start, run_len)) if *run_start + *run_len == at => *run_len += page,
                _ => runs.push((at, page)),
            }
        }
        at += page;
    }
    runs
}
