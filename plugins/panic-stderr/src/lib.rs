//! `panic-stderr` (hostile): panics. The standard library's panic hook writes
//! the message to stderr (a WASI output stream) before the abort traps, so
//! the host must capture it into the failure note (`trap` fault).

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct PanicStderr;

impl Plugin for PanicStderr {
    fn handle(trigger: Trigger) -> Verdict {
        panic!("panic-stderr plugin gives up on {} bytes", trigger.body.len());
    }
}

export_plugin!(PanicStderr);
