//! Forwarding: deliver pending triggers upstream once it is healthy,
//! without making a sick upstream sicker.
//!
//! `scheduler` owns all scheduling state in one task; `deliver` makes one
//! HTTP attempt. The policy pieces are pure and deterministic (time and
//! randomness passed in): backoff with full jitter, `Retry-After` parsing, a
//! circuit breaker with probes and slow start, and a retry budget.
//! The forwarder reads only from the store; nothing in ingest waits on it.

pub mod backoff;
pub mod breaker;
pub mod budget;
mod deliver;
pub mod retry_after;
mod scheduler;

pub use scheduler::{ForwardError, ForwardStatus, Forwarder, UpstreamStatus};
