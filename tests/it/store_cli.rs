//! `weir store check` and `weir store repair` through the real binary, on a
//! store a real gateway wrote, with a byte flipped in one of its bodies.

use std::process::Command;

use http::StatusCode;

use crate::support::*;

const MARKER: &str = "WEIR-STORE-CLI-MARKER";

fn weir(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(weir_bin()).args(args).arg(dir).output().expect("run weir");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_check_finds_a_flipped_byte_and_repair_keeps_every_trigger() {
    let gw = Gateway::start().await;
    let c = gw.client.clone();
    let mut ids = Vec::new();
    for i in 0..25 {
        let body = format!("{{\"n\":{i},\"pad\":\"{MARKER}-{}\"}}", "x".repeat(800));
        let r = c.post(&gw.ingest_url("/ingest/acme/github"), &[], body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    let dir = gw.stop().await;

    let (code, text) = weir(&["store", "check", "--data-dir"], dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok, 25 trigger(s)"), "{text}");

    // One byte of one body: nothing but a page checksum can notice it.
    let shard = dir.path().join("shard-00.redb");
    let mut bytes = std::fs::read(&shard).expect("read");
    let at = bytes.windows(MARKER.len()).position(|w| w == MARKER.as_bytes()).expect("a body is in the file");
    bytes[at + MARKER.len() + 100] ^= 0x01;
    std::fs::write(&shard, &bytes).expect("write");

    let (code, text) = weir(&["store", "check", "--data-dir"], dir.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("shard-00.redb: CORRUPT"), "{text}");
    assert_eq!(std::fs::read(&shard).expect("read"), bytes, "the check changed the file");

    let (code, text) = weir(&["store", "repair", "--data-dir"], dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("kept 25 trigger(s); lost 0"), "{text}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("shard-00.redb.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged original is kept");
    assert_eq!(std::fs::read(aside[0].path()).expect("read"), bytes);

    let (code, text) = weir(&["store", "check", "--data-dir"], dir.path());
    assert_eq!(code, Some(0), "{text}");

    // The gateway serves the repaired store with every acknowledged trigger.
    let gw = Gateway::start_in(dir, "", |_| {}).await;
    for id in &ids {
        let t = c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await;
        assert_eq!(t.status, StatusCode::OK, "{id} missing after repair");
    }
    gw.stop().await;
}

#[test]
fn store_check_needs_a_store_and_names_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, text) = weir(&["store", "check", "--data-dir"], dir.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no store files"), "{text}");
    let out = Command::new(weir_bin()).args(["store", "check"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "neither --config nor --data-dir is a usage error");
    // --config takes store.path from the file.
    let config = crate::support::write_config(dir.path(), "");
    let (code, text) = weir(&["store", "check", "--config"], &config);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("data"), "{text}");
}

/// After a SIGKILL the triggers acknowledged since the last checkpoint are
/// only in the shard's journal: `weir store check` judges the store as the
/// gateway will open it, with them (and leaves the journal as it was).
#[tokio::test]
async fn store_check_counts_what_only_the_journal_holds_after_a_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let weir_process = WeirProcess::start(&config);
    let url = format!("http://{}/ingest/acme/github", weir_process.ingest);
    // Fewer than the 32 journal records at which an idle writer checkpoints.
    for i in 0..10 {
        let r = Client::new().post(&url, &[], format!("{{\"n\":{i}}}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    weir_process.sigkill();
    let data = dir.path().join("data");
    let journal = std::fs::read(data.join("shard-00.journal")).expect("journal");
    let (code, text) = weir(&["store", "check", "--data-dir"], &data);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok, 10 trigger(s)"), "{text}");
    assert_eq!(std::fs::read(data.join("shard-00.journal")).expect("journal"), journal, "the check changed the journal");
}
