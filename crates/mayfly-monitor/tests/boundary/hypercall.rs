//! The hypercall dispatcher: every hypercall number (and non-numbers), every store width, and
//! argument structures placed anywhere (inside memory, across its end, in the reserved area,
//! beyond it) with fuzzed fields. The oracle says which stop or answer each case must get, and
//! the guest memory around the arguments and the message is compared before and after: only a
//! Wait's OUT fields may change.

use super::Reader;
use mayfly_abi::hypercall::{EXIT_MESSAGE_MAX, HYPERCALL_STRIDE, WAIT_FOREVER, WAIT_TIMER_ONLY};
use mayfly_abi::layout::{DOORBELL_ADDR, RESERVED_END};
use mayfly_abi::{ExitArgs, WaitArgs};
use mayfly_monitor::Outcome;
use mayfly_monitor::guest_memory::GuestRam;
use mayfly_monitor::hypercalls::{self, Step};
use mayfly_monitor::image::{Image, Segment, SegmentFlags};
use mayfly_monitor::plan::MemoryPlan;
use std::time::{Duration, Instant};

/// Guest memory of every case.
pub const MEM: u64 = 8 << 20;
/// The run's deadline for a Wait of at most 1 ms (which must answer long before it); longer
/// Waits get a deadline already passed, which must stop them at once.
const DEADLINE: Duration = Duration::from_secs(10);
/// Bytes compared on each side of the arguments and the message.
const MARGIN: u64 = 256;

#[derive(Debug, Clone)]
pub struct HypercallCase {
    /// Offset of the store in the doorbell page.
    pub offset: u64,
    /// Store width.
    pub size: usize,
    /// Where the argument structure is (the stored value).
    pub at: u32,
    pub exit: ExitArgs,
    pub wait: WaitArgs,
    /// The exit message's bytes, written at `exit.message` when that is in memory.
    pub message: Vec<u8>,
}

/// A guest address: mostly valid, often at an edge (reserved area, end of memory, past it).
pub fn place(r: &mut Reader, len: u64) -> u64 {
    match r.pick(9) {
        7 => TEXT + u64::from(r.u16()) % 0x3000,
        0..=2 => RESERVED_END + u64::from(r.u32()) % (MEM - RESERVED_END - len),
        3 => MEM - len - u64::from(r.pick(4)) + u64::from(r.pick(8)),
        4 => RESERVED_END - u64::from(r.pick(64)),
        5 => u64::from(r.u16()),
        6 => MEM + u64::from(r.u16()),
        _ => u64::from(r.u32()),
    }
}

impl HypercallCase {
    pub fn decode(r: &mut Reader) -> HypercallCase {
        let offset = match r.pick(8) {
            0..=5 => u64::from(r.pick(3)) * HYPERCALL_STRIDE,
            6 => u64::from(r.pick(3)) * HYPERCALL_STRIDE + 1 + u64::from(r.pick(3)),
            _ => u64::from(r.u16()) % 0x1100,
        };
        let size = if r.pick(8) == 0 { usize::from(r.pick(9)) } else { 4 };
        let at = u32::try_from(place(r, 32)).unwrap_or(u32::MAX);
        let reason = match r.pick(4) {
            0 => 0,
            1 | 2 => 1,
            _ => r.u32(),
        };
        let message_len = match r.pick(4) {
            0 => 0,
            1 | 2 => u32::from(r.u16()) % (EXIT_MESSAGE_MAX + 64),
            _ => r.u32(),
        };
        let message = place(r, u64::from(message_len.min(EXIT_MESSAGE_MAX)));
        let exit =
            ExitArgs { status: r.u32() as i32, reason, message, message_len, reserved: r.u32() };
        let timeout_ns = match r.pick(4) {
            0 => u64::from(r.u32()) % 1_000_000,
            1 => WAIT_FOREVER,
            2 => 1_000_000_000 + u64::from(r.u32()),
            _ => r.u64().max(1_000_000_000),
        };
        let flags = if r.pick(2) == 0 { WAIT_TIMER_ONLY } else { r.u32() };
        let wait = WaitArgs { timeout_ns, ready: r.u64(), status: r.u32() as i32, flags };
        let text = r.bytes(64);
        let message_bytes =
            text.iter().cycle().take(usize::from(r.u16()) % 1200).copied().collect();
        HypercallCase { offset, size, at, exit, wait, message: message_bytes }
    }
}

/// Where the case's image lies: text (r-x) at 1 MiB, one page of read-only data after it, then
/// writable data; the rest of memory is heap and stack (read-write).
const TEXT: u64 = 0x10_0000;
const RODATA: u64 = TEXT + 0x1000;
const DATA: u64 = RODATA + 0x1000;

/// The memory plan of that image in `MEM` bytes: the monitor writes Wait's result only into
/// memory this plan marks guest-writable.
pub fn plan() -> MemoryPlan {
    let segment = |start, write, exec| Segment {
        start,
        mem_size: 0x1000,
        file_offset: 0,
        file_size: 0,
        flags: SegmentFlags { write, exec },
    };
    let image = Image {
        entry: TEXT,
        segments: vec![
            segment(TEXT, false, true),
            segment(RODATA, false, false),
            segment(DATA, true, false),
        ],
        manifest: mayfly_abi::manifest::Manifest {
            abi_version: mayfly_abi::ABI_VERSION,
            devices: 0,
        },
    };
    MemoryPlan::new(&image, MEM, false).expect("the case's memory plan")
}

/// Whether `[addr, addr + len)` is guest memory the guest may write (not its text or rodata).
pub fn guest_writable(addr: u64, len: u64) -> bool {
    in_guest(addr, len) && (addr >= DATA || addr.saturating_add(len) <= TEXT)
}

pub fn in_guest(addr: u64, len: u64) -> bool {
    addr >= RESERVED_END && addr.checked_add(len).is_some_and(|end| end <= MEM)
}

/// The memory around `addr` (clamped to guest memory).
fn window(addr: u64, len: u64) -> (u64, u64) {
    let start = addr.saturating_sub(MARGIN).min(MEM);
    let end = addr.saturating_add(len).saturating_add(MARGIN).min(MEM);
    (start, end)
}

fn snapshot(ram: &GuestRam, (start, end): (u64, u64)) -> Vec<u8> {
    ram.read_bytes(start, usize::try_from(end - start).unwrap_or(0)).unwrap_or_default()
}

/// The message the monitor must report for an Exit with `args`.
fn expected_message(ram: &GuestRam, args: &ExitArgs) -> String {
    let len = args.message_len.min(EXIT_MESSAGE_MAX);
    if !in_guest(args.message, u64::from(len)) {
        return format!("(message at invalid address {:#x})", args.message);
    }
    let bytes = ram.read_bytes(args.message, len as usize).unwrap_or_default();
    String::from_utf8_lossy(&bytes).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn misbehaved(step: &Step, needle: &str, case: &HypercallCase) {
    match step {
        Step::Stop(Outcome::Misbehaved(why)) => {
            assert!(why.contains(needle), "{case:?}: {why:?} lacks {needle:?}");
        }
        other => panic!("{case:?}: {other:?}, not a stop mentioning {needle:?}"),
    }
}

/// Runs the case: the step the oracle demands, and no change to guest memory outside a Wait's
/// OUT fields. Returns the path taken.
pub fn check(case: &HypercallCase) -> String {
    let ram = GuestRam::new(MEM).expect("guest memory");
    let at = u64::from(case.at);
    // Noise around both places, then the structures and the message themselves.
    let (exit_len, wait_len) = (size_of::<ExitArgs>() as u64, size_of::<WaitArgs>() as u64);
    let windows = [
        window(at, exit_len.max(wait_len)),
        window(case.exit.message, u64::from(EXIT_MESSAGE_MAX)),
    ];
    for (i, (start, end)) in windows.iter().enumerate() {
        let noise: Vec<u8> = (*start..*end).map(|a| (a as u8) ^ (i as u8 * 0x5a)).collect();
        let _ = ram.write_bytes(*start, &noise);
    }
    let _ = ram.write_bytes(case.exit.message, &case.message);
    let call =
        case.offset.is_multiple_of(HYPERCALL_STRIDE).then_some(case.offset / HYPERCALL_STRIDE);
    match call {
        Some(0) => {
            let _ = ram.write(at, case.exit);
        }
        Some(1) => {
            let _ = ram.write(at, case.wait);
        }
        _ => {}
    }
    let before: Vec<Vec<u8>> = windows.iter().map(|w| snapshot(&ram, *w)).collect();
    let expected_message = expected_message(&ram, &case.exit);
    let deadline = if case.wait.timeout_ns < 1_000_000 {
        Some((Instant::now() + DEADLINE, DEADLINE))
    } else {
        Some((Instant::now(), Duration::ZERO))
    };
    let plan = plan();
    let step = hypercalls::dispatch(
        &ram,
        &plan,
        DOORBELL_ADDR + case.offset,
        case.at,
        case.size,
        deadline,
        hypercalls::Devices::default(),
    );
    let short_wait = call == Some(1)
        && case.size == 4
        && guest_writable(at, wait_len)
        && case.wait.timeout_ns < 1_000_000;
    if short_wait && matches!(step, Step::Continue) {
        // The OUT fields: nothing ready (no device), status Ok. Put the IN values back so that
        // the comparison below covers every other byte.
        let got: WaitArgs = ram.read(at).expect("the arguments are in memory");
        assert_eq!((got.ready, got.status), (0, 0), "{case:?}: Wait's OUT fields");
        assert_eq!((got.timeout_ns, got.flags), (case.wait.timeout_ns, case.wait.flags));
        ram.write(at, case.wait).expect("the arguments are in memory");
    }
    let after: Vec<Vec<u8>> = windows.iter().map(|w| snapshot(&ram, *w)).collect();

    let label = match (call, case.size) {
        (None | Some(3..), _) => {
            misbehaved(&step, "which is no hypercall", case);
            "no hypercall"
        }
        (_, size) if size != 4 => {
            misbehaved(&step, "-byte store", case);
            "bad store width"
        }
        (Some(2), _) => {
            assert!(matches!(step, Step::Continue), "{case:?}: ConsoleFlush gave {step:?}");
            "console flush"
        }
        (Some(0), _) if !in_guest(at, exit_len) => {
            misbehaved(&step, "arguments at", case);
            "exit: bad arguments"
        }
        (Some(0), _) => match (case.exit.reason, &step) {
            (0, Step::Stop(Outcome::Exited(status))) => {
                assert_eq!(*status, case.exit.status, "{case:?}");
                "exit"
            }
            (1, Step::Stop(Outcome::Panicked { status, message })) => {
                assert_eq!((*status, message), (case.exit.status, &expected_message), "{case:?}");
                if message.starts_with("(message at invalid address") {
                    "panic: bad message"
                } else {
                    "panic"
                }
            }
            (0 | 1, other) => panic!("{case:?}: {other:?}"),
            _ => {
                misbehaved(&step, "unknown reason", case);
                "exit: unknown reason"
            }
        },
        (Some(_), _) if !in_guest(at, wait_len) => {
            misbehaved(&step, "arguments at", case);
            "wait: bad arguments"
        }
        (Some(_), _) if !guest_writable(at, wait_len) => {
            misbehaved(&step, "not in the guest's read-write memory", case);
            "wait: arguments in read-only memory"
        }
        (Some(_), _) if case.wait.timeout_ns == WAIT_FOREVER => {
            misbehaved(&step, "deadlock", case);
            "wait: forever without a device"
        }
        (Some(_), _) if case.wait.timeout_ns < 1_000_000 => {
            assert!(matches!(step, Step::Continue), "{case:?}: a short Wait gave {step:?}");
            "wait: answered"
        }
        (Some(_), _) => {
            assert!(matches!(step, Step::Stop(Outcome::TimedOut(_))), "{case:?}: {step:?}");
            "wait: run deadline"
        }
    };
    assert!(after == before, "{case:?}: guest memory changed outside a Wait's OUT fields");
    label.into()
}

pub fn check_bytes(bytes: &[u8]) -> String {
    check(&HypercallCase::decode(&mut Reader::new(bytes)))
}
