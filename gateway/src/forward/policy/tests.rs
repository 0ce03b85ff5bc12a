//! The policy under a test clock (it never reads time itself; every call
//! takes `now`): failover, failback, the release of waiting retries, and
//! triggers kept in the books until the store has them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{Config, TenantConfig};
use crate::store::State;

const A: &str = "http://primary.test/t";
const B: &str = "http://secondary.test/t";

fn config(upstreams: &[&str], tweak: impl FnOnce(&mut crate::config::ForwardConfig)) -> Config {
    let mut c = Config { tenants: vec![TenantConfig { id: "acme".into(), ..TenantConfig::default() }], ..Config::default() };
    c.forward.upstreams = upstreams.iter().map(|u| u.to_string()).collect();
    tweak(&mut c.forward);
    c
}

/// The test's clock: moves only when the test says so.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Instant {
        self.0
    }
    fn advance(&mut self, d: Duration) {
        self.0 += d;
    }
}

fn id(n: u128) -> TriggerId {
    TriggerId::from_u128(n)
}

fn refused() -> AttemptResult {
    AttemptResult {
        class: Class::Retry,
        status: None,
        retry_after: None,
        elapsed: Duration::ZERO,
        detail: "connect failed: refused".into(),
    }
}

fn ok() -> AttemptResult {
    AttemptResult { class: Class::Delivered, status: Some(200), retry_after: None, elapsed: Duration::ZERO, detail: String::new() }
}

fn attempted(l: Launch, result: AttemptResult) -> Done {
    Done::Attempted { job: l.job, upstream: l.upstream, ticket: l.ticket, result, finished: false, unrecorded: None }
}

fn delivered(l: Launch) -> Done {
    Done::Attempted { job: l.job, upstream: l.upstream, ticket: l.ticket, result: ok(), finished: true, unrecorded: None }
}

/// Dispatches and expects exactly one launch.
fn one(p: &mut Policy, t: &Clock) -> Launch {
    let (mut launches, _) = p.dispatch(t.now());
    assert_eq!(launches.len(), 1, "{launches:?}");
    launches.remove(0)
}

#[test]
fn a_retry_goes_to_the_next_upstream_within_one_backoff_step() {
    let mut t = Clock(Instant::now());
    // Primary not yet open (threshold 5): the retry still leaves it.
    let c = config(&[A, B], |f| {
        f.backoff_base_ms = 200;
        f.backoff_cap_ms = 200;
    });
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), None)]);
    let first = one(&mut p, &t);
    assert_eq!(first.upstream, 0, "first attempt to the primary");
    p.complete(attempted(first, refused()), t.now());
    assert!(p.dispatch(t.now()).0.is_empty(), "the retry waits out its backoff");
    t.advance(Duration::from_millis(200));
    let retry = one(&mut p, &t);
    assert_eq!((retry.job.id, retry.upstream), (id(1), 1), "the retry goes to the secondary");
}

#[test]
fn a_retry_is_never_the_dead_primarys_probe_while_the_secondary_admits_it() {
    let mut t = Clock(Instant::now());
    // Threshold 1 and a probe interval shorter than the backoff: every retry
    // finds the primary due for a probe (the low-traffic case of issue 16).
    let c = config(&[A, B], |f| {
        f.failure_threshold = 1;
        f.probe_interval_ms = 10;
        f.backoff_base_ms = 100;
        f.backoff_cap_ms = 100;
    });
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), None)]);
    let first = one(&mut p, &t);
    p.complete(attempted(first, refused()), t.now());
    assert_eq!(p.status(t.now()).upstreams[0].state, "open");
    t.advance(Duration::from_millis(100));
    let retry = one(&mut p, &t);
    assert_eq!(retry.upstream, 1);
    assert!(!retry.ticket.is_probe());
    p.complete(delivered(retry), t.now());

    // Failback: fresh triggers probe the primary; once it is back they stay there.
    for n in 2..=5 {
        p.refilled(0, vec![(id(n), None)]);
        let l = one(&mut p, &t);
        assert_eq!(l.upstream, 0, "trigger {n} probes the primary");
        p.complete(delivered(l), t.now());
        t.advance(Duration::from_millis(10));
    }
    assert_eq!(p.upstreams[0].breaker.state(), BreakerState::Closed);
    p.refilled(0, vec![(id(6), None)]);
    let l = one(&mut p, &t);
    assert!(l.upstream == 0 && !l.ticket.is_probe());
}

#[test]
fn a_closing_breaker_releases_its_waiting_retries_through_the_slow_start() {
    let mut t = Clock(Instant::now());
    let c = config(&[A], |f| {
        f.failure_threshold = 1;
        f.probe_interval_ms = 100;
        f.backoff_base_ms = 60_000;
        f.backoff_cap_ms = 60_000;
    });
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), None), (id(2), None)]);
    let (launches, _) = p.dispatch(t.now());
    assert_eq!(launches.len(), 2);
    for l in launches {
        p.complete(attempted(l, refused()), t.now());
    }
    assert_eq!(p.status(t.now()).retries_waiting, 2);
    // The upstream comes back; fresh triggers probe it until the breaker closes.
    t.advance(Duration::from_millis(100));
    let mut n = 10;
    while p.upstreams[0].breaker.state() != BreakerState::Closed {
        p.refilled(0, vec![(id(n), None)]);
        let l = one(&mut p, &t);
        assert!(l.ticket.is_probe());
        p.complete(delivered(l), t.now());
        n += 1;
        assert!(n < 20, "the breaker should close after a few probes");
    }
    // Released at once (not after 60 s), one at a time: the slow start.
    let first = one(&mut p, &t);
    assert_eq!(first.job.id, id(1), "in their order");
    assert!(first.job.released);
    p.complete(delivered(first), t.now());
    let second = one(&mut p, &t);
    assert_eq!(second.job.id, id(2));
}

#[test]
fn an_outcome_the_store_refused_keeps_the_trigger_in_the_books() {
    let t = Clock(Instant::now());
    let c = config(&[A], |_| {});
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), None)]);
    let l = one(&mut p, &t);
    let change = Change::SetState { state: State::Delivered, attempt: None, note: None };
    let done =
        Done::Attempted { job: l.job, upstream: l.upstream, ticket: l.ticket, result: ok(), finished: true, unrecorded: Some(change) };
    let held = p.complete(done, t.now());
    assert!(matches!(held, Some((i, _)) if i == id(1)), "the write is handed back to be retried");
    assert_eq!(p.status(t.now()).outcomes_unrecorded, 1);
    // Still pending in the store: a re-read must not send it again.
    p.announced("acme", id(1));
    p.refilled(0, vec![(id(1), None)]);
    assert!(p.dispatch(t.now()).0.is_empty(), "delivered once: not sent again while its outcome is written");
    p.complete(Done::Recorded { id: id(1) }, t.now());
    assert_eq!(p.status(t.now()).outcomes_unrecorded, 0);
}

#[test]
fn an_unreadable_trigger_is_tried_again_not_dropped() {
    let mut t = Clock(Instant::now());
    let c = config(&[A], |_| {});
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), None)]);
    let l = one(&mut p, &t);
    p.complete(Done::Skipped { job: l.job, upstream: l.upstream, ticket: l.ticket, unreadable: true }, t.now());
    assert!(p.dispatch(t.now()).0.is_empty());
    t.advance(UNREADABLE_WAIT);
    assert_eq!(one(&mut p, &t).job.id, id(1));
}

#[test]
fn an_announcement_behind_the_cursor_rewinds_the_lane() {
    let t = Clock(Instant::now());
    let c = config(&[A], |_| {});
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(5), None)]);
    assert_eq!(p.lanes_to_read(), vec![]);
    let l = one(&mut p, &t);
    p.complete(delivered(l), t.now());
    // Exhausted lane, cursor at 5: a later id reads on after 5...
    p.announced("acme", id(9));
    assert_eq!(p.lanes_to_read()[0].2, Some(id(5)));
    // ...an earlier one (replayed, or committed late by another shard) rewinds.
    p.announced("acme", id(3));
    assert_eq!(p.lanes_to_read()[0].2, Some(id(2)));
}

#[test]
fn a_routed_trigger_uses_its_routes_upstreams_and_others_the_default() {
    let t = Clock(Instant::now());
    let mut c = config(&[A], |_| {});
    c.forward.routes = vec![crate::config::RouteConfig { name: "push".into(), upstreams: vec![B.into()] }];
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), Some("push".into())), (id(2), Some("unknown".into())), (id(3), None)]);
    let got: Vec<_> = p.dispatch(t.now()).0.iter().map(|l| (l.job.id, l.upstream)).collect();
    assert_eq!(got, vec![(id(1), 1), (id(2), 0), (id(3), 0)]);
}

#[test]
fn due_retries_go_first_in_the_order_they_fell_due_then_lanes_take_turns() {
    let mut t = Clock(Instant::now());
    let mut c = config(&[A], |f| {
        f.failure_threshold = 100;
        f.backoff_base_ms = 100;
        f.backoff_cap_ms = 100;
    });
    c.tenants.push(TenantConfig { id: "globex".into(), ..TenantConfig::default() });
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    p.refilled(0, vec![(id(1), None), (id(2), None)]);
    let (launches, _) = p.dispatch(t.now());
    // Two failures 10 ms apart: their retries fall due in that order.
    let mut launches = launches.into_iter();
    let (l1, l2) = (launches.next().expect("1"), launches.next().expect("2"));
    p.complete(attempted(l2, refused()), t.now());
    t.advance(Duration::from_millis(10));
    p.complete(attempted(l1, refused()), t.now());
    // Meanwhile both tenants got fresh triggers.
    p.refilled(0, vec![(id(10), None), (id(11), None)]);
    p.refilled(1, vec![(id(20), None), (id(21), None)]);
    p.dispatch(t.now()).0.into_iter().for_each(|l| {
        p.complete(delivered(l), t.now());
    });
    t.advance(Duration::from_millis(110));
    p.refilled(0, vec![(id(12), None)]);
    p.refilled(1, vec![(id(22), None)]);
    let order: Vec<TriggerId> = p.dispatch(t.now()).0.iter().map(|l| l.job.id).collect();
    assert_eq!(order[..2], [id(2), id(1)], "retries first, by due time");
    let mut fresh = order[2..].to_vec();
    fresh.sort();
    assert_eq!(fresh, [id(12), id(22)], "then one trigger per tenant in turn");
}

#[test]
fn a_route_nobody_admits_does_not_hold_up_another_routes_triggers() {
    let t = Clock(Instant::now());
    let mut c = config(&[A], |f| f.max_in_flight = 1);
    c.forward.routes = vec![crate::config::RouteConfig { name: "push".into(), upstreams: vec![B.into()] }];
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    // The default route's upstream is saturated by the first trigger...
    p.refilled(0, vec![(id(1), None), (id(2), None), (id(3), Some("push".into()))]);
    let got: Vec<(TriggerId, usize)> = p.dispatch(t.now()).0.iter().map(|l| (l.job.id, l.upstream)).collect();
    // ...so the second waits, but the routed third goes.
    assert_eq!(got, vec![(id(1), 0), (id(3), 1)]);
}

#[test]
fn a_tenant_added_at_run_time_gets_a_lane_on_its_first_announcement_and_takes_its_turn() {
    let t = Clock(Instant::now());
    let c = config(&[A], |f| f.failure_threshold = 100);
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    assert!(!p.has_tenant("globex"));
    p.announced("globex", id(20));
    assert!(p.has_tenant("globex"), "the announcement made a lane");
    let lanes: Vec<String> = p.lanes_to_read().into_iter().map(|(_, t, after)| format!("{t}:{after:?}")).collect();
    assert!(lanes.contains(&"globex:None".to_string()), "the new lane reads from the start: {lanes:?}");
    let globex = p.add_lane("globex");
    assert_eq!(p.add_lane("globex"), globex, "one lane per tenant");
    p.refilled(0, vec![(id(1), None), (id(2), None)]);
    p.refilled(globex, vec![(id(20), None)]);
    let mut sent: Vec<TriggerId> = p.dispatch(t.now()).0.iter().map(|l| l.job.id).collect();
    sent.sort();
    assert_eq!(sent, [id(1), id(2), id(20)], "the new tenant's trigger goes out with the others");
}

#[test]
fn the_status_says_how_old_an_upstreams_last_error_is() {
    let mut t = Clock(Instant::now());
    let c = config(&[A], |_| {});
    let mut p = Policy::new(&c, HashSet::new(), t.now()).expect("policy");
    assert_eq!(p.status(t.now()).upstreams[0].last_error_age_ms, None, "no error yet");
    p.refilled(0, vec![(id(1), None)]);
    let first = one(&mut p, &t);
    p.complete(attempted(first, refused()), t.now());
    t.advance(Duration::from_millis(1500));
    let up = &p.status(t.now()).upstreams[0];
    assert_eq!(up.last_error.as_deref(), Some("connect failed: refused"));
    assert_eq!(up.last_error_age_ms, Some(1500), "the age grows with the clock, not the attempts");
}
