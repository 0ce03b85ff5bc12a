//! One plugin call: a fresh Store and instance, limits, deadline, and the
//! checks on what the plugin returned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::Loaded;
use super::bindings::{HostState, Trigger, Verdict};

/// What a plugin sees of a trigger.
#[derive(Debug, Clone)]
pub struct Input {
    pub tenant: String,
    pub source: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub received_at_ms: u64,
}

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
    /// The verdict broke the contract (status outside 400..=499, output too large, bad header).
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
}

/// Wall-clock cap on a call, as a multiple of its CPU budget.
const WALL_FACTOR: u32 = 4;

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a
    // constant the kernel always supports on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Plugin stderr kept for the failure detail (panic messages land there).
const STDERR_CAP: usize = 2048;

impl Input {
    /// What the plugin is called with. Built once per trigger: an inline
    /// call that is run again on the pool reuses it.
    pub(super) fn into_trigger(self) -> Trigger {
        Trigger {
            tenant: self.tenant,
            source: self.source,
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers.into_iter().map(|(name, value)| super::bindings::Header { name, value }).collect(),
            body: self.body.to_vec(),
            received_at_ms: self.received_at_ms,
        }
    }
}

impl Job {
    /// One call on a fresh instance, within `timeout` of CPU time.
    pub(super) fn run(&self, trigger: &Trigger, timeout: Duration) -> Result<Decision, Failure> {
        let started = Instant::now();
        let stderr = MemoryOutputPipe::new(STDERR_CAP);
        // No capabilities: no files, sockets or environment; the clocks are
        // frozen at the trigger's arrival, the only time the WIT gives.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
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
                limits,
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
        // The budget is the CPU time this thread spends on the call, so a busy
        // machine does not quarantine a well-behaved plugin; a wall-clock cap
        // of WALL_FACTOR x the budget bounds how long a slot can be held.
        let cpu_start = thread_cpu_time();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let cpu = thread_cpu_time().saturating_sub(cpu_start);
            Ok(if cpu >= timeout || started.elapsed() >= timeout * WALL_FACTOR {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        let outcome = self.loaded.pre.instantiate(&mut store).and_then(|instance| instance.call_handle(&mut store, trigger));
        match outcome {
            Ok(verdict) => check(verdict, self.max_output_bytes),
            Err(e) => Err(classify(&e, started.elapsed() >= timeout * WALL_FACTOR, &stderr, timeout)),
        }
    }
}

fn classify(e: &wasmtime::Error, past_deadline: bool, stderr: &MemoryOutputPipe, timeout: Duration) -> Failure {
    let text = format!("{e:#}");
    let trap = e.downcast_ref::<Trap>().copied();
    let out = String::from_utf8_lossy(&stderr.contents()).trim().to_string();
    let with_stderr = |d: String| if out.is_empty() { d } else { format!("{d}; plugin stderr: {out}") };
    if trap == Some(Trap::Interrupt) || (past_deadline && trap.is_none()) {
        return Failure {
            kind: FailureKind::Deadline,
            detail: format!("did not finish within its {} ms budget (CPU time; wall-clock cap {}x)", timeout.as_millis(), WALL_FACTOR),
        };
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
            Ok(Decision::Reject { status: r.status, reason: super::bindings::truncate(&r.reason, 1024).to_string() })
        }
        Verdict::Accept(a) => {
            if let Some(body) = &a.body
                && body.len() > max_output
            {
                return bad(format!("returned a {} byte body, over the {max_output} byte cap", body.len()));
            }
            let mut set_headers = Vec::with_capacity(a.set_headers.len());
            for h in a.set_headers {
                let name = h.name.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(&h.value).is_err() {
                    return bad(format!("set an invalid header {:?}", h.name));
                }
                if !crate::ingest::is_stored_header(&name) {
                    return bad(format!("set header {name:?}, which Weir never stores"));
                }
                set_headers.push((name, h.value));
            }
            if let Some(k) = &a.idempotency_key
                && (k.is_empty() || k.len() > crate::ingest::IDEMPOTENCY_KEY_MAX || !k.bytes().all(|b| b.is_ascii_graphic()))
            {
                return bad("returned an idempotency key that is empty, too long or not visible ASCII".into());
            }
            if let Some(r) = &a.route
                && crate::config::validate_label(r).is_err()
            {
                return bad(format!("returned an invalid route name {r:?}"));
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
