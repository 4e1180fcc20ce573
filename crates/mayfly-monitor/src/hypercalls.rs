//! The hypercall table: decode, validate, act.
//!
//! Each handler copies its argument structure out of guest memory once, validates the copy, and
//! writes `OUT` fields back. A malformed request whose structure can be reached gets a status
//! code; one whose structure cannot (a bad pointer, an unknown number) stops the guest with a
//! diagnosis. Nothing here panics on guest input.

use crate::guest_memory::GuestRam;
use crate::net::Nic;
use crate::outcome::Outcome;
use crate::plan::MemoryPlan;
use crate::volume::Volume;
use mayfly_abi::hypercall::{EXIT_MESSAGE_MAX, HYPERCALL_COUNT, WAIT_FOREVER, WAIT_TIMER_ONLY};
use mayfly_abi::layout::DOORBELL_ADDR;
use mayfly_abi::manifest::Device;
use mayfly_abi::{ExitArgs, ExitReason, Hypercall, Status, WaitArgs};
use std::time::{Duration, Instant};

/// What the run loop does after a hypercall.
#[derive(Debug)]
pub enum Step {
    /// Resume the guest.
    Continue,
    /// Stop the guest with this outcome.
    Stop(Outcome),
}

fn misbehaved(what: String) -> Step {
    Step::Stop(Outcome::Misbehaved(what))
}

/// The devices a hypercall may use.
#[derive(Default)]
pub struct Devices<'a> {
    /// The NIC, if attached.
    pub nic: Option<&'a mut Nic>,
    /// The volume, if attached.
    pub volume: Option<&'a Volume>,
}

/// Serves the hypercall rung by a store of `size` bytes of `data` (its first four, if longer)
/// at guest address `addr`. `plan` says which memory the guest may write (results are only
/// written there).
pub fn dispatch(
    ram: &GuestRam,
    plan: &MemoryPlan,
    addr: u64,
    data: u32,
    size: usize,
    deadline: Option<(Instant, Duration)>,
    devices: Devices<'_>,
) -> Step {
    let Devices { nic, volume } = devices;
    let Some(call) = Hypercall::from_doorbell(addr) else {
        return misbehaved(format!(
            "guest wrote to {addr:#x}, which is no hypercall (hypercall n is a 32-bit store at \
             {DOORBELL_ADDR:#x} + 4 * n, n < {HYPERCALL_COUNT})"
        ));
    };
    if size != 4 {
        return misbehaved(format!(
            "hypercall {call:?} made with a {size}-byte store; use 32 bits"
        ));
    }
    let args = u64::from(data);
    match call {
        Hypercall::Exit => exit(ram, args),
        Hypercall::Wait => wait(ram, plan, args, deadline, nic),
        Hypercall::ConsoleFlush => Step::Continue,
        Hypercall::Block => match volume {
            Some(volume) => match volume.serve(ram, plan, args) {
                Ok(()) => Step::Continue,
                Err(report) => misbehaved(report),
            },
            None => misbehaved("hypercall Block without a volume (run with --volume)".into()),
        },
    }
}

fn read_args<T>(ram: &GuestRam, call: Hypercall, addr: u64) -> Result<T, Step>
where
    crate::guest_memory::Plain<T>: vm_memory::ByteValued,
{
    let len = std::mem::size_of::<T>() as u64;
    ram.check_guest_range(addr, len)
        .and_then(|()| ram.read::<T>(addr))
        .map_err(|bad| misbehaved(format!("hypercall {call:?}: arguments at {:#x}: {bad}", addr)))
}

fn exit(ram: &GuestRam, addr: u64) -> Step {
    let args: ExitArgs = match read_args(ram, Hypercall::Exit, addr) {
        Ok(args) => args,
        Err(step) => return step,
    };
    match ExitReason::from_raw(args.reason) {
        Some(ExitReason::Normal) => Step::Stop(Outcome::Exited(args.status)),
        Some(ExitReason::Panic) => {
            let message = read_message(ram, args.message, args.message_len);
            Step::Stop(Outcome::Panicked { status: args.status, message })
        }
        None => misbehaved(format!("hypercall Exit with unknown reason {}", args.reason)),
    }
}

/// Copies the guest's message, truncated and made printable on one line.
fn read_message(ram: &GuestRam, addr: u64, len: u32) -> String {
    let len = len.min(EXIT_MESSAGE_MAX);
    if ram.check_guest_range(addr, u64::from(len)).is_err() {
        return format!("(message at invalid address {addr:#x})");
    }
    let bytes = ram.read_bytes(addr, len as usize).unwrap_or_default();
    String::from_utf8_lossy(&bytes).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn wait(
    ram: &GuestRam,
    plan: &MemoryPlan,
    addr: u64,
    deadline: Option<(Instant, Duration)>,
    mut nic: Option<&mut Nic>,
) -> Step {
    // Wait writes its result back: the structure must be memory the guest could write itself.
    if !plan.guest_writable(addr, std::mem::size_of::<WaitArgs>() as u64) {
        return misbehaved(format!(
            "hypercall Wait: arguments at {addr:#x} are not in the guest's read-write memory \
             (the monitor writes the result there)"
        ));
    }
    let mut args: WaitArgs = match read_args(ram, Hypercall::Wait, addr) {
        Ok(args) => args,
        Err(step) => return step,
    };
    let start = Instant::now();
    // A timeout too large to represent is no deadline at all.
    let guest_until = match args.timeout_ns {
        WAIT_FOREVER => None,
        ns => start.checked_add(Duration::from_nanos(ns)),
    };
    let timer_only = args.flags & WAIT_TIMER_ONLY != 0;
    if guest_until.is_none() && (nic.is_none() || timer_only) {
        return misbehaved("guest waits forever with no device to wake it (deadlock)".into());
    }
    let until = match (guest_until, deadline) {
        (Some(g), Some((d, _))) => Some(g.min(d)),
        (g, d) => g.or(d.map(|(d, _)| d)),
    };
    loop {
        let mut ready = 0;
        if let Some(nic) = nic.as_deref_mut() {
            match nic.pump(ram) {
                Ok(true) => ready |= 1 << Device::Net as u32,
                Ok(false) => {}
                Err(e) => return misbehaved(e.to_string()),
            }
        }
        let now = Instant::now();
        if let Some((at, after)) = deadline
            && now >= at
        {
            return Step::Stop(Outcome::TimedOut(after));
        }
        if (ready != 0 && !timer_only) || until.is_some_and(|u| now >= u) {
            args.ready = ready;
            args.status = Status::Ok as i32;
            return match ram.write(addr, args) {
                Ok(()) => Step::Continue,
                Err(bad) => misbehaved(format!("hypercall Wait: {bad}")),
            };
        }
        let remaining = until.map_or(Duration::from_secs(60), |u| u.saturating_duration_since(now));
        match nic.as_deref_mut() {
            Some(nic) => nic.block(remaining),
            None => {
                let _ = crate::sys::poll(&mut [], remaining);
            }
        }
    }
}
