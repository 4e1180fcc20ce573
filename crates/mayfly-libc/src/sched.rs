//! Threads on the one vCPU: a cooperative scheduler. A thread runs until it blocks (a futex
//! wait, a sleep, a join), yields or ends; then the next ready thread runs, in turn. When none
//! is ready the vCPU sleeps in the monitor until the earliest deadline; when none has a deadline
//! either, every thread waits for another forever, and the guest stops with a deadlock report.
//! There is no preemption: a thread that computes without blocking keeps the CPU.
//!
//! A switch saves the callee-saved registers on the old stack, loads the new thread's stack and
//! points `%fs` at its TLS (`wrfsbase`, no exit to the monitor).

use crate::errno;
use crate::tls::Tls;
use alloc::alloc::{Layout, alloc, dealloc};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::future::Future;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::{AtomicPtr, Ordering};
use core::task::{Context, Poll, Waker};

/// A thread's entry point, as `pthread_create` takes it.
pub type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;
/// A thread-specific data destructor.
pub type KeyDestructor = extern "C" fn(*mut c_void);

/// Most thread-specific data keys (glibc's PTHREAD_KEYS_MAX is 1024; std needs a handful).
pub const KEYS_MAX: usize = 128;
/// Written at the lowest word of each thread stack this library allocates, and checked at
/// every switch away from the thread: a thread that ran past the end of its stack (there is
/// no guard page) is caught when it next blocks or yields, before it can run on.
const STACK_CANARY: u64 = 0x6d61_7966_6c79_5354;

/// Rounds of key destructors at thread exit (PTHREAD_DESTRUCTOR_ITERATIONS).
const DESTRUCTOR_ROUNDS: usize = 4;

#[derive(Clone, PartialEq, Eq)]
enum State {
    Ready,
    /// Waiting on the futex word at `addr` until woken or `deadline` (ns since boot).
    Futex {
        addr: usize,
        deadline: Option<u64>,
    },
    /// Sleeping until the deadline (ns since boot).
    Sleep(u64),
    /// Waiting for thread `id` to end.
    Join(usize),
    /// Waiting for the network (its waker sets the flag) until the deadline, if any.
    Io {
        flag: Arc<IoFlag>,
        deadline: Option<u64>,
    },
    Done,
}

/// A thread.
pub struct Thread {
    pub id: usize,
    tls: Tls,
    /// The stack this library allocated (none for the main thread's, the monitor's).
    stack: Option<(*mut u8, Layout)>,
    pub stack_addr: usize,
    pub stack_size: usize,
    /// The saved stack pointer while switched out.
    rsp: usize,
    state: State,
    /// Whether a futex wake (not a timeout) ended the last futex wait.
    woken: bool,
    start: Option<(StartFn, *mut c_void)>,
    result: *mut c_void,
    detached: bool,
    pub errno: c_int,
    pub keys: [*mut c_void; KEYS_MAX],
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some((base, layout)) = self.stack {
            // SAFETY: allocated in `spawn` with this layout; the thread is done and is not the
            // running one, so nothing uses the stack.
            unsafe { dealloc(base, layout) };
        }
    }
}

struct Scheduler {
    /// Boxed so that a thread stays put while the vector changes (CURRENT points into it).
    #[allow(clippy::vec_box)]
    threads: Vec<Box<Thread>>,
    next_id: usize,
    key_used: [bool; KEYS_MAX],
    key_destructors: [Option<KeyDestructor>; KEYS_MAX],
}

struct Global(UnsafeCell<Scheduler>);

// SAFETY: one vCPU and no preemption: the scheduler is only touched by the running thread, and
// no reference to it is held across a switch.
unsafe impl Sync for Global {}

static SCHEDULER: Global = Global(UnsafeCell::new(Scheduler {
    threads: Vec::new(),
    next_id: 1,
    key_used: [false; KEYS_MAX],
    key_destructors: [None; KEYS_MAX],
}));

/// The running thread (null until [`init`]).
static CURRENT: AtomicPtr<Thread> = AtomicPtr::new(core::ptr::null_mut());

fn scheduler() -> &'static mut Scheduler {
    // SAFETY: see `Global`; callers keep the reference within one stretch without a switch.
    unsafe { &mut *SCHEDULER.0.get() }
}

/// The running thread, if threads are set up.
pub fn current() -> Option<&'static mut Thread> {
    // SAFETY: CURRENT is null or points into a live boxed thread (the running one is never freed).
    unsafe { CURRENT.load(Ordering::Relaxed).as_mut() }
}

fn running() -> &'static mut Thread {
    match current() {
        Some(thread) => thread,
        None => fatal(b"threads used before the thread library started"),
    }
}

fn fatal(message: &[u8]) -> ! {
    mayfly::libc_host::exit(134, mayfly::abi::ExitReason::Panic, message)
}

fn now_ns() -> u64 {
    u64::try_from(mayfly::time::Instant::now().since_boot().as_nanos()).unwrap_or(u64::MAX)
}

fn new_thread(
    tls: Tls,
    stack: Option<(*mut u8, Layout)>,
    stack_addr: usize,
    stack_size: usize,
) -> Box<Thread> {
    let s = scheduler();
    let id = s.next_id;
    s.next_id += 1;
    Box::new(Thread {
        id,
        tls,
        stack,
        stack_addr,
        stack_size,
        rsp: 0,
        state: State::Ready,
        woken: false,
        start: None,
        result: core::ptr::null_mut(),
        detached: false,
        errno: 0,
        keys: [core::ptr::null_mut(); KEYS_MAX],
    })
}

/// Makes the running code the main thread (id 1), with its TLS, on the monitor's stack.
pub fn init() {
    let Some(tls) = Tls::new() else { fatal(b"no memory for thread-local storage") };
    tls.activate();
    let info = mayfly::libc_host::boot_info();
    let size = mayfly::abi::layout::STACK_SIZE as usize;
    let top = info.stack_top as usize;
    let mut main = new_thread(tls, None, top.saturating_sub(size), size);
    CURRENT.store(&mut *main, Ordering::Relaxed);
    scheduler().threads.push(main);
}

/// Starts a thread running `start(arg)` on a new stack of `stack_size` bytes; returns its id.
pub fn spawn(start: StartFn, arg: *mut c_void, stack_size: usize) -> Result<usize, c_int> {
    let size = stack_size.max(16 * 1024).next_multiple_of(4096);
    let layout = Layout::from_size_align(size, 4096).map_err(|_| errno::EINVAL)?;
    let tls = Tls::new().ok_or(errno::EAGAIN)?;
    // SAFETY: a non-zero layout.
    let base = unsafe { alloc(layout) };
    if base.is_null() {
        return Err(errno::EAGAIN);
    }
    // SAFETY: `base` is the 8-aligned start of the new stack.
    unsafe { base.cast::<u64>().write(STACK_CANARY) };
    let mut thread = new_thread(tls, Some((base, layout)), base as usize, size);
    thread.start = Some((start, arg));
    // The first switch to the thread pops six callee-saved registers and "returns" into
    // `thread_entry` with the stack aligned as after a call.
    let top = (base as usize + size) & !15;
    let frame = [0usize, 0, 0, 0, 0, 0, thread_entry as *const () as usize, 0];
    let rsp = top - size_of_val(&frame);
    // SAFETY: [rsp, top) lies inside the new stack, 8-aligned.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), rsp as *mut usize, frame.len()) };
    thread.rsp = rsp;
    let id = thread.id;
    scheduler().threads.push(thread);
    Ok(id)
}

extern "C" fn thread_entry() -> ! {
    let me = running();
    let Some((start, arg)) = me.start.take() else { fatal(b"a thread started twice") };
    let result = start(arg);
    exit_current(result)
}

/// Ends the running thread with `result`: runs its key destructors, wakes its joiner.
pub fn exit_current(result: *mut c_void) -> ! {
    let me = running();
    if me.id == 1 {
        // The main thread ending ends the program, as in C.
        crate::process::exit(0);
    }
    for _ in 0..DESTRUCTOR_ROUNDS {
        let mut ran = false;
        for key in 0..KEYS_MAX {
            let value = core::mem::replace(&mut running().keys[key], core::ptr::null_mut());
            if let (false, Some(destructor)) = (value.is_null(), scheduler().key_destructors[key]) {
                destructor(value);
                ran = true;
            }
        }
        if !ran {
            break;
        }
    }
    let me = running();
    me.result = result;
    me.state = State::Done;
    let id = me.id;
    for thread in scheduler().threads.iter_mut() {
        if thread.state == State::Join(id) {
            thread.state = State::Ready;
        }
    }
    schedule();
    fatal(b"a finished thread was resumed")
}

/// Frees detached threads that have ended (never the running one).
fn reap() {
    let me = CURRENT.load(Ordering::Relaxed);
    scheduler()
        .threads
        .retain(|t| !(t.detached && t.state == State::Done && !core::ptr::eq(&**t, me)));
}

/// Lets other threads run until the running one is ready again (at once if it is ready and
/// nobody else is).
fn schedule() {
    if let Some(me) = current() {
        check_stack(me);
    }
    loop {
        reap();
        // The network stack runs at every turn (frames in, frames out, wakers).
        let net_deadline = crate::net::poll();
        let now = now_ns();
        let s = scheduler();
        for thread in s.threads.iter_mut() {
            match &thread.state {
                State::Futex { deadline: Some(at), .. } | State::Sleep(at) if *at <= now => {
                    thread.state = State::Ready;
                    thread.woken = false;
                }
                State::Io { flag, deadline }
                    if flag.0.swap(false, Ordering::AcqRel)
                        || deadline.is_some_and(|at| at <= now) =>
                {
                    thread.state = State::Ready;
                }
                _ => {}
            }
        }
        let me = CURRENT.load(Ordering::Relaxed);
        let n = s.threads.len();
        let mine = s.threads.iter().position(|t| core::ptr::eq(&**t, me)).unwrap_or(0);
        for k in 1..=n {
            let i = (mine + k) % n;
            if s.threads[i].state == State::Ready {
                if i != mine {
                    switch_to(&mut s.threads[i]);
                }
                return;
            }
        }
        let io_waiters = s.threads.iter().any(|t| matches!(t.state, State::Io { .. }));
        let earliest = s
            .threads
            .iter()
            .filter_map(|t| match &t.state {
                State::Futex { deadline, .. } | State::Io { deadline, .. } => *deadline,
                State::Sleep(at) => Some(*at),
                _ => None,
            })
            .chain(net_deadline.filter(|_| io_waiters))
            .min();
        match earliest {
            Some(at) => {
                mayfly::libc_host::wait(at.saturating_sub(now), !io_waiters);
            }
            // Threads waiting for the network wait for a frame, however long it takes.
            None if io_waiters => {
                mayfly::libc_host::wait(mayfly::abi::hypercall::WAIT_FOREVER, false);
            }
            None => fatal(b"deadlock: every thread waits for another (futex, join) forever"),
        }
    }
}

/// Stops the guest if thread `thread` has written past the end of its stack.
fn check_stack(thread: &Thread) {
    if let Some((base, _)) = thread.stack {
        // SAFETY: `base` is the start of the thread's live stack, where `spawn` put the canary.
        if unsafe { base.cast::<u64>().read_volatile() } != STACK_CANARY {
            // Formatted without the heap, which the overflow may have damaged.
            let mut message = [0u8; 96];
            let mut len = 0;
            let mut push = |bytes: &[u8]| {
                for &b in bytes {
                    if let Some(slot) = message.get_mut(len) {
                        *slot = b;
                        len += 1;
                    }
                }
            };
            push(b"thread ");
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut id = thread.id;
            loop {
                at -= 1;
                digits[at] = b'0' + (id % 10) as u8;
                id /= 10;
                if id == 0 {
                    break;
                }
            }
            push(&digits[at..]);
            push(b" overflowed its stack (no guard page: the heap may be damaged)");
            fatal(&message[..len]);
        }
    }
}

/// Switches from the running thread to `next` (returns when someone switches back).
fn switch_to(next: &mut Thread) {
    let me = CURRENT.load(Ordering::Relaxed);
    CURRENT.store(next, Ordering::Relaxed);
    next.tls.activate();
    let next_rsp = next.rsp;
    // SAFETY: `me` is the running thread (live: the running thread is never freed); `next_rsp`
    // is the stack pointer `next` saved when it switched out (or its initial frame).
    unsafe { switch_stacks(&raw mut (*me).rsp, next_rsp) };
}

/// Saves the callee-saved registers and the stack pointer to `*save`, then resumes the stack
/// at `load` (which was saved the same way, or is a new thread's initial frame).
#[unsafe(naked)]
unsafe extern "C" fn switch_stacks(save: *mut usize, load: usize) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Lets the other ready threads run first.
pub fn yield_now() {
    if current().is_some() {
        schedule();
    }
}

/// Blocks the running thread until `deadline` (ns since boot).
pub fn sleep_until(deadline: u64) {
    if deadline <= now_ns() {
        return;
    }
    running().state = State::Sleep(deadline);
    schedule();
}

/// Sleeps for `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    sleep_until(now_ns().saturating_add(ns));
}

/// The futex wait: blocks while `*addr == expected`, until a wake or `deadline`.
pub fn futex_wait(addr: *const u32, expected: u32, deadline: Option<u64>) -> Result<(), c_int> {
    // SAFETY: the caller passes a readable futex word (std's own atomics).
    if unsafe { core::ptr::read_volatile(addr) } != expected {
        return Err(errno::EAGAIN);
    }
    let me = running();
    me.state = State::Futex { addr: addr as usize, deadline };
    me.woken = false;
    schedule();
    if running().woken { Ok(()) } else { Err(errno::ETIMEDOUT) }
}

/// The futex wake: readies at most `count` threads waiting on `addr`; returns how many.
pub fn futex_wake(addr: *const u32, count: usize) -> usize {
    let mut woken = 0;
    for thread in scheduler().threads.iter_mut() {
        if woken == count {
            break;
        }
        if matches!(thread.state, State::Futex { addr: a, .. } if a == addr as usize) {
            thread.state = State::Ready;
            thread.woken = true;
            woken += 1;
        }
    }
    woken
}

/// Waits for thread `id` to end and returns its result; frees it.
pub fn join(id: usize) -> Result<*mut c_void, c_int> {
    if running().id == id {
        return Err(errno::EDEADLK);
    }
    loop {
        let s = scheduler();
        let Some(at) = s.threads.iter().position(|t| t.id == id) else { return Err(errno::ESRCH) };
        let target = &s.threads[at];
        if target.detached {
            return Err(errno::EINVAL);
        }
        if target.state == State::Done {
            let result = target.result;
            s.threads.remove(at);
            return Ok(result);
        }
        running().state = State::Join(id);
        schedule();
    }
}

/// Lets thread `id` be freed when it ends, unjoined.
pub fn detach(id: usize) -> Result<(), c_int> {
    let s = scheduler();
    let thread = s.threads.iter_mut().find(|t| t.id == id).ok_or(errno::ESRCH)?;
    if thread.detached {
        return Err(errno::EINVAL);
    }
    thread.detached = true;
    reap();
    Ok(())
}

/// The stack of thread `id`: (lowest address, size).
pub fn stack_of(id: usize) -> Option<(usize, usize)> {
    scheduler().threads.iter().find(|t| t.id == id).map(|t| (t.stack_addr, t.stack_size))
}

/// Allocates a thread-specific data key.
pub fn key_create(destructor: Option<KeyDestructor>) -> Result<usize, c_int> {
    let s = scheduler();
    let index = s.key_used.iter().position(|used| !used).ok_or(errno::EAGAIN)?;
    s.key_used[index] = true;
    s.key_destructors[index] = destructor;
    for thread in s.threads.iter_mut() {
        thread.keys[index] = core::ptr::null_mut();
    }
    Ok(index)
}

/// Frees key `index` (if allocated).
pub fn key_delete(index: usize) -> Result<(), c_int> {
    let used = scheduler().key_used.get_mut(index).filter(|used| **used).ok_or(errno::EINVAL)?;
    *used = false;
    Ok(())
}

/// Whether key `index` is allocated.
pub fn key_valid(index: usize) -> bool {
    scheduler().key_used.get(index).copied().unwrap_or(false)
}

/// The waker of a thread waiting for the network: sets its flag.
pub struct IoFlag(AtomicBool);

impl IoFlag {
    /// An unset flag.
    pub fn new() -> IoFlag {
        IoFlag(AtomicBool::new(false))
    }
}

impl Default for IoFlag {
    fn default() -> IoFlag {
        IoFlag::new()
    }
}

/// Parks the running thread until `flag`'s waker fires or `deadline` (ns since boot) passes.
pub fn park_io(flag: &Arc<IoFlag>, deadline: Option<u64>) {
    if current().is_none() {
        return;
    }
    running().state = State::Io { flag: flag.clone(), deadline };
    schedule();
}

impl PartialEq for IoFlag {
    fn eq(&self, other: &IoFlag) -> bool {
        core::ptr::eq(self, other)
    }
}

impl Eq for IoFlag {}

impl Wake for IoFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `future` (an operation of the library OS's network stack) to completion in the calling
/// thread, letting other threads run while it waits; `None` if `deadline` (ns since boot)
/// passes first, or at once if `deadline` is `Some(0)` (a non-blocking attempt).
pub fn block_on<F: Future>(future: F, deadline: Option<u64>) -> Option<F::Output> {
    let mut future = core::pin::pin!(future);
    let flag = Arc::new(IoFlag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            // Let what the operation queued (frames, window updates) go out.
            crate::net::poll();
            return Some(value);
        }
        if deadline.is_some_and(|at| at <= now_ns()) {
            return None;
        }
        current()?;
        running().state = State::Io { flag: flag.clone(), deadline };
        schedule();
    }
}
