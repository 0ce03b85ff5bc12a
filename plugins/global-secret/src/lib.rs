//! `global-secret`: checks that no state survives from one trigger to the
//! next (Weir runs a fresh instance per trigger).
//!
//! On each call: if the global already holds a body from an earlier call,
//! the plugin rejects with `409 leaked: <that body>`; otherwise it stores
//! this trigger's body in the global and accepts with body `clean`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

static SECRET: Mutex<Option<Vec<u8>>> = Mutex::new(None);
static CALLS: AtomicU32 = AtomicU32::new(0);

struct GlobalSecret;

impl Plugin for GlobalSecret {
    fn handle(trigger: Trigger) -> Verdict {
        let earlier_calls = CALLS.fetch_add(1, Ordering::SeqCst);
        let mut secret = SECRET.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = secret.as_ref() {
            return Verdict::reject(
                409,
                format!("leaked: {}", String::from_utf8_lossy(previous)),
            );
        }
        if earlier_calls > 0 {
            return Verdict::reject(409, format!("leaked: {earlier_calls} earlier call(s)"));
        }
        *secret = Some(trigger.body);
        Verdict::accept_with_body(b"clean".as_slice())
    }
}

export_plugin!(GlobalSecret);
