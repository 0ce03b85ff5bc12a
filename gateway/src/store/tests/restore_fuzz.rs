//! Fuzzing the backup reader: arbitrary bytes, and a real backup (written by
//! [`snapshot::write`] from a store with triggers, transformed bodies and
//! plugin versions) with flipped bytes and truncations.
//!
//! The properties: a restore never panics; a refused backup is refused as
//! damaged with a byte offset inside the file (or as not a backup when its
//! header is wrong); a refused restore leaves nothing at the target nor a
//! staging directory beside it; an accepted one opens. A `WEIRBAK2` backup
//! checksums every frame, so any changed byte after the header is refused;
//! in a `WEIRBAK1` one (no checksums, still restored) a flipped byte inside a
//! body, an id or a time restores as it reads, and only the field checks
//! stand: the tests of those run on the backup without its checksums.
//!
//! `PROPTEST_CASES` raises the case count for a longer run (docs/operations.md).

use std::sync::OnceLock;

use super::*;

/// A real backup of a small store: a few triggers (some with transformed
/// bodies and idempotency keys), one plugin with two versions, an active
/// version and a paused tenant.
fn backup() -> &'static [u8] {
    static BACKUP: OnceLock<Vec<u8>> = OnceLock::new();
    BACKUP.get_or_init(|| {
        let r = rt();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&config(dir.path(), 2)).expect("open");
        for i in 0..6u8 {
            let key = (i % 2 == 0).then(|| format!("key-{i}"));
            let mut t = trigger(&store, &format!("t{}", i % 2), key, &[i; 40], State::Pending);
            if i % 3 == 0 {
                t.meta.has_transformed = true;
                t.transformed = Some(Bytes::from(vec![b'x'; 12]));
            }
            r.block_on(store.insert(t)).expect("insert");
        }
        let control = ControlFile::open(dir.path()).expect("control");
        let component = b"\0asm\x0d\0\x01\0";
        let sha = crate::plugin::sha256_hex(component);
        let version = |v: u32| PluginVersion {
            version: v,
            sha256: sha.clone(),
            uploaded_at_ms: 1_000 + u64::from(v),
            source: "upload".into(),
            size: 8,
        };
        control.restore_plugin(&sha, component, &[("t0".into(), version(1)), ("t0".into(), version(2))]).expect("plugin");
        control.set_active("t0", 2).expect("active");
        control.set_paused("t1", true, 5).expect("paused");
        let mut out = Vec::new();
        snapshot::write(&store, &control, &mut |chunk| {
            out.extend_from_slice(&chunk);
            Ok(())
        })
        .expect("snapshot");
        r.block_on(store.close());
        out
    })
}

/// The same backup as the `WEIRBAK1` writer made it (no frame checksums).
fn backup_v1() -> &'static [u8] {
    static BACKUP: OnceLock<Vec<u8>> = OnceLock::new();
    BACKUP.get_or_init(|| snapshot::without_checksums(backup()))
}

/// Restores `data` into a new directory and checks the properties; returns
/// whether it was accepted.
fn restore_checked(data: &[u8]) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let file = dir.path().join("backup");
    std::fs::write(&file, data).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let target = dir.path().join("restored");
    let result = rt().block_on(snapshot::restore(&file, &config(&target, 1)));
    let staging = dir.path().join(".restored.restoring");
    match result {
        Ok(summary) => {
            prop_assert!(!staging.exists(), "staging left beside an accepted restore");
            prop_assert!(!target.join(snapshot::RESTORING_MARK).exists(), "an accepted restore is still marked");
            let store = Store::open(&config(&target, 1)).map_err(|e| TestCaseError::fail(format!("restored store does not open: {e}")))?;
            // Whatever a changed byte did, no trigger the backup counted is
            // missing from what it restored.
            let live = store.live_count();
            rt().block_on(store.close());
            prop_assert_eq!(live as u64, summary.triggers, "restored {} of the {} triggers read", live, summary.triggers);
            Ok(true)
        }
        Err(e) => {
            match &e {
                RestoreError::Damaged { offset, .. } => prop_assert!(*offset <= data.len(), "offset {offset} past the end: {e}"),
                RestoreError::NotABackup { .. } => {
                    prop_assert!(!data.starts_with(b"WEIRBAK1") && !data.starts_with(b"WEIRBAK2"), "{e}")
                }
                other => return Err(TestCaseError::fail(format!("refused without naming a byte offset: {other}"))),
            }
            prop_assert!(e.to_string().contains("byte") || matches!(e, RestoreError::NotABackup { .. }), "{e}");
            prop_assert!(!target.exists(), "a refused restore left {}", target.display());
            prop_assert!(!staging.exists(), "a refused restore left its staging directory");
            Ok(false)
        }
    }
}

proptest! {
    #![proptest_config(crate::config::fuzz::fuzz_config(48))]

    /// Bytes that are not a backup, with and without the header.
    #[test]
    fn restore_fuzz_arbitrary_bytes(magic in 0..3usize, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let data = [[&b""[..], b"WEIRBAK1", b"WEIRBAK2"][magic], &bytes].concat();
        restore_checked(&data)?;
    }

    /// A real backup with a few bytes changed: refused with an offset.
    #[test]
    fn restore_fuzz_flipped_bytes(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let mut data = backup().to_vec();
        for (at, xor) in &flips {
            let i = at.index(data.len());
            data[i] ^= xor;
        }
        prop_assert!(!restore_checked(&data)?, "a backup with changed bytes was accepted: {flips:?}");
    }

    /// The same on a `WEIRBAK1` backup: refused with an offset, or (a
    /// changed body, id or time: no checksum there) restored whole.
    #[test]
    fn restore_fuzz_flipped_bytes_without_checksums(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let mut data = backup_v1().to_vec();
        for (at, xor) in &flips {
            let i = at.index(data.len());
            data[i] ^= xor;
        }
        restore_checked(&data)?;
    }

    /// Every truncation of a real backup is refused: the end frame is last.
    #[test]
    fn restore_fuzz_truncated(cut in any::<prop::sample::Index>(), v1 in any::<bool>()) {
        let data = if v1 { backup_v1() } else { backup() };
        let n = cut.index(data.len());
        prop_assert!(!restore_checked(&data[..n])?, "a backup cut at {n} of {} was accepted", data.len());
    }
}

#[test]
fn restore_fuzz_the_whole_backup_restores() {
    assert!(restore_checked(backup()).expect("properties hold"), "the untouched backup restores");
    assert!(restore_checked(backup_v1()).expect("properties hold"), "a WEIRBAK1 backup still restores");
}

/// A byte of a trigger's body changed: the field checks cannot see it (it
/// restored as it read before frame checksums); the checksum refuses it, at
/// its frame.
#[test]
fn restore_fuzz_a_changed_body_byte_is_refused_at_its_frame() {
    let mut data = backup().to_vec();
    let body = data.windows(40).position(|w| w == [3u8; 40]).expect("trigger 3's body");
    data[body + 7] ^= 0x20;
    let (offset, reason) = refused_at(&data);
    assert!(offset < body && body - offset < 200, "the offset {offset} is its frame's, before the body at {body}");
    assert!(reason.contains("checksum"), "{reason}");
}

/// Every frame of a `WEIRBAK1` backup: (offset of its header, kind, payload length).
fn frames(backup: &[u8]) -> Vec<(usize, u8, usize)> {
    let (mut pos, mut out) = (8, Vec::new());
    while pos < backup.len() {
        let len = u32::from_le_bytes(backup[pos + 1..pos + 5].try_into().expect("len")) as usize;
        out.push((pos, backup[pos], len));
        pos += 5 + len;
    }
    out
}

fn refused_at(data: &[u8]) -> (usize, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup");
    std::fs::write(&file, data).expect("write");
    match rt().block_on(snapshot::restore(&file, &config(&dir.path().join("restored"), 1))) {
        Err(RestoreError::Damaged { offset, reason }) => (offset, reason),
        other => panic!("expected Damaged, got {other:?}"),
    }
}

/// A transformed-body flag other than 0 or 1 used to be read as "none",
/// dropping the transformed body that followed without a word.
#[test]
fn restore_fuzz_a_bad_transformed_flag_is_refused() {
    let mut data = backup_v1().to_vec();
    // A trigger frame with a transformed body of 12 bytes ends with its
    // flag, a u32 length and the body: the flag is 17 bytes from the end.
    let transformed = |&&(at, kind, len): &&(usize, u8, usize)| kind == 1 && data[at + 5 + len - 12..at + 5 + len] == [b'x'; 12];
    let (at, _, len) = *frames(&data).iter().find(transformed).expect("a transformed one");
    data[at + 5 + len - 17] = 2;
    let (offset, reason) = refused_at(&data);
    assert_eq!(offset, at);
    assert!(reason.contains("flag 2"), "{reason}");
}

/// Bytes after the end frame, inside a frame past its last field, or a
/// component whose bytes do not match its sha256: refused, with the offset.
#[test]
fn restore_fuzz_trailing_bytes_and_a_changed_component_are_refused() {
    for whole in [backup(), backup_v1()] {
        let mut data = whole.to_vec();
        data.push(0);
        let (offset, reason) = refused_at(&data);
        assert_eq!(offset, whole.len());
        assert!(reason.contains("1 bytes after the end frame"), "{reason}");
    }

    // Without checksums, so that the field checks are what refuses.
    let mut data = backup_v1().to_vec();
    let (at, _, len) = *frames(&data).iter().find(|f| f.1 == 2).expect("a plugin frame");
    data[at + 5 + len - 1] ^= 0xff;
    let (offset, reason) = refused_at(&data);
    assert_eq!(offset, at);
    assert!(reason.contains("sha256"), "{reason}");

    // A paused frame one byte longer than its tenant.
    let mut data = backup_v1().to_vec();
    let (at, _, len) = *frames(&data).iter().find(|f| f.1 == 5).expect("a paused frame");
    data[at + 1..at + 5].copy_from_slice(&(len as u32 + 1).to_le_bytes());
    data.insert(at + 5 + len, b'x');
    let (offset, reason) = refused_at(&data);
    assert_eq!(offset, at);
    assert!(reason.contains("after the frame's last field"), "{reason}");
}
