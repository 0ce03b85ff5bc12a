//! `GET /v1/backup`: streams a snapshot of the store over HTTP, paced by
//! `admin.backup_max_mb_per_sec` so a backup does not starve ingest of CPU
//! and disk. The snapshot itself (format, consistency, restore) is
//! [`crate::store::snapshot`]; the stream stops at once on shutdown.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;

use super::Admin;
use crate::http::Resp;
use crate::store::{StoreError, snapshot};

impl Admin {
    pub(super) async fn backup(&self) -> Resp {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
        let (store, repo, shutdown) = (self.store.clone(), self.repo.clone(), self.shutdown.clone());
        let handle = tokio::runtime::Handle::current();
        let rate = self.backup_bytes_per_sec.max(1);
        // Counted in the shutdown's tasks: the stream stops at its next chunk and is joined.
        let stream = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut sent = 0u64;
            let result = snapshot::write(&store, &repo, &mut |chunk| {
                if shutdown.is_triggered() {
                    return Err(StoreError::ShuttingDown);
                }
                sent += chunk.len() as u64;
                let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait.min(std::time::Duration::from_millis(100)));
                }
                handle.block_on(tx.send_data(chunk)).map_err(|_| StoreError::Io("the client went away".into()))
            });
            match result {
                Ok(n) => tracing::info!(triggers = n, bytes = sent, "backup streamed"),
                Err(e) => {
                    tracing::warn!(error = %e, "backup stopped before the end; the client gets a truncated stream");
                    tx.abort(std::io::Error::other(e.to_string()));
                }
            }
        });
        self.tasks.spawn("backup stream", async move {
            let _ = stream.await;
        });
        let mut resp = Response::new(body.boxed());
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.weir.backup"));
        resp
    }
}
