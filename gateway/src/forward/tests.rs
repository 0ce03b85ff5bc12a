//! The forwarder task end to end inside the crate: a real store in a
//! temporary directory, a real loopback upstream, and a store fault caused
//! at will (the store's test hook fails a commit the way ENOSPC or EIO does:
//! the batch is refused and the writer reopens the file).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::Forwarder;
use crate::config::{Config, TenantConfig};
use crate::store::{ControlFile, NewTrigger, State, Store, TriggerMeta};

/// An upstream that answers 200 to everything and counts the requests.
async fn upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/triggers", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new()))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(sock), svc).await;
            });
        }
    });
    (url, count)
}

fn pending(store: &Store, tenant: &str) -> NewTrigger {
    let now = SystemTime::now();
    NewTrigger {
        id: store.next_id(now),
        meta: TriggerMeta {
            received_at_ms: now.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            tenant: tenant.into(),
            source: "test".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body_len: 2,
            ..TriggerMeta::sample()
        },
        body: Bytes::from_static(b"{}"),
        transformed: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_trigger_whose_outcome_write_fails_is_recorded_later_and_not_sent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, received) = upstream().await;
    let mut config = Config { tenants: vec![TenantConfig { id: "acme".into(), ..TenantConfig::default() }], ..Config::default() };
    config.store.path = dir.path().join("store");
    config.forward.upstreams = vec![url];
    let store = Store::open(&config.store).expect("store");
    let repo = Arc::new(ControlFile::open(store.dir()).expect("repo"));
    let id = store.insert(pending(&store, "acme")).await.expect("insert").id;
    // Nothing else writes to this store: the next commit is the outcome of
    // the delivery, and it fails.
    store.fail_next_commits(1);
    let (stop, shutdown) = crate::shutdown::channel();
    let metrics = Arc::new(crate::telemetry::Metrics::new(10));
    let (forwarder, task) = Forwarder::start(
        &config,
        store.clone(),
        repo,
        crate::tenants::Tenants::from_config(&config),
        metrics,
        crate::telemetry::Tracer::off(),
        shutdown,
        None,
    )
    .await
    .expect("start");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let t = loop {
        // The test's own read may meet the file being reopened too.
        let state = match store.get(id).await {
            Ok(Some(t)) if t.meta.state == State::Delivered => break t,
            Ok(Some(t)) => Some(t.meta.state),
            Ok(None) => panic!("the trigger is gone"),
            Err(_) => None,
        };
        assert!(tokio::time::Instant::now() < deadline, "never marked delivered: {state:?}; {:?}", forwarder.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(received.load(Ordering::SeqCst), 1, "delivered once; the outcome was written again, the trigger not sent again");
    assert_eq!(t.meta.attempts.len(), 1, "the attempt is recorded once");
    stop.trigger();
    task.await.expect("forwarder");
    store.close().await;
}
