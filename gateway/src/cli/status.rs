//! `weir status` for people: every field of `/v1/status` an operator acts on,
//! in human units, with each upstream's error whole on its own line and
//! marked as current or as past (a healthy upstream's old error is history).

use std::fmt::Write;

use serde_json::Value;

use super::{AdminClient, CliError, Global, human, print_json, str_of, table};

pub async fn status(g: &Global) -> Result<(), CliError> {
    let s = AdminClient::new(g)?.get("/v1/status").await?;
    if g.json {
        print_json(&s);
    } else {
        print!("{}", render(&s));
    }
    Ok(())
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The whole report; pure, so it is tested on the API's documented example.
pub fn render(s: &Value) -> String {
    let mut out = String::new();
    let ready = if s["ready"] == true {
        "ready".to_string()
    } else {
        "NOT READY: the store refuses writes (budget, free-space reserve or a shard; see /readyz)".to_string()
    };
    let _ = writeln!(out, "weir {}  {ready}", str_of(&s["version"]));
    let oldest = match s["oldest_pending_age_ms"].as_u64() {
        Some(ms) => format!(" (oldest pending {})", human::duration_ms(ms)),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "{:<11}pending {}{oldest}  delivered {}  dead {}  quarantined {}",
        "triggers",
        count(&s["pending"]),
        count(&s["delivered"]),
        count(&s["dead"]),
        count(&s["quarantined"])
    );
    let _ = writeln!(out, "{:<11}{}", "store", store_line(s));
    if let (Some(free), Some(reserve)) = (s["free_bytes"].as_u64(), s["min_free_bytes"].as_u64()) {
        let _ = writeln!(out, "{:<11}{} free (reserve {})", "disk", human::bytes(free), human::bytes(reserve));
    }
    let _ = writeln!(out, "{:<11}{}", "delivery", delivery_line(s));
    let _ = writeln!(out, "{:<11}{}", "tenants", tenants_line(s));
    fleet_lines(&mut out, &s["fleet"]);
    out.push('\n');
    out.push_str(&upstreams(s));
    if let Some(routes) = s["routes"].as_array().filter(|r| r.len() > 1 || r.iter().any(|r| !r["name"].is_null())) {
        out.push('\n');
        let rows: Vec<(Vec<String>, Vec<String>)> = routes
            .iter()
            .map(|r| {
                let name = r["name"].as_str().unwrap_or("(default)").to_string();
                let ups: Vec<String> = r["upstreams"].as_array().map(|u| u.iter().map(str_of).collect()).unwrap_or_default();
                (vec![name, ups.join(", ")], Vec::new())
            })
            .collect();
        out.push_str(&table::render(&["ROUTE", "UPSTREAMS (failover order)"], &rows));
    }
    out
}

fn store_line(s: &Value) -> String {
    let (used, budget) = (count(&s["used_bytes"]), count(&s["budget_bytes"]));
    let share = if budget == 0 { 0.0 } else { used as f64 * 100.0 / budget as f64 };
    let mut line = format!("{} of {} budget ({share:.1} %)", human::bytes(used), human::bytes(budget));
    let (shards, writable) = (count(&s["shards"]), count(&s["writable_shards"]));
    let _ = write!(line, "  files {} in {shards} shard(s)", human::bytes(count(&s["store_bytes"])));
    if writable < shards {
        let _ = write!(line, ", only {writable} writable");
    }
    line
}

fn delivery_line(s: &Value) -> String {
    let rate = s["delivery_rate_per_sec"].as_f64().unwrap_or(0.0);
    let mut line = format!(
        "{rate:.1}/s ({} in the last minute)  in flight {}  retries waiting {}",
        count(&s["delivered_last_minute"]),
        count(&s["in_flight"]),
        count(&s["retries_waiting"])
    );
    let unrecorded = count(&s["outcomes_unrecorded"]);
    if unrecorded > 0 {
        let _ = write!(line, "  outcomes unrecorded {unrecorded} (the store refuses writes; kept and retried)");
    }
    let _ = write!(line, "  replays running {}", count(&s["replays_running"]));
    line
}

/// Every tenant served, paused ones marked; a paused tenant the directory no
/// longer lists is still shown (its triggers are held).
fn tenants_line(s: &Value) -> String {
    let names = |v: &Value| -> Vec<String> { v.as_array().map(|a| a.iter().map(str_of).collect()).unwrap_or_default() };
    let paused = names(&s["paused_tenants"]);
    let mut tenants = names(&s["tenants"]);
    for p in &paused {
        if !tenants.contains(p) {
            tenants.push(p.clone());
        }
    }
    if tenants.is_empty() {
        return "none".into();
    }
    let listed: Vec<String> =
        tenants.iter().map(|t| if paused.contains(t) { format!("{t} (PAUSED: held, not forwarded)") } else { t.clone() }).collect();
    format!("{} ({} paused)  {}", tenants.len(), paused.len(), listed.join(", "))
}

fn fleet_lines(out: &mut String, fleet: &Value) {
    if fleet.is_null() {
        return;
    }
    let nats = if fleet["connected"] == true { "NATS connected" } else { "NATS NOT connected (serving on; fleet changes wait)" };
    let _ = writeln!(out, "{:<11}PoP {}, {nats}", "fleet", str_of(&fleet["pop"]));
    for r in fleet["rejected"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  refused {} (revision {}): {}", str_of(&r["key"]), str_of(&r["revision"]), str_of(&r["reason"]));
    }
}

fn upstreams(s: &Value) -> String {
    let rows: Vec<(Vec<String>, Vec<String>)> = s["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let mut state = str_of(&u["state"]);
            if let Some(out) = u["out_for_ms"].as_u64() {
                let _ = write!(state, " for {}", human::duration_ms(out));
            }
            if let Some(held) = u["held_for_ms"].as_u64() {
                let _ = write!(state, " (Retry-After: held {})", human::duration_ms(held));
            }
            let row = vec![
                str_of(&u["url"]),
                state,
                str_of(&u["in_flight"]),
                str_of(&u["attempts"]),
                str_of(&u["delivered"]),
                str_of(&u["failures"]),
            ];
            (row, last_error(u).into_iter().collect())
        })
        .collect();
    table::render(&["UPSTREAM", "STATE", "IN FLIGHT", "ATTEMPTS", "DELIVERED", "FAILURES"], &rows)
}

/// The upstream's last error, whole: current while it is not healthy, past
/// ("recovered") once it is.
fn last_error(u: &Value) -> Option<String> {
    let error = u["last_error"].as_str()?;
    let ago = u["last_error_age_ms"].as_u64().map(|ms| format!(" {} ago", human::duration_ms(ms))).unwrap_or_default();
    if u["state"] == "healthy" { Some(format!("recovered; last error{ago}: {error}")) } else { Some(format!("error{ago}: {error}")) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// The example of `GET /v1/status` in docs/api.md, with a paused tenant.
    fn example() -> serde_json::Value {
        json!({"pending": 3, "backlog": 3, "delivered": 120, "dead": 1, "quarantined": 0,
         "store_bytes": 1589248, "used_bytes": 3321, "budget_bytes": 1073741824,
         "free_bytes": 52613349376u64, "min_free_bytes": 268435456,
         "oldest_pending_age_ms": 5120, "shards": 1, "writable_shards": 1, "ready": true,
         "upstreams": [
           {"url": "http://10.0.0.5:9000/triggers", "state": "open", "in_flight": 0, "attempts": 41,
            "delivered": 30, "failures": 11, "last_error": "connect failed: tcp connect error: Connection refused (os error 111)",
            "last_error_age_ms": 2500, "out_for_ms": 840000, "held_for_ms": null},
           {"url": "http://10.0.0.6:9000/triggers", "state": "healthy", "in_flight": 2, "attempts": 90,
            "delivered": 90, "failures": 1, "last_error": "HTTP 503: overloaded", "last_error_age_ms": 840000, "held_for_ms": null}],
         "routes": [
           {"name": null, "upstreams": ["http://10.0.0.5:9000/triggers", "http://10.0.0.6:9000/triggers"]},
           {"name": "github", "upstreams": ["http://10.0.0.6:9000/triggers"]}],
         "paused_tenants": ["globex"], "in_flight": 2, "retries_waiting": 3, "outcomes_unrecorded": 0,
         "delivered_last_minute": 120, "delivery_rate_per_sec": 2.0, "replays_running": 0,
         "tenants": ["acme", "globex", "initech"],
         "fleet": {"pop": "fra1", "connected": true,
                   "rejected": [{"key": "tenants.bad", "revision": 42, "reason": "value is not valid JSON for this key"}]},
         "version": "0.1.0"})
    }

    #[test]
    fn status_shows_human_units_paused_tenants_the_fleet_and_whole_errors() {
        let out = super::render(&example());
        for want in [
            "weir 0.1.0  ready",
            "pending 3 (oldest pending 5.1 s)  delivered 120  dead 1  quarantined 0",
            "3.2 KiB of 1.0 GiB budget (0.0 %)  files 1.5 MiB in 1 shard(s)",
            "49.0 GiB free (reserve 256.0 MiB)",
            "2.0/s (120 in the last minute)  in flight 2  retries waiting 3",
            "3 (1 paused)  acme, globex (PAUSED: held, not forwarded), initech",
            "PoP fra1, NATS connected",
            "open for 14 min",
            "refused tenants.bad (revision 42): value is not valid JSON for this key",
            "  error 2.5 s ago: connect failed: tcp connect error: Connection refused (os error 111)\n",
            "  recovered; last error 14 min ago: HTTP 503: overloaded\n",
            "github     http://10.0.0.6:9000/triggers",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
        assert!(!out.contains("bytes"), "no raw byte counts:\n{out}");
    }

    #[test]
    fn nothing_pending_not_ready_and_a_held_upstream_read_plainly() {
        let mut s = example();
        s["oldest_pending_age_ms"] = serde_json::Value::Null;
        s["ready"] = false.into();
        s["upstreams"][0]["state"] = "degraded".into();
        s["upstreams"][0]["held_for_ms"] = 30_000.into();
        // A Retry-After hold with the breaker closed: not an outage.
        s["upstreams"][0]["out_for_ms"] = serde_json::Value::Null;
        s["fleet"] = serde_json::Value::Null;
        s["outcomes_unrecorded"] = 4.into();
        let out = super::render(&s);
        assert!(!out.contains("oldest") && !out.contains(" - "), "{out}");
        assert!(out.contains("NOT READY"), "{out}");
        assert!(out.contains("degraded (Retry-After: held 30.0 s)"), "{out}");
        assert!(out.contains("outcomes unrecorded 4"), "{out}");
        assert!(!out.contains("fleet"), "{out}");
    }
}
