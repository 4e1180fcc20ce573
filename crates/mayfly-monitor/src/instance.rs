//! The boot path: from image bytes to a vCPU ready at the guest's entry point.
//!
//! Everything that can be refused (the image, the memory size, the arguments) is checked before
//! the first KVM object is created. Guest memory is only touched where the monitor must write:
//! the image, the page tables, the descriptor page, the exception stubs and the boot info.

use crate::boot_args::{ArgsBlock, ArgsError};
use crate::guest_memory::{BadRange, GuestRam, MapError};
use crate::image::{Image, ImageError, LoadError};
use crate::kvm::{KvmError, KvmVm};
use crate::net::rings::RingError;
use crate::net::{NetConfig, NetError, Nic};
use crate::paging::{self, TooManyTables};
use crate::plan::{MemoryPlan, PlanError};
use crate::{cpu, sys};
use mayfly_abi::boot::BOOT_MAGIC;
use mayfly_abi::manifest::Device;
use mayfly_abi::net::NetInfo;
use mayfly_abi::{ABI_VERSION, BootInfo, layout};
use std::time::Duration;

/// What to boot and with which resources.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Guest memory in bytes.
    pub mem_size: u64,
    /// Stop the guest after this long (wall-clock), if set.
    pub timeout: Option<Duration>,
    /// Arguments; the first is the program name.
    pub args: Vec<String>,
    /// Environment entries.
    pub env: Vec<(String, String)>,
    /// How to connect the NIC, for images that declare one (default: user-mode networking with
    /// nothing published).
    pub net: Option<NetConfig>,
    /// Run the guest under the monitor's seccomp filter (see `sandbox`).
    pub sandbox: bool,
    /// Test hook: make this forbidden system call once sandboxed.
    #[doc(hidden)]
    pub sandbox_selftest: Option<crate::sandbox::SelfTest>,
    /// Most bytes of console output the guest may write (stopped past it), if limited.
    pub console_limit: Option<u64>,
    /// Most bytes of console output per second shown (the excess is dropped), if limited.
    pub console_rate: Option<u64>,
    /// Write a template of the guest to this file at its first `Wait`, then stop it (see
    /// `snapshot`).
    pub snapshot_out: Option<std::path::PathBuf>,
    /// The volume to attach (opened before the sandbox), for images that declare a block
    /// device.
    pub volume: Option<crate::volume::VolumeSpec>,
}

/// Why a guest could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Tables(#[from] TooManyTables),
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Kvm(#[from] KvmError),
    #[error("loading the image into guest memory failed: {0}")]
    Load(#[from] LoadError),
    #[error("arming the guest's time limit failed: {0}")]
    Timer(std::io::Error),
    #[error("writing boot data into guest memory failed: {0}")]
    Write(#[from] BadRange),
    #[error("reading host entropy failed: {0}")]
    Entropy(std::io::Error),
    #[error(
        "the image declares no network device, so it cannot be given one (--net/--publish); \
         a std program declares one when it uses sockets (std::net, tokio::net), a no_std \
         program when built with the `net` feature of the mayfly crate"
    )]
    NetNotDeclared,
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("setting up the NIC's rings failed: {0}")]
    Rings(#[from] RingError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::TemplateError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error(transparent)]
    TemplateMap(#[from] crate::guest_memory::TemplateMapError),
}

/// A guest ready to run: memory loaded, vCPU at the entry point.
pub struct Instance {
    /// The VM, its vCPU and its memory.
    pub(crate) vm: KvmVm,
    pub(crate) plan: MemoryPlan,
    pub(crate) image: Image,
    pub(crate) args: ArgsBlock,
    pub(crate) tsc_hz: u64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) nic: Option<Nic>,
    pub(crate) volume: Option<crate::volume::Volume>,
    pub(crate) net_info: NetInfo,
    pub(crate) entropy: [u8; 32],
    pub(crate) sandbox: bool,
    pub(crate) sandbox_selftest: Option<crate::sandbox::SelfTest>,
    pub(crate) grants: crate::sandbox::Grants,
    pub(crate) sandboxed: bool,
    pub(crate) console: crate::console::Console,
    /// 0 for a cold boot; a clone's own non-zero generation (see `BootInfo::generation`).
    pub(crate) generation: u64,
    /// A clone's guest TSC at a `CLOCK_MONOTONIC` moment, read when it was prepared.
    pub(crate) tsc_anchor: Option<(u64, u64)>,
    /// Where to write a template at the guest's first `Wait`, and which image it is of.
    pub(crate) snapshot_of: Option<SnapshotOf>,
}

/// Where a template goes, and the image it is made from.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotOf {
    pub(crate) path: std::path::PathBuf,
    pub(crate) image_len: u64,
    pub(crate) image_digest: u64,
}

/// What [`Instance::assemble`] puts together: checked image and plan, memory already filled.
pub(crate) struct Parts {
    pub(crate) image: Image,
    pub(crate) plan: MemoryPlan,
    pub(crate) args: ArgsBlock,
    pub(crate) tables: paging::PageTables,
    pub(crate) ram: GuestRam,
    pub(crate) generation: u64,
    pub(crate) snapshot_of: Option<SnapshotOf>,
}

/// Writes the monitor's own pages: page tables, descriptor tables, exception stubs. A clone
/// rewrites them too, so nothing of them is taken from a template file.
pub(crate) fn write_monitor_pages(
    ram: &GuestRam,
    tables: &paging::PageTables,
) -> Result<(), BadRange> {
    for table in &tables.tables {
        let bytes: Vec<u8> = table.entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        ram.write_bytes(table.addr, &bytes)?;
    }
    ram.write_bytes(layout::GDT_ADDR, &cpu::descriptor_page())?;
    ram.write_bytes(layout::FAULT_STUBS_ADDR, &cpu::fault_stubs())?;
    Ok(())
}

impl Instance {
    /// Validates `image_bytes` against `config` and prepares the guest.
    pub fn prepare(image_bytes: &[u8], config: &VmConfig) -> Result<Instance, BootError> {
        let image = Image::parse(image_bytes)?;
        let wants_nic = image.manifest.wants(Device::Net);
        if config.net.is_some() && !wants_nic {
            return Err(BootError::NetNotDeclared);
        }
        let plan = MemoryPlan::new(&image, config.mem_size, wants_nic)?;
        let tables = paging::build(&plan)?;
        let args = ArgsBlock::encode(&config.args, &config.env)?;

        let ram = GuestRam::new(config.mem_size)?;
        image.load(image_bytes, &ram)?;
        write_monitor_pages(&ram, &tables)?;
        let args_addr = layout::BOOT_INFO_ADDR + std::mem::size_of::<BootInfo>() as u64;
        ram.write_bytes(args_addr, &args.bytes)?;
        let snapshot_of = config.snapshot_out.clone().map(|path| SnapshotOf {
            path,
            image_len: image_bytes.len() as u64,
            image_digest: crate::snapshot::digest(image_bytes),
        });
        let parts = Parts { image, plan, args, tables, ram, generation: 0, snapshot_of };
        Instance::assemble(parts, config, None, |_| Ok(()))
    }

    /// The common end of [`Instance::prepare`] and a clone's restore: entropy, the NIC (its
    /// ring counters restored from `rings`, or fresh), the VM with its vCPU in 64-bit ring 3,
    /// then `set_vcpu` (a clone sets its saved registers there).
    pub(crate) fn assemble(
        parts: Parts,
        config: &VmConfig,
        rings: Option<(u32, u32)>,
        set_vcpu: impl FnOnce(&KvmVm) -> Result<(), KvmError>,
    ) -> Result<Instance, BootError> {
        let Parts { image, plan, args, tables, ram, generation, snapshot_of } = parts;
        let volume = match &config.volume {
            Some(_) if !image.manifest.wants(Device::Block) => {
                return Err(crate::volume::VolumeError::NotDeclared.into());
            }
            Some(spec) => Some(crate::volume::Volume::open(spec)?),
            None => None,
        };
        let mut entropy = [0u8; 32];
        sys::fill_random(&mut entropy).map_err(BootError::Entropy)?;
        let (nic, net_info) = match plan.net_rings {
            Some(base) => {
                let default = NetConfig::User {
                    publish: Vec::new(),
                    allow_host_ports: Vec::new(),
                    max_connections: crate::net::usernet::MAX_CONNECTIONS,
                };
                let mut nic = Nic::open(config.net.as_ref().unwrap_or(&default), &entropy)?;
                let info = match rings {
                    Some((rx_head, tx_tail)) => nic.reattach(base, rx_head, tx_tail),
                    None => nic.attach(&ram, base)?,
                };
                (Some(nic), info)
            }
            None => (None, NetInfo::default()),
        };

        // The filter follows the instance: socket calls only for what it was granted.
        let mut grants = match (&nic, &config.net) {
            (Some(_), Some(NetConfig::User { publish, allow_host_ports, .. })) => {
                crate::sandbox::Grants {
                    published: !publish.is_empty(),
                    outbound: !allow_host_ports.is_empty(),
                    unix_dirs: nic.as_ref().map(|n| n.unix_dirs.clone()).unwrap_or_default(),
                    volume: false,
                }
            }
            _ => crate::sandbox::Grants::default(),
        };
        grants.volume = volume.is_some();

        let vm = KvmVm::new(ram)?;
        let vcpu_err = |what| move |source| KvmError::Ioctl { what, cause: source };
        // Every field that matters is set here, so the vCPU's reset state need not be read
        // (one ioctl less on the boot path); the APIC stays at its architectural default base.
        let mut sregs = kvm_bindings::kvm_sregs { apic_base: 0xfee0_0900, ..Default::default() };
        cpu::configure_sregs(&mut sregs, tables.root());
        vm.vcpu.set_sregs(&sregs).map_err(vcpu_err("KVM_SET_SREGS"))?;
        vm.vcpu
            .set_regs(&cpu::entry_regs(image.entry, plan.stack_top))
            .map_err(vcpu_err("KVM_SET_REGS"))?;
        set_vcpu(&vm)?;
        let tsc_khz = vm.vcpu.get_tsc_khz().map_err(vcpu_err("KVM_GET_TSC_KHZ"))?;
        Ok(Instance {
            vm,
            plan,
            image,
            args,
            tsc_hz: u64::from(tsc_khz) * 1000,
            timeout: config.timeout,
            nic,
            volume,
            net_info,
            entropy,
            // Making a template runs unsandboxed: capturing needs ioctls and file writes that
            // the run loop's filter does not allow (see docs/design.md, "Snapshots and clones").
            sandbox: config.sandbox && snapshot_of.is_none(),
            sandbox_selftest: config.sandbox_selftest,
            grants,
            sandboxed: false,
            console: crate::console::Console::new(
                config.console_limit,
                config.console_rate,
                std::time::Instant::now(),
            ),
            generation,
            tsc_anchor: None,
            snapshot_of,
        })
    }

    /// Writes the boot info, with the wall-clock time of this moment; called just before entry.
    pub(crate) fn write_boot_info(&self) -> Result<(), BootError> {
        // A clone resumes mid-run: tell it which TSC value the wall-clock reading pairs with.
        // Extrapolated from the anchor taken before the sandbox (which forbids KVM_GET_MSRS),
        // so that a clone that stood by still gets the TSC of this moment.
        let wall_clock_tsc = match self.tsc_anchor {
            Some((tsc, at_ns)) => {
                let elapsed = u128::from(sys::monotonic_ns().saturating_sub(at_ns));
                let ticks = elapsed * u128::from(self.tsc_hz) / 1_000_000_000;
                tsc.wrapping_add(u64::try_from(ticks).unwrap_or(u64::MAX))
            }
            None => 0,
        };
        let wall_clock_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let info = BootInfo {
            magic: BOOT_MAGIC,
            abi_version: ABI_VERSION,
            argc: self.args.argc,
            mem_size: self.plan.mem_size,
            heap_start: self.plan.heap_start,
            heap_end: self.plan.heap_end,
            stack_top: self.plan.stack_top,
            tsc_hz: self.tsc_hz,
            wall_clock_ns,
            args: layout::BOOT_INFO_ADDR + std::mem::size_of::<BootInfo>() as u64,
            // Bounded by ARGS_MAX (checked in ArgsBlock::encode).
            args_len: u32::try_from(self.args.bytes.len()).unwrap_or(u32::MAX),
            envc: self.args.envc,
            console: layout::CONSOLE_ADDR,
            devices: if self.nic.is_some() { 1 << Device::Net as u32 } else { 0 }
                | if self.volume.is_some() { 1 << Device::Block as u32 } else { 0 },
            entropy: self.entropy,
            net: self.net_info,
            generation: self.generation,
            wall_clock_tsc,
            block: self.volume.as_ref().map(|v| v.info()).unwrap_or_default(),
        };
        self.vm.ram().write(layout::BOOT_INFO_ADDR, info)?;
        Ok(())
    }

    /// The validated image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The attached NIC, if any (its published addresses, its tap's name).
    pub fn nic(&self) -> Option<&Nic> {
        self.nic.as_ref()
    }
}
