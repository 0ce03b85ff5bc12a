//! Numbers for people: durations ("5.1 s", "14 min"), byte sizes ("1.2 GiB"),
//! and the relative times operators type (`--since 1h`, `30m`, `2d`).

use std::time::{SystemTime, UNIX_EPOCH};

/// A duration in milliseconds, in the largest unit that keeps it readable.
pub fn duration_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const MIN: u64 = 60 * S;
    const H: u64 = 60 * MIN;
    const D: u64 = 24 * H;
    match ms {
        0..S => format!("{ms} ms"),
        // Tenths cut, not rounded: 59.99 s is not "60.0 s".
        S..MIN => format!("{}.{} s", ms / S, ms % S / 100),
        // Minutes and seconds while the seconds still matter.
        MIN..=599_999 => format!("{} min {} s", ms / MIN, ms % MIN / S),
        600_000..H => format!("{} min", ms / MIN),
        H..D => format!("{} h {} min", ms / H, ms % H / MIN),
        _ => format!("{} d {} h", ms / D, ms % D / H),
    }
}

/// A byte count in binary units (the budget and the disk are sized so).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A relative duration: one or more `<number><unit>` with units `ms`, `s`,
/// `m` (minutes), `h`, `d`, `w` (`90s`, `30m`, `1h30m`, `2d`). `None` when
/// `text` is not one.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(scale)?)?;
    }
    Some(total)
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What `--since` / `--until` take, as the admin API takes it: Unix ms and
/// RFC 3339 (checked by the API's own parser) pass through, a relative
/// duration becomes that long before `now_ms`.
pub fn time_arg(flag: &str, text: &str, now_ms: u64) -> Result<String, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.to_string());
    }
    if let Some(ago) = parse_duration_ms(text) {
        return Ok(now_ms.saturating_sub(ago).to_string());
    }
    // The admin API's own parser: a time it would refuse is refused here, with the flag's name.
    if crate::http::parse_rfc3339(text).is_some() {
        return Ok(text.to_string());
    }
    Err(format!(
        "{flag} {text:?}: give a relative duration (30m, 1h, 2d, 1h30m), an RFC 3339 time (2026-11-24T02:49:51Z) or Unix milliseconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_ms(0), "0 ms");
        assert_eq!(duration_ms(999), "999 ms");
        assert_eq!(duration_ms(5_120), "5.1 s");
        assert_eq!(duration_ms(59_999), "59.9 s");
        assert_eq!(duration_ms(60_000), "1 min 0 s");
        assert_eq!(duration_ms(252_000), "4 min 12 s");
        assert_eq!(duration_ms(14 * 60_000 + 5_000), "14 min");
        assert_eq!(duration_ms(2 * 3_600_000 + 5 * 60_000), "2 h 5 min");
        assert_eq!(duration_ms(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(3321), "3.2 KiB");
        assert_eq!(bytes(1_589_248), "1.5 MiB");
        assert_eq!(bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(bytes(52_613_349_376), "49.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn relative_durations_parse_and_others_do_not() {
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("30m"), Some(1_800_000));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1w"), Some(604_800_000));
        for bad in ["", "h", "1", "1x", "1.5h", "-1h", "2026-11-24", "99999999999999999999d"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_arguments_resolve_relative_ones_and_pass_the_rest() {
        let now = 1_795_488_591_123;
        assert_eq!(time_arg("--since", "1h", now), Ok((now - 3_600_000).to_string()));
        assert_eq!(time_arg("--since", "1795488591123", now), Ok("1795488591123".into()));
        assert_eq!(time_arg("--since", "2026-11-24T02:49:51Z", now), Ok("2026-11-24T02:49:51Z".into()));
        let err = time_arg("--since", "yesterday", now).unwrap_err();
        assert!(err.contains("--since \"yesterday\"") && err.contains("30m"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(crate::config::fuzz::fuzz_config(1024))]

        /// Any `--since`/`--until` text: resolved, or refused naming the flag.
        #[test]
        fn time_arg_fuzz(text in proptest::prop_oneof![
            proptest::prelude::any::<String>(),
            "[0-9]{0,22}([a-z]{1,3}[0-9]{0,22}){0,3}",
            "[0-9]{4}-[\\PC]{0,30}",
        ]) {
            let now = 1_795_488_591_123;
            match time_arg("--since", &text, now) {
                Ok(v) => proptest::prop_assert!(!v.is_empty()),
                Err(e) => proptest::prop_assert!(e.starts_with("--since ") && e.contains("RFC 3339"), "{}", e),
            }
        }
    }
}
