//! The KVM objects of one guest: the VM with its memory slots, and its single vCPU.

use crate::guest_memory::GuestRam;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use mayfly_abi::layout;

/// A KVM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error(
        "{0} does not exist: this machine offers no KVM; run Mayfly on a Linux host with \
         virtualization enabled (load the kvm module, or enable nested virtualization)"
    )]
    Missing(String),
    #[error(
        "permission denied opening {0}: add your user to the group that owns it \
         (usually `sudo usermod -aG kvm $USER`, then log in again) or run as root"
    )]
    Denied(String),
    #[error("{what} failed: {cause}")]
    Ioctl { what: &'static str, cause: kvm_ioctls::Error },
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { what, cause: source }
}

/// The KVM device: `/dev/kvm`, or `$MAYFLY_KVM_DEVICE` where a host puts it elsewhere.
pub fn kvm_path() -> String {
    std::env::var("MAYFLY_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".to_owned())
}

/// The VM, its vCPU and the guest memory that backs it. Dropping it closes the vCPU and the VM
/// (freeing KVM's state for them) and only then unmaps the memory: the VM owns its memory, so
/// the memory cannot go while KVM may still reach it.
pub struct KvmVm {
    // Field order is drop order: the vCPU goes before the VM, the VM before its memory.
    /// The only vCPU.
    pub vcpu: VcpuFd,
    _vm: VmFd,
    ram: GuestRam,
}

impl KvmVm {
    /// Creates a VM backed by `ram` (which it takes, and keeps mapped for as long as it exists)
    /// and one vCPU (registers not yet set).
    pub fn new(ram: GuestRam) -> Result<KvmVm, KvmError> {
        let path = kvm_path();
        let c_path =
            std::ffi::CString::new(path.clone()).map_err(|_| KvmError::Missing(path.clone()))?;
        let kvm = Kvm::new_with_path(&c_path).map_err(|e| match e.errno() {
            libc::ENOENT | libc::ENXIO | libc::ENODEV => KvmError::Missing(path.clone()),
            libc::EACCES | libc::EPERM => KvmError::Denied(path.clone()),
            _ => KvmError::Ioctl { what: "opening the KVM device", cause: e },
        })?;
        let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        // /dev/kvm itself is not needed once the VM exists: close it before anything else (so
        // that no later descriptor, the vCPU's included, coexists with it).
        drop(kvm);
        // Two slots around the hypercall doorbell page, which must stay without memory so that
        // every guest access to it exits (see `mayfly_abi::hypercall`).
        let base = ram.host_base().unwrap_or(0);
        let bell_end = layout::DOORBELL_ADDR + layout::PAGE_SIZE;
        let slots = [(0, layout::DOORBELL_ADDR), (bell_end, ram.size().saturating_sub(bell_end))];
        for (slot, (guest_phys_addr, memory_size)) in (0u32..).zip(slots) {
            let region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr,
                memory_size,
                userspace_addr: base + guest_phys_addr,
            };
            // SAFETY: the region lies inside the anonymous mapping owned by `ram` (`host_base`
            // .. + `size`; `size` is at least `MIN_MEM_SIZE`, far above the doorbell), which
            // stays mapped for as long as this VM exists: the returned `KvmVm` owns `ram`, and
            // its field order drops the vCPU and the VM before `ram`. On an error return the VM
            // (declared after `ram`) is dropped before `ram`, too.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let vcpu = vm.create_vcpu(0).map_err(ioctl("KVM_CREATE_VCPU"))?;
        Ok(KvmVm { vcpu, _vm: vm, ram })
    }

    /// The guest memory.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }
}
