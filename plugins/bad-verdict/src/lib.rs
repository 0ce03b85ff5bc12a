//! `bad-verdict` (hostile): rejects with status 200, outside the `400..=499`
//! range the contract allows. The host must treat this as a plugin fault
//! (quarantine, or 503 with `on_plugin_error = "reject"`), never answer the
//! sender 200.

use weir_plugin_sdk::{Plugin, Rejected, Trigger, Verdict, export_plugin};

struct BadVerdict;

impl Plugin for BadVerdict {
    fn handle(_trigger: Trigger) -> Verdict {
        Verdict::Reject(Rejected {
            status: 200,
            reason: "a rejection with a success status".into(),
        })
    }
}

export_plugin!(BadVerdict);
