//! What a trigger may carry, and how it changes: the rules ingest, replay,
//! the plugin host and the forwarder share, each written once.
//!
//! - `headers`: which request headers are stored (and so forwarded and shown
//!   to plugins), and what a valid idempotency key is;
//! - `verdict`: applying an accepted verdict's changes, quarantining a
//!   trigger whose plugin failed, bounding the notes a record carries.
//!
//! The plugin's input is built from what these rules stored, in one place:
//! `plugin::Input::of`, for ingest and replay alike.

mod headers;
mod verdict;

pub use headers::{IDEMPOTENCY_KEY_MAX, KeyError, check_idempotency_key, idempotency_key_of, is_stored_header, stored as stored_headers};
pub use verdict::{NOTE_MAX, apply_transform, note, quarantine, truncate};
