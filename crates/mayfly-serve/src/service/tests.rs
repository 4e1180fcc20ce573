//! The scaling decisions and the instance lifecycle, without processes: instances are
//! [`Running::detached`], starts are the [`Action`]s returned, time is the `now` passed in.

use super::*;
use crate::config::ServiceSpec;

fn spec(mode: Mode, concurrency: u32, min: u32, max: u32) -> ServiceSpec {
    let mut spec = ServiceSpec::new("svc", "guest".into(), "/");
    spec.mode = mode;
    spec.concurrency = concurrency;
    spec.min_instances = min;
    spec.max_instances = max;
    spec.warm_shells = 0;
    spec
}

fn service(spec: ServiceSpec) -> Service {
    let launch = Launch {
        mayfly: "mayfly".into(),
        image: "image".into(),
        mem_mib: spec.mem_mib,
        guest_port: spec.guest_port,
        args: Vec::new(),
        env: Vec::new(),
        tap: None,
        allow_host_ports: Vec::new(),
        cpu_limit_s: 0,
        console_limit_kib: 0,
        console_rate: 0,
        max_connections: 0,
        from_snapshot: None,
        volume: None,
    };
    Service::new(spec, launch, LogBuffer::default())
}

/// A request waiting for capacity, and where its lease will arrive.
fn wait(svc: &mut Service, now: Instant) -> oneshot::Receiver<Lease> {
    let (tx, rx) = oneshot::channel();
    svc.waiters.push_back(Waiter { tx, since: now });
    rx
}

fn starts(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::Prepare { start: true } | Action::Go(_))).count()
}

#[test]
fn waiting_requests_start_one_instance_per_concurrency_worth_up_to_the_maximum() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 2, 0, 4));
    let _waiting: Vec<_> = (0..5).map(|_| wait(&mut svc, now)).collect();
    let mut actions = Vec::new();
    svc.scale_up(now, &mut actions);
    assert_eq!((starts(&actions), svc.starting, svc.cold_starts), (3, 3, 3));
    // Nothing more while those start.
    let mut again = Vec::new();
    svc.scale_up(now, &mut again);
    assert!(again.is_empty());
    // A crowd is capped by max_instances.
    let _crowd: Vec<_> = (0..100).map(|_| wait(&mut svc, now)).collect();
    svc.scale_up(now, &mut again);
    assert_eq!((starts(&again), svc.starting), (1, 4));
}

#[test]
fn per_request_mode_starts_one_instance_per_request() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::PerRequest, 64, 0, 8));
    let _waiting: Vec<_> = (0..3).map(|_| wait(&mut svc, now)).collect();
    let mut actions = Vec::new();
    svc.scale_up(now, &mut actions);
    assert_eq!(starts(&actions), 3);
    svc.add_instance(Running::detached(1), now);
    assert_eq!(svc.instances[0].in_flight, 1, "given to a waiting request");
    assert!(svc.try_lease().is_none(), "per-request instances are never shared");
}

#[test]
fn min_instances_are_kept_without_counting_cold_starts() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 4, 2, 4));
    let mut actions = Vec::new();
    svc.scale_up(now, &mut actions);
    assert_eq!((starts(&actions), svc.cold_starts), (2, 0));
}

#[test]
fn three_crashes_in_the_window_back_off_doubling_up_to_the_cap() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 4, 0, 4));
    svc.crashed("one", now);
    svc.crashed("two", now);
    assert!(svc.backoff_left(now).is_none(), "two crashes are not a loop");
    svc.crashed("three", now);
    assert_eq!(svc.backoff_left(now), Some(Duration::from_secs(1)));
    svc.crashed("four", now);
    assert_eq!(svc.backoff_left(now), Some(Duration::from_secs(2)));
    for _ in 0..10 {
        svc.crashed("more", now);
    }
    assert_eq!(svc.backoff_left(now), Some(MAX_BACKOFF));
    assert_eq!(svc.last_crash.as_deref(), Some("more"));
    // Backing off: nothing starts, whoever waits.
    let _waiting = wait(&mut svc, now);
    let mut actions = Vec::new();
    svc.scale_up(now, &mut actions);
    assert!(actions.is_empty());
    // Crashes older than the window are forgotten.
    let later = now + CRASH_WINDOW + Duration::from_secs(1);
    svc.crashed("much later", later);
    assert_eq!(svc.crashes.len(), 1);
}

#[test]
fn leases_go_to_the_least_busy_ready_instance_with_room() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 2, 0, 4));
    svc.add_instance(Running::detached(1), now);
    svc.add_instance(Running::detached(2), now);
    let a = svc.try_lease().expect("room");
    let b = svc.try_lease().expect("room");
    assert_ne!(a.id, b.id, "spread over both instances");
    let _c = svc.try_lease().expect("room");
    let _d = svc.try_lease().expect("room");
    assert!(svc.try_lease().is_none(), "both at their concurrency");
    svc.release(&a, now);
    let e = svc.try_lease().expect("room again");
    assert_eq!(e.id, a.id);
    // A draining or failed instance takes no new requests.
    svc.drain_all();
    svc.release(&e, now);
    assert!(svc.try_lease().is_none());
}

#[test]
fn released_per_request_and_drained_instances_are_destroyed() {
    let now = Instant::now();
    let mut per_request = service(spec(Mode::PerRequest, 1, 0, 4));
    let waiting = wait(&mut per_request, now);
    per_request.add_instance(Running::detached(7), now);
    let mut waiting = waiting;
    let lease = waiting.try_recv().expect("the new instance went to the waiting request");
    assert_eq!((lease.id, lease.cold_since), (7, Some(now)));
    per_request.release(&lease, now);
    assert!(per_request.instances.is_empty());

    let mut shared = service(spec(Mode::Shared, 4, 0, 4));
    shared.add_instance(Running::detached(1), now);
    let lease = shared.try_lease().expect("room");
    shared.drain_all();
    assert_eq!(shared.instances.len(), 1, "kept while its request is in flight");
    shared.release(&lease, now);
    assert!(shared.instances.is_empty(), "destroyed once drained");
}

#[test]
fn a_started_instance_nobody_waits_for_any_more_is_dropped() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::PerRequest, 1, 0, 4));
    drop(wait(&mut svc, now));
    svc.add_instance(Running::detached(3), now);
    assert!(svc.instances.is_empty());
    assert_eq!(svc.instances.iter().map(|i| i.in_flight).sum::<u32>(), 0);
}

#[test]
fn waiting_requests_get_capacity_oldest_first_and_gone_ones_are_skipped() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 1, 0, 4));
    let gone = wait(&mut svc, now);
    let mut first = wait(&mut svc, now + Duration::from_millis(1));
    let mut second = wait(&mut svc, now + Duration::from_millis(2));
    drop(gone);
    svc.add_instance(Running::detached(1), now);
    let lease = first.try_recv().expect("the oldest live waiter is served");
    assert!(second.try_recv().is_err(), "no room for the second yet");
    assert_eq!(svc.instances[0].in_flight, 1, "the gone waiter took nothing");
    svc.release(&lease, now);
    assert!(second.try_recv().is_ok(), "served when the first is done");
}

#[test]
fn reaping_destroys_idle_instances_above_the_minimum_and_failed_ones_after_grace() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 4, 1, 4));
    svc.spec.idle_timeout_ms = 1000;
    svc.add_instance(Running::detached(1), now);
    svc.add_instance(Running::detached(2), now);
    svc.add_instance(Running::detached(3), now);
    svc.fail(3, now);
    svc.reap(now + Duration::from_millis(500));
    assert_eq!(svc.instances.len(), 3, "nothing idle long enough, the failed one in its grace");
    svc.reap(now + FAILED_GRACE);
    assert_eq!(svc.instances.len(), 1, "one kept: min_instances");
    assert!(svc.instances[0].state.takes_requests());
}

#[test]
fn the_lifecycle_has_one_transition_table() {
    let now = Instant::now();
    let later = now + Duration::from_secs(1);
    assert_eq!(State::Ready.after(Event::Drain, now), State::Draining);
    assert_eq!(State::Ready.after(Event::Fail, now), State::Failed(now));
    assert_eq!(State::Draining.after(Event::Drain, now), State::Draining);
    assert_eq!(State::Draining.after(Event::Fail, now), State::Failed(now));
    // Failed is final, and its grace is not restarted.
    assert_eq!(State::Failed(now).after(Event::Fail, later), State::Failed(now));
    assert_eq!(State::Failed(now).after(Event::Drain, later), State::Failed(now));
    assert!(!State::Ready.finished(0, later));
    assert!(State::Draining.finished(0, now) && !State::Draining.finished(1, now));
    assert!(!State::Failed(now).finished(0, later));
    assert!(State::Failed(now).finished(5, now + FAILED_GRACE));
}

#[test]
fn a_failed_request_is_not_a_crash_but_an_exit_is_counted_once() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 4, 0, 4));
    svc.add_instance(Running::detached(1), now);
    svc.add_instance(Running::detached(2), now);
    svc.fail(1, now);
    assert!(svc.crashes.is_empty() && svc.last_crash.is_none());
    // Killed by us: no crash.
    assert!(!svc.exited(1, true, "", now));
    assert!(svc.crashes.is_empty());
    // Seen to stop during a request, then reaped: one crash, with the monitor's diagnosis.
    svc.crash_seen(2, now);
    assert_eq!(svc.crashes.len(), 1);
    assert!(svc.exited(2, false, "guest faulted", now));
    assert_eq!((svc.crashes.len(), svc.last_crash.as_deref()), (1, Some("guest faulted")));
}

#[test]
fn the_queue_is_bounded_and_gone_requests_give_their_places_back() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 1, 0, 1));
    svc.spec.queue_limit = 2;
    let (a, _ra) = oneshot::channel();
    let (b, rb) = oneshot::channel();
    let (c, _rc) = oneshot::channel();
    assert!(svc.enqueue(a, now).is_some());
    assert!(svc.enqueue(b, now).is_some());
    assert!(svc.enqueue(c, now).is_none(), "the queue is full");
    drop(rb);
    let (d, _rd) = oneshot::channel();
    let waited = svc.enqueue(d, now);
    assert_eq!(waited, Some(Duration::from_millis(svc.spec.queue_timeout_ms)));
    assert_eq!(svc.queued(), 2);
}

#[test]
fn a_failed_start_answers_the_waiting_requests_only_if_nothing_else_is_coming() {
    let now = Instant::now();
    let mut svc = service(spec(Mode::Shared, 1, 0, 4));
    let _waiting: Vec<_> = (0..2).map(|_| wait(&mut svc, now)).collect();
    let mut actions = Vec::new();
    svc.scale_up(now, &mut actions);
    assert_eq!(svc.starting, 2);
    svc.prepare_failed(true, "no KVM", now);
    assert_eq!(svc.queued(), 2, "another start is still coming");
    svc.prepare_failed(true, "no KVM", now);
    assert_eq!((svc.queued(), svc.starting), (0, 0));
    assert_eq!(svc.last_crash(), Some("no KVM"));
}
