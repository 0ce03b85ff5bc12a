//! Forwarding: deliver pending triggers upstream once it is healthy,
//! without making a sick upstream sicker.
//!
//! `scheduler` is the one task that owns scheduling state: it subscribes to
//! the store's commit announcements, reads pending triggers from the store,
//! asks `policy` (pure, clocked: lanes, retries, failover, breakers, the
//! retry budget) what to send where, and spawns one `attempt` per send to
//! the upstream's `target`: `deliver` makes the HTTP request, `jetstream`
//! publishes on the fleet connection; `message` is what both send.
//! `routes` maps a trigger's route to its ordered upstreams. The policy pieces are deterministic (time and
//! randomness passed in): backoff with full jitter, `Retry-After` parsing, a
//! circuit breaker with probes and slow start, and a retry budget.
//! The forwarder reads only from the store; nothing in ingest or replay talks to it.

mod attempt;
pub mod backoff;
pub mod breaker;
pub mod budget;
mod deliver;
mod jetstream;
mod message;
mod policy;
pub mod retry_after;
mod routes;
mod scheduler;
mod target;

#[cfg(test)]
mod tests;

pub use routes::RouteStatus;
pub use scheduler::{ForwardError, ForwardStatus, Forwarder, UpstreamStatus};
