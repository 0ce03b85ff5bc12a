//! One plugin call: a fresh Store and instance, limits, deadline, and the
//! checks on what the plugin returned.
//!
//! Calls are async (wasmtime's `serve` model): the guest runs on a fiber in
//! the request's own task, yields to the executor at every epoch tick while
//! within its CPU budget, is interrupted past it, and the whole call sits in
//! a wall-clock `timeout` of its own time (`within_own_time`: time it was
//! ready to run but was not moves the cap), so a call waiting in a WASI host
//! call (a sleep, a poll) is cancelled and its Store dropped at the deadline,
//! and one a busy machine did not run is not taken for a faulty plugin. Nothing of a
//! call blocks a thread, and no WASI host call can start a runtime inside
//! the runtime (the sync WASI host's `block_on`, which panicked on workers).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::Loaded;
use super::bindings::{HostState, Trigger, Verdict};

/// The accepted trigger's changes, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transform {
    pub body: Option<Vec<u8>>,
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    pub idempotency_key: Option<String>,
    pub route: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept(Transform),
    Reject { status: u16, reason: String },
    Drop,
}

/// Why a plugin call produced no usable verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The wall-clock deadline (`plugin_timeout_ms`) passed.
    Deadline,
    /// The instance hit its memory limit (`plugin_memory_mb`).
    Memory,
    /// A trap: unreachable, a panic, stack overflow, a bad memory access.
    Trap,
    /// The verdict broke the contract (status outside 400..=499, output too
    /// large, bad or too many header changes).
    MalformedOutput,
    /// The tenant's plugin could not be loaded.
    Unavailable,
}

impl FailureKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::MalformedOutput => "malformed_output",
            FailureKind::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin {}: {}", self.kind.as_str(), self.detail)
    }
}

pub(super) struct Job {
    pub engine: Engine,
    pub loaded: Arc<Loaded>,
    pub memory_bytes: u64,
    pub config: Arc<BTreeMap<String, String>>,
    pub max_log_calls: u32,
    pub max_log_bytes: usize,
    pub max_output_bytes: usize,
    /// Set once the call has spent `HOLD` of CPU: the caller moves it to the
    /// slow lane (`lane::drive`).
    pub overran: Arc<AtomicBool>,
    /// What the call used (CPU time, memory peak), whatever its outcome.
    pub meter: Arc<super::usage::Meter>,
}

/// Wall-clock cap on a call, as a multiple of its CPU budget.
pub const WALL_FACTOR: u32 = 4;

/// CPU time a call may run on a worker before it starts yielding at every
/// epoch tick (~1 ms): most plugins finish well within it.
const HOLD: Duration = Duration::from_millis(1);

/// Header changes (set + remove entries) one verdict may carry.
pub const MAX_HEADER_CHANGES: usize = 64;
/// Bytes of names and values those changes may carry.
pub const MAX_HEADER_CHANGE_BYTES: usize = 16 * 1024;

/// Plugin stderr kept for the failure detail (panic messages land there).
const STDERR_CAP: usize = 2048;

/// The pool had no instance (or fiber stack) for the call: not the
/// tenant's fault, so never a plugin failure.
#[derive(Debug)]
pub(super) struct NoInstance;

/// CPU time consumed by the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a
    // constant the kernel always supports on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time a call has spent across the polls of its future (which may run
/// on different worker threads): the epoch callback reads it mid-poll. And
/// the time it was ready to run but did not: preempted inside a poll (the
/// poll's wall-clock time beyond its CPU time) or woken and waiting for a
/// worker. A busy machine, not the plugin, spends that time, so the
/// wall-clock cap does not count it.
struct CpuMeter {
    /// Spent in finished polls.
    spent_ns: AtomicU64,
    /// This thread's CPU clock when the current poll started.
    poll_start_ns: AtomicU64,
    /// Ready to run but not running, in finished polls and before them.
    stalled_ns: AtomicU64,
    /// When the call was first woken since its last poll (ns after `origin`; `NOT_WOKEN`: not since).
    woken_ns: AtomicU64,
    origin: std::time::Instant,
}

const NOT_WOKEN: u64 = u64::MAX;

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter {
            spent_ns: AtomicU64::new(0),
            poll_start_ns: AtomicU64::new(0),
            stalled_ns: AtomicU64::new(0),
            woken_ns: AtomicU64::new(NOT_WOKEN),
            origin: std::time::Instant::now(),
        }
    }
}

/// A waker that notes when the call was woken, then wakes its task.
struct NoteWake {
    meter: Arc<CpuMeter>,
    inner: std::task::Waker,
}

impl std::task::Wake for NoteWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let now = self.meter.now_ns();
        let _ = self.meter.woken_ns.compare_exchange(NOT_WOKEN, now, Ordering::Relaxed, Ordering::Relaxed);
        self.inner.wake_by_ref();
    }
}

impl CpuMeter {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Called from inside a poll (the epoch callback), on the polling thread.
    fn spent(&self) -> Duration {
        let current = thread_cpu_ns().saturating_sub(self.poll_start_ns.load(Ordering::Relaxed));
        Duration::from_nanos(self.spent_ns.load(Ordering::Relaxed) + current)
    }

    /// CPU time of the polls that finished.
    fn total(&self) -> Duration {
        Duration::from_nanos(self.spent_ns.load(Ordering::Relaxed))
    }

    /// Time the call was ready to run but did not (see the type).
    fn stalled(&self) -> Duration {
        Duration::from_nanos(self.stalled_ns.load(Ordering::Relaxed))
    }

    /// Runs `fut`, counting the CPU time of each of its polls, and the time
    /// it was ready but not running.
    async fn meter<F: Future>(self: &Arc<Self>, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        // The noting waker is made again only when the task's waker changes
        // (not on every poll: this runs at every epoch yield of every call).
        let mut noting: Option<(std::task::Waker, std::task::Waker)> = None;
        std::future::poll_fn(|cx| {
            let (start, wall_start) = (thread_cpu_ns(), self.now_ns());
            let woken = self.woken_ns.swap(NOT_WOKEN, Ordering::Relaxed);
            let waiting = if woken == NOT_WOKEN { 0 } else { wall_start.saturating_sub(woken) };
            self.poll_start_ns.store(start, Ordering::Relaxed);
            if !noting.as_ref().is_some_and(|(inner, _)| inner.will_wake(cx.waker())) {
                let ours = std::task::Waker::from(Arc::new(NoteWake { meter: self.clone(), inner: cx.waker().clone() }));
                noting = Some((cx.waker().clone(), ours));
            }
            let waker = noting.as_ref().map_or(cx.waker(), |(_, ours)| ours);
            let r = fut.as_mut().poll(&mut std::task::Context::from_waker(waker));
            let cpu = thread_cpu_ns().saturating_sub(start);
            let preempted = self.now_ns().saturating_sub(wall_start).saturating_sub(cpu);
            self.spent_ns.fetch_add(cpu, Ordering::Relaxed);
            self.stalled_ns.fetch_add(waiting + preempted, Ordering::Relaxed);
            r
        })
        .await
    }
}

impl Job {
    /// One call on a fresh instance, within `budget` of CPU time and
    /// `WALL_FACTOR` x `budget` of wall-clock time. Dropping the future
    /// drops the Store (the instance goes back to the pool at once).
    pub(super) async fn run(&self, trigger: &Trigger, budget: Duration) -> Result<Result<Decision, Failure>, NoInstance> {
        let wall = budget * WALL_FACTOR;
        let stderr = MemoryOutputPipe::new(STDERR_CAP);
        let meter = Arc::new(CpuMeter::default());
        let call = self.call(trigger, budget, stderr.clone(), meter.clone());
        let outcome = within_own_time(wall, &meter, meter.meter(call)).await;
        self.meter.set_cpu(meter.total());
        match outcome {
            // Past the wall-clock cap (typically waiting in a host call): the
            // Store was dropped with the future.
            Err(_) => Ok(Err(deadline(budget))),
            Ok(Ok(verdict)) => Ok(check(verdict, self.max_output_bytes)),
            Ok(Err(e)) if pool_exhausted(&e) => Err(NoInstance),
            Ok(Err(e)) => Ok(Err(classify(&e, &stderr, budget))),
        }
    }

    /// Builds the Store and calls the plugin; the Store lives in this future.
    async fn call(&self, trigger: &Trigger, budget: Duration, stderr: MemoryOutputPipe, meter: Arc<CpuMeter>) -> wasmtime::Result<Verdict> {
        // No capabilities: no files, sockets or environment; the clocks are
        // frozen at the trigger's arrival, the only time the WIT gives.
        let wasi = WasiCtx::builder()
            .stderr(stderr)
            .wall_clock(FrozenWall(trigger.received_at_ms))
            .monotonic_clock(FrozenMonotonic)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes as usize)
            .table_elements(100_000)
            .instances(32)
            .tables(8)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                tenant: trigger.tenant.as_str().into(),
                config: self.config.clone(),
                limits: super::usage::Limits::new(limits, self.meter.clone()),
                wasi,
                table: ResourceTable::new(),
                log_calls: 0,
                max_log_calls: self.max_log_calls,
                max_log_bytes: self.max_log_bytes,
                logs_dropped: 0,
            },
        );
        store.limiter(|s| &mut s.limits);
        // Set before instantiation: start functions count against the deadline too.
        // The budget is the CPU time the call spends, so a busy machine does
        // not quarantine a well-behaved plugin. Past its first `HOLD` of CPU
        // the guest yields to the executor at every tick, so it never holds
        // a worker for long (short calls never yield: a yield can cost a
        // scheduler round trip); past the budget it is interrupted. The
        // wall-clock cap has one owner, the `timeout` in `run`: the yields
        // give it a turn at every tick.
        let overran = self.overran.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let spent = meter.spent();
            Ok(if spent >= budget {
                UpdateDeadline::Interrupt
            } else if spent >= HOLD {
                overran.store(true, Ordering::Relaxed);
                UpdateDeadline::Yield(1)
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        self.loaded.pre.call(&mut store, trigger).await
    }
}

/// The most a call's wall-clock cap moves for the time it was starved:
/// beyond this, even a starved call ends as past its deadline.
const MAX_STALL_FACTOR: u32 = 10;

/// Runs `call` until it has had `wall` of its own time: wall-clock time
/// minus the time it was ready to run but was not (a busy machine's, not
/// the plugin's), which moves the cap by up to `MAX_STALL_FACTOR` x `wall`.
/// A call waiting in a host call (a sleep) spends its own time; one that a
/// loaded machine does not run is not cut for it, and is not quarantined.
async fn within_own_time<F: Future>(wall: Duration, meter: &CpuMeter, call: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    let started = tokio::time::Instant::now();
    let deadline = || started + wall + meter.stalled().min(wall * MAX_STALL_FACTOR);
    let mut call = std::pin::pin!(call);
    loop {
        match tokio::time::timeout_at(deadline(), call.as_mut()).await {
            Ok(out) => return Ok(out),
            // Starved meanwhile: the cap moved; wait for it.
            Err(_) if deadline() > tokio::time::Instant::now() => continue,
            Err(elapsed) => return Err(elapsed),
        }
    }
}

fn pool_exhausted(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| c.is::<PoolConcurrencyLimitError>()) || format!("{e:#}").contains("maximum concurrent limit")
}

fn deadline(budget: Duration) -> Failure {
    Failure {
        kind: FailureKind::Deadline,
        detail: format!("did not finish within its {} ms budget (CPU time; wall-clock cap {}x)", budget.as_millis(), WALL_FACTOR),
    }
}

fn classify(e: &wasmtime::Error, stderr: &MemoryOutputPipe, timeout: Duration) -> Failure {
    let text = format!("{e:#}");
    let trap = e.downcast_ref::<Trap>().copied();
    let out = String::from_utf8_lossy(&stderr.contents()).trim().to_string();
    let with_stderr = |d: String| if out.is_empty() { d } else { format!("{d}; plugin stderr: {out}") };
    if trap == Some(Trap::Interrupt) {
        return deadline(timeout);
    }
    // A failed memory.grow with trap_on_grow_failure is not a `Trap` value.
    if text.contains("growing memory") || text.contains("memory limit") || text.contains("memory allocation") {
        return Failure { kind: FailureKind::Memory, detail: with_stderr(format!("exceeded its memory limit ({text})")) };
    }
    let detail = match trap {
        Some(Trap::StackOverflow) => "wasm stack overflow".to_string(),
        Some(t) => format!("trapped: {t}"),
        None => format!("failed: {text}"),
    };
    Failure { kind: FailureKind::Trap, detail: with_stderr(detail) }
}

/// Verdicts that break the contract are plugin faults, not instructions.
fn check(verdict: Verdict, max_output: usize) -> Result<Decision, Failure> {
    let bad = |detail: String| Err(Failure { kind: FailureKind::MalformedOutput, detail });
    match verdict {
        Verdict::Drop => Ok(Decision::Drop),
        Verdict::Reject(r) => {
            if !(400..=499).contains(&r.status) {
                return bad(format!("rejected with status {}, outside 400..=499", r.status));
            }
            Ok(Decision::Reject { status: r.status, reason: crate::trigger::truncate(&r.reason, 1024).to_string() })
        }
        Verdict::Accept(a) => {
            // Bounded before anything else looks at them: a verdict's header
            // changes are stored with the trigger and applied on the worker.
            let changes = a.set_headers.len() + a.remove_headers.len();
            if changes > MAX_HEADER_CHANGES {
                return bad(format!("returned {changes} header changes, over the limit of {MAX_HEADER_CHANGES}"));
            }
            let header_bytes = a.set_headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
                + a.remove_headers.iter().map(String::len).sum::<usize>();
            if header_bytes > MAX_HEADER_CHANGE_BYTES {
                return bad(format!("returned {header_bytes} bytes of header changes, over the limit of {MAX_HEADER_CHANGE_BYTES}"));
            }
            let body_len = a.body.as_ref().map_or(0, Vec::len);
            if body_len + header_bytes > max_output {
                return bad(format!(
                    "returned a {body_len} byte body and {header_bytes} bytes of header changes, over the {max_output} byte cap"
                ));
            }
            let mut set_headers = Vec::with_capacity(a.set_headers.len());
            for h in a.set_headers {
                let name = h.name.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(&h.value).is_err() {
                    return bad(format!("set an invalid header {:?}", clip(&h.name)));
                }
                if !crate::trigger::is_stored_header(&name) {
                    return bad(format!("set header {:?}, which Weir never stores", clip(&name)));
                }
                set_headers.push((name, h.value));
            }
            // Removals are stored with the trigger too: only header names
            // (found by the verdict fuzz test: any string was accepted).
            if let Some(h) = a.remove_headers.iter().find(|h| http::HeaderName::from_bytes(h.as_bytes()).is_err()) {
                return bad(format!("removed an invalid header name {:?}", clip(h)));
            }
            if let Some(k) = &a.idempotency_key
                && let Err(why) = crate::trigger::check_idempotency_key(k)
            {
                return bad(format!("returned an idempotency key that {why}"));
            }
            if let Some(r) = &a.route
                && crate::config::validate_label(r).is_err()
            {
                // Clipped: a route has no size limit of its own, and the
                // detail is logged and stored (found by the verdict fuzz test).
                return bad(format!("returned an invalid route name {:?}", clip(r)));
            }
            Ok(Decision::Accept(Transform {
                body: a.body,
                set_headers,
                remove_headers: a.remove_headers.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
                idempotency_key: a.idempotency_key,
                route: a.route,
            }))
        }
    }
}

/// What a failure detail quotes of a plugin's string: enough to recognise it.
fn clip(s: &str) -> &str {
    crate::trigger::truncate(s, 128)
}

struct FrozenWall(u64);

impl HostWallClock for FrozenWall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0)
    }
}

struct FrozenMonotonic;

impl HostMonotonicClock for FrozenMonotonic {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{self, Accepted, Header};
    use super::*;

    fn accept(set: usize, remove: usize, value: &str, body: usize) -> Verdict {
        Verdict::Accept(Accepted {
            body: (body > 0).then(|| vec![b'x'; body]),
            set_headers: (0..set).map(|i| Header { name: format!("x-h{i}"), value: value.to_string() }).collect(),
            remove_headers: (0..remove).map(|i| format!("x-r{i}")).collect(),
            idempotency_key: None,
            route: None,
        })
    }

    /// A call that holds its thread for `stall` without using CPU (as a
    /// preempted thread would), then waits 5 ms of its own (a host call).
    async fn starved(stall: Duration) -> &'static str {
        std::thread::sleep(stall);
        tokio::time::sleep(Duration::from_millis(5)).await;
        "done"
    }

    #[tokio::test]
    async fn time_a_call_was_starved_does_not_count_against_its_wall_clock_cap() {
        let meter = Arc::new(CpuMeter::default());
        let out = within_own_time(Duration::from_millis(20), &meter, meter.meter(starved(Duration::from_millis(60)))).await;
        assert_eq!(out.ok(), Some("done"), "a call the machine did not run for 60 ms is not cut at a 20 ms cap");
        assert!(meter.stalled() >= Duration::from_millis(50), "{:?}", meter.stalled());
        // The cap moves by at most MAX_STALL_FACTOR x itself: a call starved
        // for longer, then waiting 5 ms of its own, is cut.
        let meter = Arc::new(CpuMeter::default());
        let cap = Duration::from_millis(10);
        assert!(within_own_time(cap, &meter, meter.meter(starved(cap * (MAX_STALL_FACTOR * 3)))).await.is_err());
    }

    #[tokio::test]
    async fn time_a_call_spends_waiting_in_a_host_call_is_its_own() {
        let meter = Arc::new(CpuMeter::default());
        let sleeping = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            "done"
        };
        assert!(within_own_time(Duration::from_millis(20), &meter, meter.meter(sleeping)).await.is_err(), "a sleep is cut at the cap");
    }

    fn kind(r: Result<Decision, Failure>) -> Option<FailureKind> {
        r.err().map(|f| f.kind)
    }

    #[test]
    fn header_changes_are_bounded_in_count_and_bytes() {
        let cap = 1 << 20;
        assert_eq!(kind(check(accept(32, 32, "v", 0), cap)), None);
        assert_eq!(kind(check(accept(33, 32, "v", 0), cap)), Some(FailureKind::MalformedOutput));
        assert_eq!(kind(check(accept(10_000, 0, "v", 0), cap)), Some(FailureKind::MalformedOutput));
        // 8 headers of ~2 KiB: within the count, over 16 KiB.
        assert_eq!(kind(check(accept(8, 0, &"v".repeat(2100), 0), cap)), Some(FailureKind::MalformedOutput));
        assert_eq!(kind(check(accept(8, 0, &"v".repeat(1900), 0), cap)), None);
    }

    #[test]
    fn header_change_bytes_count_in_the_output_cap() {
        let cap = 1000;
        assert_eq!(kind(check(accept(0, 0, "", 1000), cap)), None);
        assert_eq!(kind(check(accept(1, 0, "v", 1000), cap)), Some(FailureKind::MalformedOutput));
    }

    #[test]
    fn a_plugin_key_follows_the_sender_rule() {
        let with_key = |k: &str| {
            Verdict::Accept(Accepted {
                body: None,
                set_headers: Vec::new(),
                remove_headers: Vec::new(),
                idempotency_key: Some(k.into()),
                route: None,
            })
        };
        assert_eq!(kind(check(with_key("order-1"), 1024)), None);
        for bad in ["", "a b", "a\tb"] {
            assert_eq!(kind(check(with_key(bad), 1024)), Some(FailureKind::MalformedOutput), "{bad:?}");
        }
    }

    fn arb_verdict() -> impl proptest::strategy::Strategy<Value = Verdict> {
        use proptest::prelude::*;
        let text = || prop_oneof![any::<String>(), "[a-zA-Z0-9._-]{0,70}", "[ -~]{0,30}", Just(String::new())];
        let name = prop_oneof![
            text(),
            prop::sample::select(vec!["Authorization", "content-type", "X-Sig", "cookie", "Host", "content-length", "x-a b"])
                .prop_map(String::from),
        ];
        let header = (name.clone(), text()).prop_map(|(name, value)| Header { name, value });
        let accept = (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            proptest::collection::vec(header, 0..6),
            proptest::collection::vec(name, 0..4),
            proptest::option::of(text()),
            proptest::option::of(text()),
        )
            .prop_map(|(body, set_headers, remove_headers, idempotency_key, route)| {
                Verdict::Accept(Accepted { body, set_headers, remove_headers, idempotency_key, route })
            });
        prop_oneof![
            4 => accept,
            1 => (any::<u16>(), text()).prop_map(|(status, reason)| Verdict::Reject(bindings::Rejected { status, reason })),
            1 => Just(Verdict::Drop),
        ]
    }

    proptest::proptest! {
        #![proptest_config(crate::config::fuzz::fuzz_config(1024))]

        /// Any verdict: accepted only when everything it carries can be
        /// stored and applied; otherwise MalformedOutput with a short detail.
        #[test]
        fn verdict_fuzz(verdict in arb_verdict(), cap in 0usize..200) {
            use proptest::prop_assert;
            match check(verdict, cap) {
                Ok(Decision::Accept(t)) => {
                    let header_bytes: usize = t.set_headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
                        + t.remove_headers.iter().map(String::len).sum::<usize>();
                    prop_assert!(t.body.as_ref().map_or(0, Vec::len) + header_bytes <= cap);
                    for (name, value) in &t.set_headers {
                        prop_assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|h| h.as_str() == name), "{:?}", name);
                        prop_assert!(http::HeaderValue::from_str(value).is_ok(), "{:?}", value);
                        prop_assert!(crate::trigger::is_stored_header(name), "{:?}", name);
                    }
                    for name in &t.remove_headers {
                        prop_assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|h| h.as_str() == name), "{:?}", name);
                    }
                    if let Some(k) = &t.idempotency_key {
                        prop_assert!(crate::trigger::check_idempotency_key(k).is_ok(), "{:?}", k);
                    }
                    if let Some(r) = &t.route {
                        prop_assert!(crate::config::validate_label(r).is_ok(), "{:?}", r);
                    }
                }
                Ok(Decision::Reject { status, reason }) => prop_assert!((400..=499).contains(&status) && reason.len() <= 1024),
                Ok(Decision::Drop) => {}
                Err(f) => {
                    prop_assert!(f.kind == FailureKind::MalformedOutput, "{:?}", f.kind);
                    prop_assert!(!f.detail.is_empty() && f.detail.len() <= 512, "detail of {} bytes: {}", f.detail.len(), f.detail);
                }
            }
        }
    }

    /// Found by `verdict_fuzz`: a removal of a non-header was accepted and
    /// stored; a long invalid route was quoted whole in the detail.
    #[test]
    fn removals_are_header_names_and_details_are_short() {
        let mut v = accept(0, 0, "", 0);
        if let Verdict::Accept(a) = &mut v {
            a.remove_headers.push("not a header\n".into());
        }
        let f = check(v, 1024).expect_err("refused");
        assert!(f.detail.contains("removed an invalid header name"), "{}", f.detail);
        let mut v = accept(0, 0, "", 0);
        if let Verdict::Accept(a) = &mut v {
            a.route = Some("/".repeat(100_000));
        }
        let f = check(v, 1024).expect_err("refused");
        assert!(f.kind == FailureKind::MalformedOutput && f.detail.len() < 300, "{} bytes", f.detail.len());
    }
}
