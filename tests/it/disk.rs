//! The free-space reserve (`store.min_free_bytes`): below it ingest answers
//! 503 `disk_low` with Retry-After and stores nothing, `/readyz` is 503, and
//! the free space is a gauge. A reserve above the real free space of the
//! test's filesystem stands in for a full disk.

use http::StatusCode;

use crate::metrics::{get, scrape};
use crate::support::{Client, Gateway, TOKEN};

#[tokio::test]
async fn below_the_free_space_reserve_ingest_is_503_disk_low_and_not_ready() {
    // More than any disk has free.
    let reserve = 1u64 << 60;
    let gw = Gateway::start_with("", |c| c.store.min_free_bytes = reserve).await;
    let c = Client::new();
    let r = c.post(&gw.ingest_url("/ingest/acme/s"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "disk_low", "{:?}", r.body);
    assert!(r.headers.get("retry-after").is_some(), "Retry-After tells the sender when to come back");
    let ready = c.get(&gw.ingest_url("/readyz"), None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&ready.body).contains("store.min_free_bytes"), "{:?}", ready.body);
    let m = scrape(&c, &gw).await;
    let free = get(&m, "weir_store_free_bytes", &[]);
    assert!(free > 0.0 && free < reserve as f64, "the gauge shows the real free space: {free}");
    assert_eq!(get(&m, "weir_store_min_free_bytes", &[]), reserve as f64);
    assert_eq!(get(&m, "weir_ready", &[]), 0.0);
    assert_eq!(get(&m, "weir_ingest_requests_total", &[("tenant", "acme"), ("outcome", "disk_low")]), 1.0);
    let stored = c.get(&gw.admin_url("/v1/triggers?tenant=acme"), Some(TOKEN)).await.json();
    assert!(stored["items"].as_array().is_some_and(|a| a.is_empty()), "refused means untouched: {stored}");
    let dir = gw.stop().await;

    // The same store with the default reserve (well under the free space) takes triggers again.
    let gw = Gateway::start_in(dir, "", |_| {}).await;
    assert_eq!(c.post(&gw.ingest_url("/ingest/acme/s"), &[], "{}").await.status, StatusCode::ACCEPTED);
    assert_eq!(c.get(&gw.ingest_url("/readyz"), None).await.status, StatusCode::OK);
    gw.stop().await;
}
