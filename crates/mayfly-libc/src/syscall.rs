//! `syscall(number, ...)` (std makes a few calls this way: futex, getrandom, statx...) and
//! `getrandom`.

use crate::errno;
use core::ffi::{c_long, c_uint, c_void};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const SYS_GETTID: c_long = 186;
const SYS_FUTEX: c_long = 202;
const SYS_GETRANDOM: c_long = 318;
/// std tries it for `fs::copy` and falls back to read/write on ENOSYS: not worth a report.
const SYS_COPY_FILE_RANGE: c_long = 326;

const FUTEX_WAIT: c_long = 0;
const FUTEX_WAKE: c_long = 1;
const FUTEX_WAIT_BITSET: c_long = 9;
const FUTEX_WAKE_BITSET: c_long = 10;
const FUTEX_CMD_MASK: c_long = 0x7f;
const FUTEX_CLOCK_REALTIME: c_long = 256;

/// Fills `buf` from the library OS's generator (seeded by host entropy at boot); never blocks.
///
/// # Safety
/// `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getrandom(buf: *mut c_void, len: usize, _flags: c_uint) -> isize {
    // getrandom 0.4 probes with a zero-length request.
    if len == 0 {
        return 0;
    }
    // SAFETY: C contract.
    let bytes = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    mayfly::random::fill(bytes);
    len as isize
}

/// The system-call numbers already reported as unavailable: one bit each below 512 (all of
/// Linux's), and up to 16 other numbers.
static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static REPORTED_OTHERS: [AtomicI64; 16] = [const { AtomicI64::new(i64::MIN) }; 16];

/// `syscall(number, a1, ..., a5)`. C declares it variadic; on x86-64 integer arguments are
/// passed in the same registers either way, so a fixed signature reads them correctly.
///
/// # Safety
/// The arguments follow the contract of system call `number`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    _a5: c_long,
) -> c_long {
    match number {
        // SAFETY: getrandom(buf, len, flags): the caller's contract.
        SYS_GETRANDOM => unsafe {
            getrandom(a1 as *mut c_void, a2 as usize, a3 as c_uint) as c_long
        },
        SYS_GETTID => c_long::from(crate::thread::gettid()),
        // SAFETY: futex(addr, op, val, timeout): the caller's contract.
        SYS_FUTEX => unsafe {
            futex(a1 as *const u32, a2, a3 as u32, a4 as *const crate::time::Timespec)
        },
        SYS_COPY_FILE_RANGE => c_long::from(errno::fail(errno::ENOSYS)),
        _ => {
            report_unknown(number);
            c_long::from(errno::fail(errno::ENOSYS))
        }
    }
}

/// Futex operations over the scheduler: a wait blocks the calling thread (EAGAIN if the word
/// no longer holds `val`, ETIMEDOUT at the timeout), a wake readies waiters.
///
/// # Safety
/// `addr` is readable; `timeout` is null or readable.
unsafe fn futex(
    addr: *const u32,
    op: c_long,
    val: u32,
    timeout: *const crate::time::Timespec,
) -> c_long {
    match op & FUTEX_CMD_MASK {
        command @ (FUTEX_WAIT | FUTEX_WAIT_BITSET) => {
            // SAFETY: `timeout` is null or readable (caller's contract).
            let deadline = match unsafe { timeout.as_ref() } {
                None => None,
                // FUTEX_WAIT takes a relative time, FUTEX_WAIT_BITSET an absolute one on the
                // monotonic clock, or on the wall clock with FUTEX_CLOCK_REALTIME.
                Some(t) => match crate::time::deadline_ns(
                    t,
                    command == FUTEX_WAIT_BITSET,
                    op & FUTEX_CLOCK_REALTIME != 0,
                ) {
                    Some(at) => Some(at),
                    None => return c_long::from(errno::fail(errno::EINVAL)),
                },
            };
            match crate::sched::futex_wait(addr, val, deadline) {
                Ok(()) => 0,
                Err(err) => c_long::from(errno::fail(err)),
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            crate::sched::futex_wake(addr, usize::try_from(val).unwrap_or(usize::MAX)) as c_long
        }
        _ => {
            static UNKNOWN_OP: core::sync::atomic::AtomicBool =
                core::sync::atomic::AtomicBool::new(false);
            crate::report::once(&UNKNOWN_OP, b"this futex operation", b"ENOSYS");
            c_long::from(errno::fail(errno::ENOSYS))
        }
    }
}

/// Prints `mayfly: syscall <n> is not available in a unikernel (ENOSYS)` once per number.
fn report_unknown(number: c_long) {
    let first = match usize::try_from(number).ok().filter(|n| *n < 512) {
        Some(n) => {
            let bit = 1u64 << (n % 64);
            REPORTED[n / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0
        }
        None => {
            let seen = REPORTED_OTHERS.iter().any(|slot| slot.load(Ordering::Relaxed) == number);
            if !seen {
                // Remember it if there is room (if not, it is reported again next time).
                let free = i64::MIN;
                REPORTED_OTHERS.iter().any(|slot| {
                    slot.compare_exchange(free, number, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                });
            }
            !seen
        }
    };
    if first {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = number.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let console = mayfly::libc_host::console_write;
        console(b"mayfly: syscall ");
        if number < 0 {
            console(b"-");
        }
        console(&digits[at..]);
        console(b" is not available in a unikernel (ENOSYS)\n");
    }
}
