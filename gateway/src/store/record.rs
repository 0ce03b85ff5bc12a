//! The stored trigger record and its versioned binary format.
//!
//! # Format, version 1
//!
//! A record is the value of the `triggers` table (key: the trigger id as a
//! `u128`, which redb orders numerically, so by arrival time). Bodies live in their own tables (`bodies`,
//! `transformed`) so that a state change rewrites only this small record.
//! All integers are little-endian; strings are UTF-8.
//!
//! ```text
//! u8   format version (1)
//! u8   state: 0 pending, 1 delivered, 2 dead, 3 quarantined
//! u8   flags: bit 0 = a transformed body is stored
//! u64  received_at_ms (Unix epoch)
//! str16 tenant            (str16 = u16 length, then bytes)
//! str16 source
//! str16 idempotency key   (length 0 = none)
//! u16  header count, then per header: str16 name, str32 value
//! u32  raw body length
//! u32  plugin version that transformed it (0 = none)
//! str16 route             (length 0 = none)
//! str16 note              (why it is quarantined or dead; length 0 = none)
//! u16  attempt count, then per attempt:
//!      u64 at_ms, u32 duration_ms, u16 upstream index, u8 outcome,
//!      u16 HTTP status (0 = none), str16 detail
//! ```
//!
//! Decoding rejects unknown versions and truncated or trailing bytes with a
//! [`DecodeError`]: a record is either fully understood or not used. A new
//! field means a new version number and a decoder branch for the old one.

pub const FORMAT_VERSION: u8 = 1;

/// Where a trigger is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Pending,
    Delivered,
    Dead,
    Quarantined,
}

impl State {
    pub const ALL: [State; 4] = [State::Pending, State::Delivered, State::Dead, State::Quarantined];

    pub const fn code(self) -> u8 {
        match self {
            State::Pending => 0,
            State::Delivered => 1,
            State::Dead => 2,
            State::Quarantined => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<State> {
        State::ALL.into_iter().find(|s| s.code() == c)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry,
    Dead,
}

impl Outcome {
    const fn code(self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::Retry => 1,
            Outcome::Dead => 2,
        }
    }

    fn from_code(c: u8) -> Option<Outcome> {
        [Outcome::Delivered, Outcome::Retry, Outcome::Dead].into_iter().find(|o| o.code() == c)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: u64,
    pub duration_ms: u32,
    pub upstream: u16,
    pub outcome: Outcome,
    /// HTTP status, when the upstream answered.
    pub status: Option<u16>,
    /// Error text or a snippet of the response.
    pub detail: String,
}

/// Everything known about a trigger except its bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerMeta {
    pub state: State,
    pub received_at_ms: u64,
    pub tenant: String,
    pub source: String,
    pub idempotency_key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_len: u32,
    pub has_transformed: bool,
    pub plugin_version: u32,
    pub route: Option<String>,
    /// Why the trigger is quarantined or dead, for operators.
    pub note: Option<String>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is empty")]
    Empty,
    #[error("record format version {0} is not known to this build (it knows {FORMAT_VERSION})")]
    UnknownVersion(u8),
    #[error("record is truncated")]
    Truncated,
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    #[error("record holds an invalid {0}")]
    Invalid(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("{0} is too long to store ({1} bytes)")]
    TooLong(&'static str, usize),
}

#[cfg(test)]
impl TriggerMeta {
    /// A minimal record for tests: pending, tenant "t", source "s", no key,
    /// headers, body, plugin, route, note or attempts.
    pub(crate) fn sample() -> TriggerMeta {
        TriggerMeta {
            state: State::Pending,
            received_at_ms: 0,
            tenant: "t".into(),
            source: "s".into(),
            idempotency_key: None,
            headers: vec![],
            body_len: 0,
            has_transformed: false,
            plugin_version: 0,
            route: None,
            note: None,
            attempts: vec![],
        }
    }
}

impl TriggerMeta {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Vec::with_capacity(64 + self.headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>());
        w.push(FORMAT_VERSION);
        w.push(self.state.code());
        w.push(u8::from(self.has_transformed));
        w.extend_from_slice(&self.received_at_ms.to_le_bytes());
        str16(&mut w, "tenant", &self.tenant)?;
        str16(&mut w, "source", &self.source)?;
        str16(&mut w, "idempotency key", self.idempotency_key.as_deref().unwrap_or(""))?;
        let count = u16::try_from(self.headers.len()).map_err(|_| EncodeError::TooLong("header list", self.headers.len()))?;
        w.extend_from_slice(&count.to_le_bytes());
        for (name, value) in &self.headers {
            str16(&mut w, "header name", name)?;
            let len = u32::try_from(value.len()).map_err(|_| EncodeError::TooLong("header value", value.len()))?;
            w.extend_from_slice(&len.to_le_bytes());
            w.extend_from_slice(value.as_bytes());
        }
        w.extend_from_slice(&self.body_len.to_le_bytes());
        w.extend_from_slice(&self.plugin_version.to_le_bytes());
        str16(&mut w, "route", self.route.as_deref().unwrap_or(""))?;
        str16(&mut w, "note", self.note.as_deref().unwrap_or(""))?;
        let count = u16::try_from(self.attempts.len()).map_err(|_| EncodeError::TooLong("attempt list", self.attempts.len()))?;
        w.extend_from_slice(&count.to_le_bytes());
        for a in &self.attempts {
            w.extend_from_slice(&a.at_ms.to_le_bytes());
            w.extend_from_slice(&a.duration_ms.to_le_bytes());
            w.extend_from_slice(&a.upstream.to_le_bytes());
            w.push(a.outcome.code());
            w.extend_from_slice(&a.status.unwrap_or(0).to_le_bytes());
            str16(&mut w, "attempt detail", &a.detail)?;
        }
        Ok(w)
    }

    pub fn decode(bytes: &[u8]) -> Result<TriggerMeta, DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8().map_err(|_| DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let state = State::from_code(r.u8()?).ok_or(DecodeError::Invalid("state"))?;
        let flags = r.u8()?;
        let received_at_ms = r.u64()?;
        let tenant = r.str16()?;
        let source = r.str16()?;
        let key = r.str16()?;
        let mut headers = Vec::new();
        for _ in 0..r.u16()? {
            let name = r.str16()?;
            let len = r.u32()? as usize;
            headers.push((name, r.string(len)?));
        }
        let body_len = r.u32()?;
        let plugin_version = r.u32()?;
        let route = r.str16()?;
        let note = r.str16()?;
        let mut attempts = Vec::new();
        for _ in 0..r.u16()? {
            let at_ms = r.u64()?;
            let duration_ms = r.u32()?;
            let upstream = r.u16()?;
            let outcome = Outcome::from_code(r.u8()?).ok_or(DecodeError::Invalid("attempt outcome"))?;
            let status = Some(r.u16()?).filter(|s| *s != 0);
            let detail = r.str16()?;
            attempts.push(Attempt { at_ms, duration_ms, upstream, outcome, status, detail });
        }
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing(r.0.len()));
        }
        Ok(TriggerMeta {
            state,
            received_at_ms,
            tenant,
            source,
            idempotency_key: Some(key).filter(|k| !k.is_empty()),
            headers,
            body_len,
            has_transformed: flags & 1 == 1,
            plugin_version,
            route: Some(route).filter(|r| !r.is_empty()),
            note: Some(note).filter(|n| !n.is_empty()),
            attempts,
        })
    }
}

fn str16(w: &mut Vec<u8>, what: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::TooLong(what, s.len()))?;
    w.extend_from_slice(&len.to_le_bytes());
    w.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }
    fn string(&mut self, len: usize) -> Result<String, DecodeError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("string"))
    }
    fn str16(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        self.string(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_meta() -> impl Strategy<Value = TriggerMeta> {
        let attempt = (any::<u64>(), any::<u32>(), any::<u16>(), 0u8..3, proptest::option::of(100u16..600), ".{0,20}").prop_map(
            |(at_ms, duration_ms, upstream, o, status, detail)| Attempt {
                at_ms,
                duration_ms,
                upstream,
                outcome: Outcome::from_code(o).unwrap_or(Outcome::Retry),
                status,
                detail,
            },
        );
        (
            (0u8..4, any::<u64>(), "[a-z]{1,10}", "[a-z]{1,10}", proptest::option::of("[ -~]{1,30}")),
            proptest::collection::vec(("[a-z-]{1,20}", ".{0,40}"), 0..5),
            (any::<u32>(), any::<bool>(), any::<u32>(), proptest::option::of("[a-z]{1,8}"), proptest::option::of(".{1,30}")),
            proptest::collection::vec(attempt, 0..4),
        )
            .prop_map(|((st, received_at_ms, tenant, source, key), headers, (body_len, has_t, pv, route, note), attempts)| {
                TriggerMeta {
                    state: State::from_code(st).unwrap_or(State::Pending),
                    received_at_ms,
                    tenant,
                    source,
                    idempotency_key: key,
                    headers,
                    body_len,
                    has_transformed: has_t,
                    plugin_version: pv,
                    route,
                    note,
                    attempts,
                }
            })
    }

    proptest! {
        #[test]
        fn round_trips(meta in arb_meta()) {
            let bytes = meta.encode().expect("encodes");
            prop_assert_eq!(TriggerMeta::decode(&bytes), Ok(meta));
        }

        #[test]
        fn every_truncation_is_an_error_not_a_panic(meta in arb_meta(), cut in any::<prop::sample::Index>()) {
            let bytes = meta.encode().expect("encodes");
            let n = cut.index(bytes.len());
            prop_assert!(TriggerMeta::decode(&bytes[..n]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TriggerMeta::decode(&bytes);
        }
    }

    #[test]
    fn rejects_unknown_versions_and_trailing_bytes() {
        let meta = TriggerMeta { received_at_ms: 1, ..TriggerMeta::sample() };
        let mut bytes = meta.encode().expect("encodes");
        bytes.push(0);
        assert_eq!(TriggerMeta::decode(&bytes), Err(DecodeError::Trailing(1)));
        bytes[0] = 9;
        assert_eq!(TriggerMeta::decode(&bytes), Err(DecodeError::UnknownVersion(9)));
        assert_eq!(TriggerMeta::decode(&[]), Err(DecodeError::Empty));
    }
}
