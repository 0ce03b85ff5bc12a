//! The ingest contract and the admin read side, through real HTTP.

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Client, Gateway, TOKEN};

#[tokio::test]
async fn accepted_trigger_is_stored_with_its_headers_and_body() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let body = r#"{"action":"opened","number":7}"#;
    let r = c
        .post(
            &gw.ingest_url("/ingest/acme/github"),
            &[
                ("content-type", "application/json"),
                ("x-hub-signature-256", "sha256=abc"),
                ("authorization", "Bearer sender-secret"),
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let j = r.json();
    let id = j["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 26);
    assert_eq!(j["duplicate"], false);

    let t = c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await;
    assert_eq!(t.status, StatusCode::OK);
    let t = t.json();
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["source"], "github");
    assert_eq!(t["state"], "pending");
    assert_eq!(t["body"]["data"], body);
    assert_eq!(t["body"]["encoding"], "utf8");
    assert!(t["attempts"].as_array().expect("attempts").is_empty());
    assert!(t["received_at"].as_str().expect("received_at").ends_with('Z'));
    let headers: Vec<(String, String)> = serde_json::from_value(t["headers"].clone()).expect("headers");
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"x-hub-signature-256"));
    assert!(names.contains(&"traceparent"));
    assert!(names.contains(&"content-type"));
    assert!(!names.contains(&"authorization"), "credentials must not be stored: {names:?}");
    assert!(!names.contains(&"host"));
    gw.stop().await;
}

#[tokio::test]
async fn binary_bodies_come_back_as_base64() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let r = c.post(&gw.ingest_url("/ingest/acme/bin"), &[], vec![0xffu8, 0x00, 0xfe]).await;
    let id = r.json()["id"].as_str().expect("id").to_string();
    let t = c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.json();
    assert_eq!(t["body"]["encoding"], "base64");
    assert_eq!(t["body"]["data"], "/wD+");
    gw.stop().await;
}

#[tokio::test]
async fn ids_are_unique_and_sort_by_arrival() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = c.post(&gw.ingest_url("/ingest/acme/seq"), &[], format!("{i}")).await;
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ids of sequential requests must be unique and increasing");
    assert!(ids.iter().all(|id| id.bytes().all(|b| b.is_ascii_alphanumeric())), "URL-safe");
    gw.stop().await;
}

#[tokio::test]
async fn idempotency_key_repeats_store_nothing_new() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let url = gw.ingest_url("/ingest/acme/stripe");
    let first = c.post(&url, &[("idempotency-key", "evt_1")], "one").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = c.post(&url, &[("idempotency-key", "evt_1")], "one again").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["duplicate"], true);
    // Same key, other tenant: a different trigger.
    let other = c.post(&gw.ingest_url("/ingest/globex/stripe"), &[("idempotency-key", "evt_1")], "x").await;
    assert_eq!(other.json()["duplicate"], false);
    assert_ne!(other.json()["id"], first.json()["id"]);
    let status = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(status["pending"], 2);
    let id = first.json()["id"].as_str().expect("id").to_string();
    let t = c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.json();
    assert_eq!(t["body"]["data"], "one", "the first body is kept");
    assert_eq!(t["idempotency_key"], "evt_1");

    let bad = c.post(&url, &[("idempotency-key", &"k".repeat(300))], "x").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"], "invalid_idempotency_key");
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_duplicates_collapse_to_one_trigger() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let url = gw.ingest_url("/ingest/acme/race");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move { c.post(&url, &[("idempotency-key", "same")], "x").await.json() }));
    }
    let mut ids = Vec::new();
    let mut fresh = 0;
    for t in tasks {
        let j = t.await.expect("join");
        ids.push(j["id"].as_str().expect("id").to_string());
        fresh += usize::from(j["duplicate"] == false);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all got the same id");
    assert_eq!(fresh, 1, "exactly one was stored");
    gw.stop().await;
}

#[tokio::test]
async fn error_statuses_carry_a_code_and_advice() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let cases: Vec<(Method, String, StatusCode, &str)> = vec![
        (Method::POST, gw.ingest_url("/ingest/nobody/github"), StatusCode::NOT_FOUND, "unknown_tenant"),
        (Method::GET, gw.ingest_url("/ingest/acme/github"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::PUT, gw.ingest_url("/ingest/acme/github"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::POST, gw.ingest_url("/elsewhere"), StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, gw.ingest_url("/ingest/acme/bad%20source"), StatusCode::BAD_REQUEST, "invalid_source"),
    ];
    for (method, url, status, code) in cases {
        let r = c.send(method.clone(), &url, &[], "{}").await.expect("request");
        assert_eq!(r.status, status, "{method} {url}");
        let j = r.json();
        assert_eq!(j["error"], code, "{method} {url}");
        assert!(j["message"].as_str().expect("message").len() > 20, "a useful message: {j}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(r.headers["allow"], "POST");
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_nothing_is_stored() {
    let gw = Gateway::start().await; // max_body_bytes = 65536
    let c = Client::new();
    let r = c.post(&gw.ingest_url("/ingest/acme/big"), &[], vec![b'a'; 65_537]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"], "body_too_large");
    let ok = c.post(&gw.ingest_url("/ingest/acme/big"), &[], vec![b'a'; 65_536]).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "exactly the limit is fine");

    // Chunked, no Content-Length: the server stops reading once past the limit
    // and answers while the client still has megabytes left to send.
    let mut s = tokio::net::TcpStream::connect(gw.ingest).await.expect("connect");
    s.write_all(b"POST /ingest/acme/big HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n").await.expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 16_384, "b".repeat(16_384));
    let mut answered = String::new();
    for _ in 0..512 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server closed the connection after answering
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(1), s.read(&mut buf)).await {
            answered.push_str(&String::from_utf8_lossy(&buf[..n]));
            break;
        }
    }
    if answered.is_empty() {
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap_or(0);
        answered.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(answered.starts_with("HTTP/1.1 413"), "got {answered:?}");
    let status = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(status["pending"], 1, "only the body at the limit was stored");
    gw.stop().await;
}

#[tokio::test]
async fn a_full_store_answers_503_with_retry_after_and_readyz_says_why() {
    let gw = Gateway::start_with("", |c| c.store.max_bytes = 1024 * 1024).await;
    let c = Client::new();
    let url = gw.ingest_url("/ingest/acme/fill");
    let mut accepted = 0;
    let refused = loop {
        let r = c.post(&url, &[], vec![b'x'; 60_000]).await;
        if r.status == StatusCode::ACCEPTED {
            accepted += 1;
            assert!(accepted < 100, "the budget was never enforced");
            continue;
        }
        break r;
    };
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.json()["error"], "store_full");
    let status = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(status["pending"], accepted, "every 202 is stored, the refused one is not");
    assert!(status["used_bytes"].as_u64().expect("used") <= 1024 * 1024);
    // Health stays 200: the process is fine. Ready says 503 once the room left
    // is less than one largest trigger, so a load balancer routes elsewhere.
    assert_eq!(c.get(&gw.ingest_url("/healthz"), None).await.status, StatusCode::OK);
    let ready = c.get(&gw.ingest_url("/readyz"), None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.json()["message"].as_str().expect("message").contains("budget"), "{:?}", ready.body);
    gw.stop().await;
}

#[tokio::test]
async fn health_and_ready_are_served_on_both_listeners() {
    let gw = Gateway::start().await;
    let c = Client::new();
    for base in [gw.ingest_url(""), gw.admin_url("")] {
        let h = c.get(&format!("{base}/healthz"), None).await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.json()["status"], "ok");
        let r = c.get(&format!("{base}/readyz"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["status"], "ready");
    }
    gw.stop().await;
}

#[tokio::test]
async fn admin_requires_the_operator_token() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let url = gw.admin_url("/v1/status");
    let none = c.get(&url, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_eq!(c.get(&url, Some("wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.get(&url, Some(&format!("{TOKEN}x"))).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.get(&url, Some(TOKEN)).await.status, StatusCode::OK);
    let missing = c.get(&gw.admin_url("/v1/triggers/01ARZ3NDEKTSV4RRFFQ69G5FAV"), Some(TOKEN)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let garbage = c.get(&gw.admin_url("/v1/triggers/not-an-id"), Some(TOKEN)).await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

#[tokio::test]
async fn admin_without_a_configured_token_refuses_with_advice() {
    let gw = Gateway::start_with("", |c| c.admin.token = None).await;
    let r = Client::new().get(&gw.admin_url("/v1/status"), Some("anything")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "no_admin_token_configured");
    gw.stop().await;
}

#[tokio::test]
async fn status_reports_counts_sizes_and_oldest_pending_age() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let before = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(before["pending"], 0);
    assert!(before["oldest_pending_age_ms"].is_null());
    for _ in 0..3 {
        c.post(&gw.ingest_url("/ingest/globex/s"), &[], "{}").await;
    }
    let s = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    for key in ["pending", "delivered", "dead", "quarantined", "store_bytes", "oldest_pending_age_ms"] {
        assert!(s.get(key).is_some(), "status lacks {key}: {s}");
    }
    assert_eq!(s["pending"], 3);
    assert_eq!(s["delivered"], 0);
    assert!(s["store_bytes"].as_u64().expect("bytes") > 0);
    assert!(s["oldest_pending_age_ms"].as_u64().is_some());
    gw.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_request_timeout_gets_408_and_nothing_is_stored() {
    let gw = Gateway::start_with("", |c| c.server.request_timeout_ms = 300).await;
    let mut s = tokio::net::TcpStream::connect(gw.ingest).await.expect("connect");
    // Half a body, then silence: the server answers once its timeout passes.
    s.write_all(b"POST /ingest/acme/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello").await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    let status = Client::new().get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(status["pending"], 0);
    gw.stop().await;
}

/// At `server.max_connections` the listener stops accepting: a new client
/// waits (in the kernel's backlog) until an open connection closes, and is
/// then served. Nothing is refused or dropped.
#[tokio::test]
async fn at_the_connection_limit_new_clients_wait_for_a_free_slot() {
    const MAX: usize = 3;
    let gw = Gateway::start_with("", |c| c.server.max_connections = MAX as u32).await;
    let open = || async {
        let m = crate::metrics::scrape(&gw.client, &gw).await;
        crate::metrics::get(&m, "weir_connections", &[("listener", "ingest")]) as usize
    };
    assert_eq!(
        crate::metrics::get(&crate::metrics::scrape(&gw.client, &gw).await, "weir_connections_max", &[("listener", "ingest")]),
        MAX as f64
    );
    // Fill the remaining slots with idle connections (the test client may hold one already).
    let mut idle = Vec::new();
    while open().await < MAX {
        let before = open().await;
        idle.push(tokio::net::TcpStream::connect(gw.ingest).await.expect("connect"));
        crate::support::eventually(std::time::Duration::from_secs(10), || async { (open().await > before).then_some(()) }).await;
    }
    assert!(!idle.is_empty(), "the limit was reached by idle connections of this test");

    // One more client: connected by the kernel, but not served while the listener is full.
    let mut waiting = tokio::net::TcpStream::connect(gw.ingest).await.expect("connect");
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "answered while the listener was full: {}", String::from_utf8_lossy(&answer));

    // A slot frees: the waiting client is accepted and answered.
    drop(idle.pop());
    tokio::time::timeout(std::time::Duration::from_secs(30), waiting.read_to_end(&mut answer))
        .await
        .expect("served once a slot was free")
        .expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    gw.stop().await;
}
