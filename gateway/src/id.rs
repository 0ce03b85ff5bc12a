//! Trigger ids: unique, URL-safe, sortable by arrival time.
//!
//! An id is 128 bits: the arrival time in milliseconds since the Unix epoch
//! (48 bits) followed by 80 bits that start random and count up within one
//! millisecond (the ULID "monotonic" scheme). Rendered as 26 characters of
//! Crockford base32, so the text form sorts like the number.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1u128 << RANDOM_BITS) - 1;

/// A trigger id. Ordering follows arrival time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TriggerId(u128);

impl TriggerId {
    pub const fn from_u128(v: u128) -> Self {
        TriggerId(v)
    }

    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Milliseconds since the Unix epoch at which the trigger arrived.
    pub const fn timestamp_ms(self) -> u64 {
        (self.0 >> RANDOM_BITS) as u64
    }

    /// The smallest id that can carry `ms`: a lower bound for range scans.
    pub const fn min_for_ms(ms: u64) -> Self {
        TriggerId(((ms as u128) & 0xFFFF_FFFF_FFFF) << RANDOM_BITS)
    }
}

impl fmt::Display for TriggerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        let mut v = self.0;
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        // Every byte comes from ALPHABET, which is ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TriggerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TriggerId({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a trigger id: expected 26 characters of Crockford base32, as returned by ingest")]
pub struct ParseIdError(pub String);

impl FromStr for TriggerId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseIdError(s.chars().take(64).collect());
        if s.len() != 26 {
            return Err(bad());
        }
        let mut v: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let d = decode_char(c).ok_or_else(bad)?;
            // 26 * 5 = 130 bits: the first character may only hold 3 bits.
            if i == 0 && d > 7 {
                return Err(bad());
            }
            v = (v << 5) | d as u128;
        }
        Ok(TriggerId(v))
    }
}

fn decode_char(c: u8) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Hands out strictly increasing ids, even when the clock stalls or steps back.
pub struct IdGenerator {
    state: Mutex<(u128, StdRng)>,
}

impl Default for IdGenerator {
    fn default() -> Self {
        IdGenerator { state: Mutex::new((0, StdRng::from_os_rng())) }
    }
}

impl IdGenerator {
    pub fn next(&self, now: SystemTime) -> TriggerId {
        let ms = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let ms = ms & 0xFFFF_FFFF_FFFF;
        // A poisoned lock only means another thread panicked mid-update; the
        // value inside is still a valid "last id".
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, rng) = &mut *guard;
        let random = (rng.next_u64() as u128) << 16 | (rng.next_u32() as u128 & 0xFFFF);
        // Leave headroom so increments within one millisecond cannot overflow.
        let candidate = (ms << RANDOM_BITS) | (random & (RANDOM_MASK >> 1));
        let id = if candidate > *last { candidate } else { *last + 1 };
        *last = id;
        TriggerId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn ids_increase_within_one_millisecond_and_across_clock_steps_back() {
        let g = IdGenerator::default();
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let a = g.next(t);
        let b = g.next(t);
        let c = g.next(t - Duration::from_secs(5));
        assert!(a < b && b < c);
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
        assert_eq!(a.timestamp_ms(), 1_700_000_000_000);
    }

    #[test]
    fn rejects_bad_text() {
        assert!("".parse::<TriggerId>().is_err());
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FA".parse::<TriggerId>().is_err()); // 25 chars
        assert!("81ARZ3NDEKTSV4RRFFQ69G5FAV".parse::<TriggerId>().is_err()); // overflow
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FA!".parse::<TriggerId>().is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips_and_sorts_like_the_number(a: u128, b: u128) {
            let (ia, ib) = (TriggerId(a), TriggerId(b));
            prop_assert_eq!(ia.to_string().parse::<TriggerId>(), Ok(ia));
            prop_assert_eq!(ia.cmp(&ib), ia.to_string().cmp(&ib.to_string()));
            prop_assert!(ia.to_string().bytes().all(|c| c.is_ascii_alphanumeric()));
        }
    }
}
