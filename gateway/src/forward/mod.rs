//! Forwarding policy: the pure, deterministic pieces the forwarder is built
//! from (backoff with full jitter, `Retry-After` parsing, a circuit breaker
//! with slow start, a retry budget). Time and randomness are passed in, so
//! every rule is unit-tested without sleeping. The delivery loop that drives
//! them against the store and the upstreams is the forwarding issue's work.

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod retry_after;
