//! The epoll family and eventfd, for mio (tokio's I/O driver): readiness of sockets comes from
//! the library OS's network stack, reported edge-triggered (a readiness is reported once, then
//! again only after the socket was seen not ready, or an operation on it read or wrote some
//! bytes or hit EAGAIN), which is
//! what mio asks for (EPOLLET) and what keeps an idle event loop asleep. A blocked
//! `epoll_wait` parks its thread until a socket's waker or an eventfd write readies it, or
//! its timeout passes; with nothing else to run the vCPU sleeps in the monitor.

use crate::errno;
use crate::fs::{Entry, fs};
use crate::net::{Socket, with_object};
use crate::sched::IoFlag;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ffi::c_int;
use core::task::{Context, Waker};

const EPOLLIN: u32 = 0x1;
const EPOLLOUT: u32 = 0x4;
const EPOLL_CTL_ADD: c_int = 1;
const EPOLL_CTL_DEL: c_int = 2;
const EPOLL_CTL_MOD: c_int = 3;
const EFD_NONBLOCK: c_int = 0o4000;

/// `struct epoll_event` (packed on x86-64).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct EpollEvent {
    events: u32,
    data: u64,
}

/// An epoll instance: the descriptors watched, with their event masks and user data, and the
/// threads blocked in `epoll_wait` on it (a change of the interests wakes them to look again).
struct Epoll {
    interests: BTreeMap<c_int, (u32, u64)>,
    waiters: Vec<Waker>,
}

/// An eventfd: a counter; writes wake whoever waits for it.
pub struct EventFd {
    counter: u64,
    pub nonblocking: bool,
    /// Bumped by every write (each write is an edge for epoll).
    writes: u64,
    reported_writes: u64,
    wakers: Vec<Waker>,
}

fn now_ns() -> u64 {
    u64::try_from(mayfly::time::Instant::now().since_boot().as_nanos()).unwrap_or(u64::MAX)
}

fn ret(result: Result<c_int, c_int>) -> c_int {
    result.unwrap_or_else(errno::fail)
}

#[unsafe(no_mangle)]
pub extern "C" fn epoll_create1(_flags: c_int) -> c_int {
    crate::net::install_hooks();
    let epoll: Box<dyn core::any::Any> =
        Box::new(Epoll { interests: BTreeMap::new(), waiters: Vec::new() });
    ret(fs().add(Entry::Socket(epoll)))
}

#[unsafe(no_mangle)]
pub extern "C" fn epoll_create(size: c_int) -> c_int {
    if size <= 0 {
        return errno::fail(errno::EINVAL);
    }
    epoll_create1(0)
}

/// # Safety
/// `event` is readable (for ADD and MOD).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *const EpollEvent,
) -> c_int {
    let wanted = if op == EPOLL_CTL_DEL || event.is_null() {
        None
    } else {
        // SAFETY: C contract.
        Some(unsafe { event.read_unaligned() })
    };
    if fd == epfd {
        return errno::fail(errno::EINVAL);
    }
    let result = with_object(epfd, |epoll: &mut Epoll| match (op, wanted) {
        (EPOLL_CTL_ADD, Some(_)) if epoll.interests.contains_key(&fd) => Err(errno::EEXIST),
        (EPOLL_CTL_ADD, Some(e)) | (EPOLL_CTL_MOD, Some(e)) => {
            if op == EPOLL_CTL_MOD && !epoll.interests.contains_key(&fd) {
                return Err(errno::ENOENT);
            }
            epoll.interests.insert(fd, (e.events, e.data));
            epoll.waiters.drain(..).for_each(Waker::wake);
            Ok(0)
        }
        (EPOLL_CTL_DEL, _) => epoll.interests.remove(&fd).map(|_| 0).ok_or(errno::ENOENT),
        _ => Err(errno::EINVAL),
    });
    if result.is_ok() && op != EPOLL_CTL_DEL {
        // A new registration reports the current readiness once.
        let _ = with_object(fd, |socket: &mut Socket| {
            socket.reported = (false, false);
            Ok(())
        });
        let _ = with_object(fd, |socket: &mut crate::udp::UdpSock| {
            socket.reported = (false, false);
            Ok(())
        });
        let _ = with_object(fd, |e: &mut EventFd| {
            e.reported_writes = e.writes.wrapping_sub(1);
            Ok(())
        });
    }
    ret(result)
}

/// The events to report for a socket `ready` (readable, writable) that was already reported
/// as `reported`; updates `reported`.
fn edges((readable, writable): (bool, bool), wanted: u32, reported: &mut (bool, bool)) -> u32 {
    let mut events = 0;
    if readable && wanted & EPOLLIN != 0 && !reported.0 {
        events |= EPOLLIN;
    }
    if writable && wanted & EPOLLOUT != 0 && !reported.1 {
        events |= EPOLLOUT;
    }
    // Seen not ready: the next readiness is an edge.
    *reported = (
        readable && (reported.0 || events & EPOLLIN != 0),
        writable && (reported.1 || events & EPOLLOUT != 0),
    );
    events
}

/// Readiness (readable, writable) of network object `fd` (a TCP or UDP socket), registering
/// `cx` for what is not ready; `None` for other descriptors. For `poll`.
pub(crate) fn readiness(fd: c_int, cx: &mut Context<'_>) -> Option<(bool, bool)> {
    with_object(fd, |socket: &mut Socket| Ok(crate::net::socket_readiness(socket, cx)))
        .or_else(|_| {
            with_object(fd, |socket: &mut crate::udp::UdpSock| {
                Ok(crate::udp::readiness(socket, cx))
            })
        })
        .ok()
}

/// The events of `fd` to report now (edge-triggered), registering `cx` for what is not ready.
fn events_of(fd: c_int, wanted: u32, cx: &mut Context<'_>) -> Option<u32> {
    if let Ok(events) = with_object(fd, |socket: &mut Socket| {
        let ready = crate::net::socket_readiness(socket, cx);
        // Every epoll_wait watching this socket is woken by its next read, write or accept
        // (see `net::wake_watchers`), also one parked after the socket was reported.
        if !socket.watchers.iter().any(|w| w.will_wake(cx.waker())) {
            socket.watchers.push(cx.waker().clone());
        }
        Ok(edges(ready, wanted, &mut socket.reported))
    }) {
        return Some(events);
    }
    if let Ok(events) = with_object(fd, |socket: &mut crate::udp::UdpSock| {
        let ready = crate::udp::readiness(socket, cx);
        Ok(edges(ready, wanted, &mut socket.reported))
    }) {
        return Some(events);
    }
    if let Ok(events) = with_object(fd, |e: &mut EventFd| {
        let mut events = 0;
        if wanted & EPOLLIN != 0 && e.counter > 0 && e.writes != e.reported_writes {
            events |= EPOLLIN;
            e.reported_writes = e.writes;
        }
        if e.counter == 0 || events == 0 {
            e.wakers.push(cx.waker().clone());
        }
        Ok(events)
    }) {
        return Some(events);
    }
    // Files and the console are always ready; a closed descriptor reports nothing.
    if fs().descriptor(fd).is_ok() || (0..=2).contains(&fd) {
        return Some(wanted & (EPOLLIN | EPOLLOUT));
    }
    None
}

/// # Safety
/// `events` is writable for `max` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut EpollEvent,
    max: c_int,
    timeout_ms: c_int,
) -> c_int {
    let Ok(max) = usize::try_from(max) else { return errno::fail(errno::EINVAL) };
    if max == 0 || events.is_null() {
        return errno::fail(errno::EINVAL);
    }
    let deadline = u64::try_from(timeout_ms).ok().map(|ms| now_ns().saturating_add(ms * 1_000_000));
    let flag = Arc::new(IoFlag::new());
    let waker = Waker::from(flag.clone());
    loop {
        let interests = match with_object(epfd, |epoll: &mut Epoll| {
            // Woken again if the interests change while this thread waits.
            epoll.waiters.retain(|w| !w.will_wake(&waker));
            epoll.waiters.push(waker.clone());
            Ok(epoll.interests.clone())
        }) {
            Ok(interests) => interests,
            Err(e) => return errno::fail(e),
        };
        let mut cx = Context::from_waker(&waker);
        let mut n = 0;
        for (fd, (wanted, data)) in interests {
            if n == max {
                break;
            }
            if let Some(ready) = events_of(fd, wanted, &mut cx).filter(|r| *r != 0) {
                // SAFETY: C contract: `events` has room for `max > n` entries.
                unsafe { events.add(n).write_unaligned(EpollEvent { events: ready, data }) };
                n += 1;
            }
        }
        if n > 0 {
            return n as c_int;
        }
        if deadline.is_some_and(|at| at <= now_ns()) {
            return 0;
        }
        crate::sched::park_io(&flag, deadline);
    }
}

/// # Safety
/// As `epoll_wait` (the signal mask is ignored: no signals are delivered).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut EpollEvent,
    max: c_int,
    timeout_ms: c_int,
    _mask: *const core::ffi::c_void,
) -> c_int {
    // SAFETY: the same contract.
    unsafe { epoll_wait(epfd, events, max, timeout_ms) }
}

#[unsafe(no_mangle)]
pub extern "C" fn eventfd(initial: u32, flags: c_int) -> c_int {
    crate::net::install_hooks();
    let eventfd: Box<dyn core::any::Any> = Box::new(EventFd {
        counter: u64::from(initial),
        nonblocking: flags & EFD_NONBLOCK != 0,
        writes: 0,
        reported_writes: 0,
        wakers: Vec::new(),
    });
    ret(fs().add(Entry::Socket(eventfd)))
}

/// Reads the counter (8 bytes) and resets it; waits for a write if it is 0, unless
/// non-blocking (EAGAIN).
pub fn eventfd_read(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    if buf.len() < 8 {
        return Err(errno::EINVAL);
    }
    let flag = Arc::new(IoFlag::new());
    loop {
        let got = with_object(fd, |e: &mut EventFd| {
            if e.counter > 0 {
                return Ok(Some(core::mem::take(&mut e.counter)));
            }
            if e.nonblocking {
                return Err(errno::EAGAIN);
            }
            e.wakers.push(Waker::from(flag.clone()));
            Ok(None)
        })?;
        if let Some(value) = got {
            buf[..8].copy_from_slice(&value.to_ne_bytes());
            return Ok(8);
        }
        crate::sched::park_io(&flag, None);
    }
}

/// Adds an 8-byte value to the counter and wakes the waiters.
pub fn eventfd_write(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    let Some(bytes) = buf.get(..8) else { return Err(errno::EINVAL) };
    let mut value = [0u8; 8];
    value.copy_from_slice(bytes);
    let value = u64::from_ne_bytes(value);
    if value == u64::MAX {
        return Err(errno::EINVAL);
    }
    let wakers = with_object(fd, |e: &mut EventFd| {
        e.counter = e.counter.checked_add(value).filter(|c| *c < u64::MAX).ok_or(errno::EAGAIN)?;
        e.writes = e.writes.wrapping_add(1);
        Ok(core::mem::take(&mut e.wakers))
    })?;
    wakers.into_iter().for_each(Waker::wake);
    Ok(8)
}
