//! Parsing of the HTTP `Retry-After` response header into a wait duration.
//!
//! RFC 9110 §10.2.3 allows either delta-seconds (`120`) or an HTTP-date.
//! Upstreams are untrusted: anything malformed is ignored (`None`) and
//! anything huge is clamped to a caller-chosen maximum, so a hostile or buggy
//! endpoint cannot park deliveries for years.

use std::time::{Duration, SystemTime};

/// Turns a `Retry-After` value into how long to wait from `now`.
///
/// - delta-seconds (`1*DIGIT`) → that many seconds;
/// - an HTTP-date (IMF-fixdate, or the obsolete RFC 850 / asctime forms) →
///   the time left until it, or [`Duration::ZERO`] if it is already past;
/// - anything else → `None`.
///
/// The result never exceeds `max`.
pub fn parse_retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    // Header values may carry optional whitespace around them.
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        delta_seconds(value)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        // A date in the past (or clock skew) means "retry now", not "never".
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(max))
}

/// Same as [`parse_retry_after`], for a raw header value that may not be text.
pub fn parse_retry_after_bytes(value: &[u8], now: SystemTime, max: Duration) -> Option<Duration> {
    parse_retry_after(std::str::from_utf8(value).ok()?, now, max)
}

/// Digits only (checked by the caller). A value too large for u64 is still a
/// well-formed delay, just an absurd one: RFC 9111 §1.2.2 says to treat it as
/// the largest representable value, which the caller then clamps.
fn delta_seconds(digits: &str) -> Duration {
    Duration::from_secs(digits.parse::<u64>().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(3600);

    /// Wed, 21 Oct 2015 07:28:00 GMT
    fn base() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn parse(v: &str) -> Option<Duration> {
        parse_retry_after(v, base(), MAX)
    }

    #[test]
    fn delta_seconds_parse() {
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("007"), Some(Duration::from_secs(7)));
        assert_eq!(parse("  30\t"), Some(Duration::from_secs(30)));
    }

    #[test]
    fn delta_seconds_are_capped() {
        assert_eq!(parse("3601"), Some(MAX));
        assert_eq!(parse("18446744073709551615"), Some(MAX));
        // Beyond u64: still digits, so still a (capped) delay.
        assert_eq!(parse("99999999999999999999999999999"), Some(MAX));
    }

    #[test]
    fn http_date_in_future() {
        assert_eq!(parse("Wed, 21 Oct 2015 07:30:00 GMT"), Some(Duration::from_secs(120)));
        // Obsolete forms are still accepted by recipients (RFC 9110 §5.6.7).
        assert_eq!(parse("Wednesday, 21-Oct-15 07:29:00 GMT"), Some(Duration::from_secs(60)));
        assert_eq!(parse("Wed Oct 21 07:28:30 2015"), Some(Duration::from_secs(30)));
    }

    #[test]
    fn http_date_now_or_past_is_zero() {
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("Tue, 20 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
    }

    #[test]
    fn http_date_far_future_is_capped() {
        assert_eq!(parse("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX));
    }

    #[test]
    fn sub_second_now_is_handled() {
        let now = base() + Duration::from_millis(250);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:01 GMT", now, MAX), Some(Duration::from_millis(750)));
    }

    #[test]
    fn garbage_is_none() {
        for v in [
            "",
            "   ",
            "-5",
            "+5",
            "1.5",
            "1e3",
            "12 34",
            "soon",
            "120s",
            "Wed, 21 Oct 2015 07:28:00",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
            "٣", // a non-ASCII digit
        ] {
            assert_eq!(parse(v), None, "{v:?}");
        }
    }

    #[test]
    fn zero_max_clamps_everything() {
        assert_eq!(parse_retry_after("120", base(), Duration::ZERO), Some(Duration::ZERO));
    }

    #[test]
    fn bytes_variant() {
        assert_eq!(parse_retry_after_bytes(b"5", base(), MAX), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after_bytes(&[0xff, 0x31], base(), MAX), None);
    }
}
