//! Graceful shutdown of the real binary: SIGTERM drains in-flight requests
//! and exits 0; a second signal exits at once.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Client, TOKEN, WeirProcess};

/// Opens a request whose body is only half sent: it stays in flight.
async fn half_sent_request(weir: &WeirProcess) -> TcpStream {
    let mut s = TcpStream::connect(weir.ingest).await.expect("connect");
    s.write_all(b"POST /ingest/acme/drain HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello").await.expect("write");
    s
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::write_config(dir.path(), "");
    let mut weir = WeirProcess::start(&config);
    let mut s = half_sent_request(&weir).await;
    // The server has read the headers once it is waiting for the body; make
    // sure by completing a separate request on another connection first.
    let warm = Client::new().post(&format!("http://{}/ingest/acme/warm", weir.ingest), &[], "w").await;
    assert_eq!(warm.status, StatusCode::ACCEPTED);

    weir.signal(libc::SIGTERM);
    weir.wait_for_log("shutdown requested", Duration::from_secs(10));
    assert!(weir.child.try_wait().expect("try_wait").is_none(), "must wait for the in-flight request");

    s.write_all(b"world").await.expect("finish body");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read response");
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 202"), "in-flight request completes: {resp}");
    let id = resp.split("\"id\":\"").nth(1).and_then(|r| r.get(..26)).expect("id in body").to_string();

    let status = weir.wait_exit(Duration::from_secs(15)).expect("exits after draining");
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_text());
    // A clean stop marks the store file, so the next start may keep its cached pages (store/clean_stop.rs).
    let mark = dir.path().join("data").join("shard-00.redb.clean");
    assert!(mark.exists(), "no clean-stop mark after exit 0; log:\n{}", weir.log_text());

    // What was acknowledged during the drain is durable.
    let weir = WeirProcess::start(&config);
    assert!(!mark.exists(), "the start left the mark for a later start to trust");
    let t = Client::new().get(&format!("http://{}/v1/triggers/{id}", weir.admin), Some(TOKEN)).await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.json()["body"]["data"], "helloworld");
    // A process that dies leaves no mark: the next start evicts the cache, as after any crash.
    weir.sigkill();
    assert!(!mark.exists());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::write_config(dir.path(), "");
    let mut weir = WeirProcess::start(&config);
    let _held = half_sent_request(&weir).await;
    let warm = Client::new().post(&format!("http://{}/ingest/acme/warm", weir.ingest), &[], "w").await;
    assert_eq!(warm.status, StatusCode::ACCEPTED);
    weir.signal(libc::SIGTERM);
    weir.wait_for_log("shutdown requested", Duration::from_secs(10));
    assert!(weir.child.try_wait().expect("try_wait").is_none(), "draining the held request");
    weir.signal(libc::SIGINT);
    let status = weir.wait_exit(Duration::from_secs(5)).expect("exits at once on the second signal");
    assert_eq!(status.code(), Some(130));
}

/// A background replay cut by SIGTERM stops between two triggers, still
/// `running`, and the next start resumes it to the end (as after a SIGKILL).
/// The shutdown waits for it: its last line comes after the job stopped.
#[tokio::test]
async fn a_replay_job_stopped_by_sigterm_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No upstream: the triggers stay pending, only the replay moves them.
    let config = crate::support::write_config(dir.path(), "");
    let mut weir = WeirProcess::start(&config);
    let c = Client::new();
    for i in 0..400 {
        let r = c.post(&format!("http://{}/ingest/acme/job", weir.ingest), &[], format!("{i}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let admin = format!("http://{}", weir.admin);
    let auth = format!("Bearer {TOKEN}");
    // Paced at 100/s: about 4 s, so SIGTERM surely lands mid-way.
    let body = r#"{"tenant":"acme","state":"pending","background":true,"max_per_sec":100}"#;
    let r = c.send(http::Method::POST, &format!("{admin}/v1/replay"), &[("authorization", auth.as_str())], body).await.expect("replay");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let job = r.json()["job"].as_u64().expect("job");
    let job_url = format!("{admin}/v1/replays/{job}");
    let mid = crate::support::eventually(Duration::from_secs(30), || async {
        let j = c.get(&job_url, Some(TOKEN)).await.json();
        (j["replayed"].as_u64().unwrap_or(0) >= 20).then_some(j)
    })
    .await;
    assert_eq!(mid["state"], "running", "{mid}");

    weir.signal(libc::SIGTERM);
    let status = weir.wait_exit(Duration::from_secs(20)).expect("exits within the grace period");
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_text());
    let log = weir.log_text();

    let weir = WeirProcess::start(&config);
    weir.wait_for_log("resuming a replay job", Duration::from_secs(10));
    let job_url = format!("http://{}/v1/replays/{job}", weir.admin);
    let done = crate::support::eventually(Duration::from_secs(60), || async {
        let j = c.get(&job_url, Some(TOKEN)).await.json();
        (j["state"] == "done").then_some(j)
    })
    .await;
    assert_eq!(done["matched"], 400, "{done}");
    assert_eq!(done["replayed"], 400, "every selected trigger once, across the restart: {done}");
    // The first run's shutdown waited for the job before it stopped.
    let at = |needle: &str| log.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"));
    assert!(at("replay job stopped by shutdown") < at("background tasks joined"), "the job was joined");
    assert!(at("background tasks joined") < at("weir stopped"));
}

/// The spans of a request still in flight at SIGTERM reach the collector:
/// the exporter stops only after the drain, having sent them.
// Two workers: the receiver answers while the test blocks waiting for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_requests_draining_at_sigterm_are_exported() {
    let otlp = crate::traces::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("\n[telemetry]\notlp_endpoint = \"http://{}\"\n", otlp.addr);
    let config = crate::support::write_config(dir.path(), &extra);
    let mut weir = WeirProcess::start(&config);
    let mut s = half_sent_request(&weir).await;
    let warm = Client::new().post(&format!("http://{}/ingest/acme/warm", weir.ingest), &[], "w").await;
    assert_eq!(warm.status, StatusCode::ACCEPTED);

    weir.signal(libc::SIGTERM);
    weir.wait_for_log("shutdown requested", Duration::from_secs(10));
    s.write_all(b"world").await.expect("finish body");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read response");
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    let id = resp.split("\"id\":\"").nth(1).and_then(|r| r.get(..26)).expect("id in body").to_string();
    let status = weir.wait_exit(Duration::from_secs(20)).expect("exits after draining");
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_text());
    // Exported before the process exited: no waiting after the exit.
    let spans = otlp.spans();
    let drained = spans.iter().find(|sp| sp.name == "ingest" && crate::traces::attr(sp, "weir.trigger_id").as_deref() == Some(id.as_str()));
    assert!(drained.is_some(), "the draining request's ingest span was exported; got {} spans", spans.len());
}
