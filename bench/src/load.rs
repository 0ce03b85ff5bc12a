//! The load generator: `C` keep-alive HTTP/1.1 connections, one virtual user
//! each, against one target (HTTPS, and then HTTP/1.1 or HTTP/2 by ALPN, when
//! the target carries a TLS client configuration).
//!
//! * **Closed loop** ([`Pace::Closed`]): every connection sends its next
//!   request as soon as the previous answer is read (maximum throughput).
//! * **Open loop** ([`Pace::Open`]): requests are scheduled at a fixed total
//!   rate, spread evenly over the connections. Latency is measured from the
//!   *scheduled* time whenever the connection was still busy with the previous
//!   answer at that time, so a stalled server is charged for the requests it
//!   held back (no coordinated omission). When the connection was idle, the
//!   clock starts at the actual send, so timer lateness (tokio's timer ticks
//!   in milliseconds) is not charged to the server.
//!
//! Only answers completed inside the measurement window (after the warm-up)
//! count, and latencies go into HDR histograms (1 µs resolution, 3
//! significant digits), one per connection, merged at the end.
//!
//! [`churn`] measures connection setup instead: each virtual user opens a
//! fresh connection per request and closes it after the answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method, StatusCode};
use rustls::ClientConfig;

use crate::client::{self, Conn};

/// What every request of a load run looks like.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// HTTPS with this client configuration (its ALPN picks HTTP/1.1 or h2).
    pub tls: Option<Arc<ClientConfig>>,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status that counts as a success (202 for ingest and bare).
    pub expect: StatusCode,
}

impl Target {
    /// A POST of `body` to `path` with extra headers.
    pub fn post(addr: SocketAddr, path: &str, body: Bytes, extra: &[(&str, String)]) -> anyhow::Result<Target> {
        let mut headers = client::base_headers(addr);
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            let value = value.parse().with_context(|| format!("header value for {name}"))?;
            let name: http::HeaderName = name.parse().with_context(|| format!("header name {name}"))?;
            headers.insert(name, value);
        }
        Ok(Target { addr, tls: None, method: Method::POST, path: path.to_string(), headers, body, expect: StatusCode::ACCEPTED })
    }

    /// A GET of `path` expecting 200.
    pub fn get(addr: SocketAddr, path: &str) -> Target {
        Target {
            addr,
            tls: None,
            method: Method::GET,
            path: path.to_string(),
            headers: client::base_headers(addr),
            body: Bytes::new(),
            expect: StatusCode::OK,
        }
    }

    /// The same requests over HTTPS with `tls` (`None`: plain HTTP).
    pub fn with_tls(mut self, tls: Option<Arc<ClientConfig>>) -> Target {
        self.tls = tls;
        self
    }

    /// A new connection to the target.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        Conn::open_with(self.addr, self.tls.as_ref()).await
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Pace {
    Closed,
    /// Requests per second, all connections together.
    Open(f64),
}

/// How long and how hard to push.
#[derive(Clone)]
pub struct Plan {
    pub pace: Pace,
    pub connections: usize,
    pub warmup: Duration,
    /// Length of the measurement window; `None`: until `stop` or `max_ok`.
    pub duration: Option<Duration>,
    /// Stop once this many successes were counted.
    pub max_ok: Option<u64>,
    /// Stop when this turns true.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Plan {
    pub fn closed(connections: usize, warmup: Duration, duration: Duration) -> Plan {
        Plan { pace: Pace::Closed, connections, warmup, duration: Some(duration), max_ok: None, stop: None }
    }

    pub fn open(rate: f64, connections: usize, warmup: Duration, duration: Duration) -> Plan {
        Plan { pace: Pace::Open(rate), ..Plan::closed(connections, warmup, duration) }
    }
}

/// What a load run measured inside its window.
pub struct Outcome {
    /// Answers with the expected status.
    pub ok: u64,
    /// Other statuses and their counts.
    pub other: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors).
    pub errors: u64,
    /// Length of the measurement window.
    pub elapsed: Duration,
    /// Latency of every answer in the window, in microseconds.
    pub hist: Histogram<u64>,
}

impl Outcome {
    /// Successes per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Every request attempted in the window.
    pub fn total(&self) -> u64 {
        self.ok + self.other.values().sum::<u64>() + self.errors
    }

    /// Percentage of requests answered with the expected status.
    pub fn ok_percent(&self) -> f64 {
        100.0 * self.ok as f64 / (self.total().max(1)) as f64
    }

    /// Anything but the expected status, for notes.
    pub fn failures(&self) -> Option<String> {
        if self.other.is_empty() && self.errors == 0 {
            return None;
        }
        let mut parts: Vec<String> = self.other.iter().map(|(s, n)| format!("{n}× {s}")).collect();
        if self.errors > 0 {
            parts.push(format!("{} connection errors", self.errors));
        }
        Some(parts.join(", "))
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs to 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Shared by every connection of a run.
struct Run {
    target: Target,
    plan: Plan,
    measure_from: Instant,
    end: Option<Instant>,
    ok_total: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Run {
    /// A run whose warm-up starts at `start`.
    fn new(target: &Target, plan: &Plan, start: Instant) -> Arc<Run> {
        let measure_from = start + plan.warmup;
        Arc::new(Run {
            target: target.clone(),
            plan: plan.clone(),
            measure_from,
            end: plan.duration.map(|d| measure_from + d),
            ok_total: AtomicU64::new(0),
            stop: plan.stop.clone().unwrap_or_default(),
        })
    }

    fn stopped(&self, now: Instant) -> bool {
        self.stop.load(Ordering::Relaxed) || self.end.is_some_and(|e| now >= e)
    }

    fn counts(&self, done: Instant) -> bool {
        done >= self.measure_from && self.end.is_none_or(|e| done <= e)
    }
}

/// One connection's tallies.
struct Tally {
    ok: u64,
    other: BTreeMap<u16, u64>,
    errors: u64,
    hist: Histogram<u64>,
    last: Option<Instant>,
}

impl Tally {
    fn new() -> Tally {
        Tally { ok: 0, other: BTreeMap::new(), errors: 0, hist: new_hist(), last: None }
    }
}

/// Runs the plan against the target and returns what was measured.
pub async fn run(target: &Target, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(target.connect().await?);
    }
    let start = Instant::now();
    let run = Run::new(target, plan, start);
    let tasks: Vec<_> = conns.into_iter().enumerate().map(|(k, conn)| tokio::spawn(user(run.clone(), k, conn, start))).collect();
    gather(&run, tasks).await
}

/// Merges the virtual users' tallies once they are done.
async fn gather(run: &Run, tasks: Vec<tokio::task::JoinHandle<Tally>>) -> anyhow::Result<Outcome> {
    let mut out = Outcome { ok: 0, other: BTreeMap::new(), errors: 0, elapsed: Duration::ZERO, hist: new_hist() };
    let mut last = run.measure_from;
    for t in tasks {
        let tally = t.await.context("a load connection task failed")?;
        out.ok += tally.ok;
        out.errors += tally.errors;
        for (s, n) in tally.other {
            *out.other.entry(s).or_default() += n;
        }
        out.hist.add(&tally.hist).context("merging histograms")?;
        last = last.max(tally.last.unwrap_or(run.measure_from));
    }
    out.elapsed = match run.end {
        Some(end) if !run.stop.load(Ordering::Relaxed) => end - run.measure_from,
        _ => last.saturating_duration_since(run.measure_from),
    };
    Ok(out)
}

/// One virtual user: one connection, sending per the plan's pace.
async fn user(run: Arc<Run>, k: usize, mut conn: Conn, start: Instant) -> Tally {
    let mut tally = Tally::new();
    let (interval, mut next) = match run.plan.pace {
        Pace::Closed => (Duration::ZERO, start),
        Pace::Open(rate) => {
            let rate = rate.max(0.001);
            (Duration::from_secs_f64(run.plan.connections as f64 / rate), start + Duration::from_secs_f64(k as f64 / rate))
        }
    };
    let open = matches!(run.plan.pace, Pace::Open(_));
    let mut prev_done = start;
    loop {
        if open {
            if run.stop.load(Ordering::Relaxed) || run.end.is_some_and(|e| next >= e) {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        let now = Instant::now();
        if run.stopped(now) {
            break;
        }
        // Charged from the schedule only when this connection held the request back.
        let began = if open && prev_done > next { next } else { now };
        let result = conn.send(run.target.method.clone(), &run.target.path, &run.target.headers, run.target.body.clone()).await;
        let done = Instant::now();
        prev_done = done;
        next += interval;
        match result {
            Ok((status, _)) => record(&run, &mut tally, status, began, done),
            Err(_) => {
                if run.counts(done) {
                    tally.errors += 1;
                }
                conn = match reconnect(&run).await {
                    Some(c) => c,
                    None => break,
                };
            }
        }
    }
    tally
}

fn record(run: &Run, tally: &mut Tally, status: StatusCode, began: Instant, done: Instant) {
    if status == run.target.expect {
        let total = run.ok_total.fetch_add(1, Ordering::Relaxed) + 1;
        if run.plan.max_ok.is_some_and(|m| total >= m) {
            run.stop.store(true, Ordering::Relaxed);
        }
    }
    if !run.counts(done) {
        return;
    }
    if status == run.target.expect {
        tally.ok += 1;
    } else {
        *tally.other.entry(status.as_u16()).or_default() += 1;
    }
    tally.hist.saturating_record((done - began).as_micros().max(1) as u64);
    tally.last = Some(done);
}

/// A new connection after an error, retrying until the run stops.
async fn reconnect(run: &Run) -> Option<Conn> {
    loop {
        if run.stopped(Instant::now()) {
            return None;
        }
        match run.target.connect().await {
            Ok(c) => return Some(c),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Connection churn, closed loop: each of the plan's connections (virtual
/// users) repeatedly connects (with the TLS handshake when the target has
/// TLS), sends one request, reads the answer and closes. Latency covers all
/// of it; throughput is new connections per second. The plan's pace is
/// ignored (always closed loop).
pub async fn churn(target: &Target, plan: &Plan) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let run = Run::new(target, plan, start);
    let tasks: Vec<_> = (0..plan.connections).map(|_| tokio::spawn(churn_user(run.clone()))).collect();
    gather(&run, tasks).await
}

async fn churn_user(run: Arc<Run>) -> Tally {
    let mut tally = Tally::new();
    let t = &run.target;
    loop {
        let began = Instant::now();
        if run.stopped(began) {
            break;
        }
        let result = async {
            let mut conn = t.connect().await?;
            conn.send(t.method.clone(), &t.path, &t.headers, t.body.clone()).await
            // `conn` drops here: the connection closes.
        }
        .await;
        let done = Instant::now();
        match result {
            Ok((status, _)) => record(&run, &mut tally, status, began, done),
            Err(_) => {
                if run.counts(done) {
                    tally.errors += 1;
                }
                // E.g. out of ephemeral ports: do not spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    tally
}
