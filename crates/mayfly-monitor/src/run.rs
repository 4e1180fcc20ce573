//! The vCPU loop: run the guest, serve its hypercalls, stop it on a fault or at its deadline.
//!
//! Single-threaded: the guest and the monitor never run at the same time, so the console buffer
//! and argument structures need no synchronisation. After every exit the console buffer is
//! drained, so nothing the guest printed is lost, whatever ends it.

use crate::hypercalls::{self, Step};
use crate::instance::{BootError, Instance};
use crate::outcome::{Fault, Outcome};
use crate::{cpu, sys};
use kvm_ioctls::VcpuExit;
use mayfly_abi::{Hypercall, layout};
use std::io::Write;
use std::time::{Duration, Instant};

/// Moments of one run, in `CLOCK_MONOTONIC` nanoseconds (comparable across processes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// The first `KVM_RUN`.
    pub entered_ns: u64,
    /// The guest's first hypercall (its `main` has started by then).
    pub first_hypercall_ns: Option<u64>,
    /// The guest stopped.
    pub stopped_ns: u64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// How the guest ended.
    pub outcome: Outcome,
    /// When things happened.
    pub timings: Timings,
    /// Frames the NIC's backend dropped (tap: oversized from the host, spoofed from the guest).
    pub dropped_frames: crate::net::tap::Dropped,
    /// The template written at the guest's first `Wait`, if one was asked for and made (the
    /// outcome is then `Exited(0)`).
    pub snapshot: Option<std::path::PathBuf>,
}

/// The first (up to) four bytes of an exit's data, little-endian, zero-extended.
fn word(data: &[u8]) -> u32 {
    let mut bytes = [0u8; 4];
    for (dst, src) in bytes.iter_mut().zip(data) {
        *dst = *src;
    }
    u32::from_le_bytes(bytes)
}

/// A decoded VM exit, copied out of the vCPU's shared run structure.
enum Exit {
    Out { port: u16, data: u32 },
    In { port: u16 },
    MmioWrite { addr: u64, data: u32, size: usize },
    MmioRead { addr: u64 },
    Shutdown,
    InternalError,
    Interrupted,
    Other(String),
}

impl Instance {
    /// Runs the guest to its end, writing its console output to `console`.
    pub fn run(mut self, console: &mut dyn Write) -> Result<RunReport, BootError> {
        self.write_boot_info()?;
        let deadline = self.timeout.map(|t| (Instant::now() + t, t));
        if let Some((_, after)) = deadline {
            sys::arm_timeout(after).map_err(BootError::Timer)?;
        }
        self.enter_sandbox()?;
        let mut timings = Timings { entered_ns: sys::monotonic_ns(), ..Timings::default() };
        let mut snapshot = None;
        let outcome = loop {
            let exit = self.enter();
            if !self.drain_console(console) {
                break Outcome::Misbehaved(format!(
                    "console output exceeded its limit of {} bytes",
                    self.console.limit().unwrap_or(0)
                ));
            }
            let step = match exit {
                Exit::Out { port, data } if port == layout::FAULT_PORT => {
                    Step::Stop(self.fault((data & 0xff) as u8))
                }
                Exit::Out { port, .. } => Step::Stop(Outcome::Misbehaved(format!(
                    "guest wrote to I/O port {port:#x}; Mayfly provides no I/O ports (hypercalls \
                     are stores to the doorbell page)"
                ))),
                Exit::MmioWrite { addr, data, size }
                    if self.snapshot_of.is_some()
                        && size == 4
                        && Hypercall::from_doorbell(addr) == Some(Hypercall::Wait) =>
                {
                    snapshot = Some(self.capture(u64::from(data))?);
                    Step::Stop(Outcome::Exited(0))
                }
                Exit::MmioWrite { addr, data, size } => {
                    timings.first_hypercall_ns.get_or_insert_with(sys::monotonic_ns);
                    hypercalls::dispatch(
                        self.vm.ram(),
                        &self.plan,
                        addr,
                        data,
                        size,
                        deadline,
                        hypercalls::Devices {
                            nic: self.nic.as_mut(),
                            volume: self.volume.as_ref(),
                        },
                    )
                }
                Exit::Interrupted => match deadline {
                    Some((at, after)) if Instant::now() >= at => {
                        Step::Stop(Outcome::TimedOut(after))
                    }
                    _ => Step::Continue,
                },
                Exit::Shutdown => {
                    let rip = self.vm.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    Step::Stop(Outcome::Faulted(Fault {
                        vector: None,
                        rip,
                        error_code: None,
                        address: None,
                    }))
                }
                Exit::InternalError => {
                    let rip = self.vm.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    Step::Stop(Outcome::Misbehaved(format!(
                        "the hypervisor could not execute the instruction at rip {rip:#x}"
                    )))
                }
                Exit::In { port } => Step::Stop(Outcome::Misbehaved(format!(
                    "guest read from I/O port {port:#x}, which Mayfly does not provide"
                ))),
                Exit::MmioRead { addr } => Step::Stop(Outcome::Misbehaved(
                    if addr.wrapping_sub(layout::DOORBELL_ADDR) < layout::PAGE_SIZE {
                        format!("guest read the hypercall doorbell at {addr:#x}; it is write-only")
                    } else {
                        format!("guest accessed address {addr:#x}, outside its memory")
                    },
                )),
                Exit::Other(what) => Step::Stop(Outcome::Misbehaved(what)),
            };
            match step {
                Step::Continue => {}
                Step::Stop(outcome) => {
                    // Let the last frames the guest queued leave before it goes.
                    if let Some(nic) = self.nic.as_mut() {
                        let _ = nic.pump(self.vm.ram());
                    }
                    break outcome;
                }
            }
        };
        if self.timeout.is_some() {
            // Disarm: later runs in this process must not be interrupted by this timer.
            let _ = sys::arm_timeout(Duration::ZERO);
        }
        if let Some(note) = self.console.note(Instant::now(), true) {
            let _ = console.write_all(note.as_bytes());
        }
        let _ = console.flush();
        timings.stopped_ns = sys::monotonic_ns();
        let dropped_frames = self.nic.as_ref().map(|n| n.dropped()).unwrap_or_default();
        Ok(RunReport { outcome, timings, dropped_frames, snapshot })
    }

    /// Confines this process with the monitor's seccomp filter (once; `run` calls it too). Call
    /// it early to take its cost (~0.25 ms, mostly the kernel compiling the filter) off the
    /// path to the guest's first instruction, e.g. before waiting on standby.
    pub fn enter_sandbox(&mut self) -> Result<(), BootError> {
        if self.sandbox && !self.sandboxed {
            crate::sandbox::enter(&self.grants)?;
            self.sandboxed = true;
            if let Some(test) = self.sandbox_selftest {
                sys::forbidden_call(test);
            }
        }
        Ok(())
    }

    /// One `KVM_RUN`, its exit copied out so that the vCPU can be used again.
    fn enter(&mut self) -> Exit {
        match self.vm.vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => Exit::Out { port, data: word(data) },
            Ok(VcpuExit::IoIn(port, _)) => Exit::In { port },
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                Exit::MmioWrite { addr, data: word(data), size: data.len() }
            }
            Ok(VcpuExit::MmioRead(addr, _)) => Exit::MmioRead { addr },
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(VcpuExit::InternalError) => Exit::InternalError,
            Ok(VcpuExit::Hlt) => Exit::Other("guest halted the CPU".into()),
            Ok(VcpuExit::FailEntry(reason, _)) => Exit::Other(format!(
                "the hypervisor refused to enter the guest (reason {reason:#x})"
            )),
            Ok(other) => Exit::Other(format!("unexpected VM exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
            Err(e) => Exit::Other(format!("KVM_RUN failed: {e}")),
        }
    }

    /// Copies the guest's pending console output to `console` (what its limits let through)
    /// and empties the buffer. Returns false once the guest has printed more than its console
    /// limit (what is over the limit is not written).
    fn drain_console(&mut self, console: &mut dyn Write) -> bool {
        let ram = self.vm.ram();
        let Ok(len) = ram.read_u32(layout::CONSOLE_ADDR) else {
            return true;
        };
        if len == 0 {
            return true;
        }
        let len = (len as usize).min(mayfly_abi::console::CONSOLE_CAPACITY);
        let data_addr = layout::CONSOLE_ADDR + mayfly_abi::console::CONSOLE_DATA_OFFSET;
        let now = Instant::now();
        let admitted = self.console.admit(len, now);
        if let Ok(bytes) = ram.read_bytes(data_addr, admitted.show) {
            let _ = console.write_all(&bytes);
        }
        if let Some(note) = self.console.note(now, false) {
            let _ = console.write_all(note.as_bytes());
        }
        let _ = ram.write_bytes(layout::CONSOLE_ADDR, &0u32.to_le_bytes());
        !admitted.over_limit
    }

    /// Whether the guest instruction at `rip` is an `out` to the exception port: `out imm8`
    /// naming it, or `out dx` with DX holding it (an operand-size prefix allowed). Copied in
    /// from guest memory and checked like any guest data.
    fn writes_fault_port(&self, rip: u64) -> bool {
        let ram = self.vm.ram();
        let Ok(code) = ram.check_guest_range(rip, 3).and_then(|()| ram.read_bytes(rip, 3)) else {
            return false;
        };
        let code = code.strip_prefix(&[0x66]).unwrap_or(&code);
        let port = layout::FAULT_PORT;
        match code {
            [0xe6 | 0xe7, imm, ..] => u16::from(*imm) == port,
            [0xee | 0xef, ..] => {
                self.vm.vcpu.get_regs().is_ok_and(|r| r.rdx & 0xffff == u64::from(port))
            }
            _ => false,
        }
    }

    /// Decodes the exception the stubs reported: the frame from the exception stack (whose
    /// place is fixed), the faulting address from CR2.
    fn fault(&self, vector: u8) -> Outcome {
        let Ok(sregs) = self.vm.vcpu.get_sregs() else {
            return Outcome::Misbehaved("guest faulted; its registers could not be read".into());
        };
        if sregs.cs.dpl != 0 {
            return Outcome::Misbehaved(format!(
                "guest wrote to the exception port {:#x} itself",
                layout::FAULT_PORT
            ));
        }
        let error_code = cpu::has_error_code(vector)
            .then(|| self.vm.ram().read_u64(layout::FAULT_FRAME_ERROR_CODE).ok())
            .flatten();
        let rip = self.vm.ram().read_u64(layout::FAULT_FRAME_RIP).unwrap_or(0);
        // Ring 3 has no I/O ports: a guest's own `out` to the exception port is a general
        // protection fault, whatever vector it claims. Say that the report was refused.
        if vector == 13 && self.writes_fault_port(rip) {
            return Outcome::Misbehaved(format!(
                "guest tried to forge an exception report (an `out` to the exception port {:#x} \
                 at rip {rip:#x}); the report was rejected",
                layout::FAULT_PORT
            ));
        }
        let address = (vector == 14).then_some(sregs.cr2);
        Outcome::Faulted(Fault { vector: Some(vector), rip, error_code, address })
    }
}
