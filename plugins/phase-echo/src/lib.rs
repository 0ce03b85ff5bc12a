//! `phase-echo` (test): accepts unchanged, setting `x-phase` to the phase it
//! ran in (`ingest` or `replay`) and `x-saw-credentials` to `yes` when any of
//! `authorization`, `proxy-authorization` or `cookie` reached it, else `no`.

use weir_plugin_sdk::{Accepted, Phase, Plugin, Trigger, Verdict, export_plugin};

struct PhaseEcho;

impl Plugin for PhaseEcho {
    fn handle(trigger: Trigger) -> Verdict {
        let phase = match trigger.phase {
            Phase::Ingest => "ingest",
            Phase::Replay => "replay",
        };
        let credentials = ["authorization", "proxy-authorization", "cookie"].iter().any(|h| trigger.header(h).is_some());
        Accepted::unchanged()
            .set_header("x-phase", phase)
            .set_header("x-saw-credentials", if credentials { "yes" } else { "no" })
            .into()
    }
}

export_plugin!(PhaseEcho);
