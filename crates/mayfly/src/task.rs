//! A single-threaded async executor driven by the `Wait` hypercall.
//!
//! [`block_on`] runs a future (and every task [`spawn`]ed meanwhile) to completion. Each turn it
//! polls the tasks that were woken, lets the network stack process frames (which wakes sockets'
//! tasks), fires due timers, and, when nothing is runnable, blocks the vCPU in the monitor until
//! a frame arrives or the earliest timer is due. Frames queued for sending leave at that exit.

use crate::platform::Global;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

/// A task's wake-up flag.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

impl Flag {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

type BoxedTask = Pin<Box<dyn Future<Output = ()>>>;

/// Tasks spawned since the executor last looked.
static SPAWNED: Global<Vec<BoxedTask>> = Global::new(Vec::new());

/// Starts `future` as a task of the running executor; it runs until it completes.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    SPAWNED.with(|spawned| spawned.push(Box::pin(future)));
}

/// Armed timers, by deadline (and a sequence number for ties). A [`Sleep`] removes its own
/// entry when dropped, so abandoned timeouts (every keep-alive request arms one) do not pile up.
static TIMERS: Global<(Timers, u64)> = Global::new((BTreeMap::new(), 0));

/// Timers by (deadline, sequence number).
type Timers = BTreeMap<(Instant, u64), Waker>;

fn add_timer(at: Instant, waker: Waker) -> (Instant, u64) {
    TIMERS.with(|(timers, seq)| {
        *seq += 1;
        timers.insert((at, *seq), waker);
        (at, *seq)
    })
}

/// Wakes the tasks whose timers are due; returns the next deadline.
fn fire_timers(now: Instant) -> Option<Instant> {
    let mut due = Vec::new();
    let next = TIMERS.with(|(timers, _)| {
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        timers.first_key_value().map(|((at, _), _)| *at)
    });
    for waker in due {
        waker.wake();
    }
    next
}

/// A future that completes at a deadline.
pub struct Sleep {
    until: Instant,
    /// The armed timer's key, while armed.
    timer: Option<(Instant, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.until {
            return Poll::Ready(());
        }
        if self.timer.is_none() {
            self.timer = Some(add_timer(self.until, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            TIMERS.with(|(timers, _)| timers.remove(&key));
        }
    }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { until: Instant::now().saturating_add(duration), timer: None }
}

/// Completes at `until`.
pub fn sleep_until(until: Instant) -> Sleep {
    Sleep { until, timer: None }
}

/// `future` did not complete in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `future`, giving up after `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = core::pin::pin!(future);
    let mut deadline = core::pin::pin!(sleep(duration));
    core::future::poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Yields once to the executor.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Runs `main` and every spawned task until `main` completes.
pub fn block_on<F: Future>(main: F) -> F::Output {
    let mut main = core::pin::pin!(main);
    let main_flag = Arc::new(Flag(AtomicBool::new(true)));
    let main_waker = Waker::from(main_flag.clone());
    let mut tasks: Vec<(Arc<Flag>, Waker, BoxedTask)> = Vec::new();
    // Turns in a row without an exit: frames queued for sending wait for the next exit, so a
    // busy guest still exits now and then to let them out.
    let mut busy_turns = 0u32;
    loop {
        if main_flag.take()
            && let Poll::Ready(value) = main.as_mut().poll(&mut Context::from_waker(&main_waker))
        {
            return value;
        }
        for task in SPAWNED.with(core::mem::take) {
            let flag = Arc::new(Flag(AtomicBool::new(true)));
            tasks.push((flag.clone(), Waker::from(flag), task));
        }
        tasks.retain_mut(|(flag, waker, task)| {
            !flag.take() || task.as_mut().poll(&mut Context::from_waker(waker)).is_pending()
        });
        let net_deadline = crate::net_poll();
        let timer_deadline = fire_timers(Instant::now());
        let runnable = main_flag.0.load(Ordering::Acquire)
            || tasks.iter().any(|(f, _, _)| f.0.load(Ordering::Acquire))
            || SPAWNED.with(|s| !s.is_empty());
        if runnable {
            busy_turns += 1;
            if busy_turns >= 64 && crate::net_has_output() {
                busy_turns = 0;
                crate::time::wait(Some(Instant::now()));
            }
            continue;
        }
        busy_turns = 0;
        let deadline = match (net_deadline, timer_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        crate::time::wait(deadline);
    }
}
