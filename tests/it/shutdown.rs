//! Graceful shutdown of the real binary: SIGTERM drains in-flight requests
//! and exits 0; a second signal exits at once.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Client, TOKEN, WeirProcess, config_toml};

/// Opens a request whose body is only half sent: it stays in flight.
async fn half_sent_request(weir: &WeirProcess) -> TcpStream {
    let mut s = TcpStream::connect(weir.ingest).await.expect("connect");
    s.write_all(b"POST /ingest/acme/drain HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello").await.expect("write");
    s
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, config_toml(&dir.path().join("data"), "")).expect("write");
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

    // What was acknowledged during the drain is durable.
    let weir = WeirProcess::start(&config);
    let t = Client::new().get(&format!("http://{}/v1/triggers/{id}", weir.admin), Some(TOKEN)).await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.json()["body"]["data"], "helloworld");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, config_toml(&dir.path().join("data"), "")).expect("write");
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
