//! Applying a plugin's verdict to a trigger's record, and the notes a record
//! carries: the same at ingest and at replay.

use crate::plugin::{Failure, Transform};
use crate::store::{State, TriggerMeta};

/// Longest note stored with a trigger (failure details, upstream errors).
pub const NOTE_MAX: usize = 1024;

/// Applies an accepted verdict's changes to the record; returns the new body,
/// if any. Removals first, then each set replaces every header of its name
/// (the last set of a name wins); linear in headers + changes.
pub fn apply_transform(meta: &mut TriggerMeta, t: Transform) -> Option<Vec<u8>> {
    use std::collections::{HashMap, HashSet};
    let mut last_set: HashMap<&str, usize> = HashMap::with_capacity(t.set_headers.len());
    for (i, (name, _)) in t.set_headers.iter().enumerate() {
        last_set.insert(name.as_str(), i);
    }
    let replaced: HashSet<&str> = t.remove_headers.iter().map(String::as_str).chain(last_set.keys().copied()).collect();
    meta.headers.retain(|(name, _)| !replaced.contains(name.as_str()));
    let keep: HashSet<usize> = last_set.into_values().collect();
    meta.headers.extend(t.set_headers.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, h)| h));
    if t.idempotency_key.is_some() {
        meta.idempotency_key = t.idempotency_key;
    }
    meta.route = t.route;
    meta.has_transformed = t.body.is_some();
    t.body
}

/// A plugin fault: the trigger is kept, quarantined, with the fault named.
pub fn quarantine(meta: &mut TriggerMeta, failure: &Failure) {
    meta.state = State::Quarantined;
    meta.note = Some(note(&failure.to_string()));
}

/// A note as stored: readable and bounded (cut at a character boundary).
pub fn note(s: &str) -> String {
    truncate(s, NOTE_MAX).to_string()
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(headers: &[(&str, &str)]) -> TriggerMeta {
        TriggerMeta { headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(), ..TriggerMeta::sample() }
    }

    #[test]
    fn a_transform_removes_then_sets_and_the_last_set_of_a_name_wins() {
        let mut m = meta(&[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]);
        let t = Transform {
            set_headers: vec![("x".into(), "1".into()), ("b".into(), "new".into()), ("x".into(), "2".into())],
            remove_headers: vec!["a".into(), "c".into(), "x".into()],
            ..Transform::default()
        };
        apply_transform(&mut m, t);
        let got: Vec<(&str, &str)> = m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(got, [("b", "new"), ("x", "2")]);
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        let long = "é".repeat(NOTE_MAX);
        let n = note(&long);
        assert!(n.len() <= NOTE_MAX && n.len() >= NOTE_MAX - 1);
        assert!(n.chars().all(|c| c == 'é'));
    }
}
