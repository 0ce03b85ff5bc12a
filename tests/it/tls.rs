//! TLS end to end, with certificates made in the test: HTTPS ingest over
//! HTTP/1.1 and HTTP/2, plain HTTP refused with a clear answer, handshake
//! deadlines, certificate reload (file change and SIGHUP), the expiry metric,
//! the admin API and CLI over HTTPS, and delivery to HTTPS upstreams (a test
//! CA, a wrong CA reported in status, mutual TLS).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::{get as metric, scrape};
use crate::pki::{self, Ca, Leaf};
use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, WeirProcess, eventually};

/// `[server.tls]` for `leaf` written into `dir`, plus `extra` keys.
fn server_tls(dir: &Path, leaf: &Leaf, extra: &str) -> String {
    let (cert, key) = leaf.write(dir, "ingest");
    format!("\n[server.tls]\ncert = {:?}\nkey = {:?}\n{extra}\n", cert.display().to_string(), key.display().to_string())
}

/// Starts a gateway with HTTPS ingest and a client trusting `ca`.
async fn tls_gateway(ca: &Ca, leaf: &Leaf, tls_extra: &str, tweak: impl FnOnce(&mut weir::Config)) -> (Gateway, tempfile::TempDir) {
    let certs = tempfile::tempdir().expect("tempdir");
    let extra = server_tls(certs.path(), leaf, tls_extra);
    let client = Client::with_tls(pki::client_config(Some(ca), None));
    let gw = Gateway::start_with_client(tempfile::tempdir().expect("tempdir"), &extra, tweak, client).await;
    (gw, certs)
}

/// One raw TLS connection offering `alpn`, HTTP on top: the certificate the
/// server presented and a sender for requests on this same connection.
async fn connect(addr: std::net::SocketAddr, ca: &Ca, alpn: &[&[u8]]) -> (CertificateDer<'static>, Sender) {
    let mut config = pki::client_config(Some(ca), None);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    let (_, conn) = stream.get_ref();
    let cert = conn.peer_certificates().expect("peer certificate")[0].clone();
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let sender = if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.expect("h2 handshake");
        tokio::spawn(c);
        Sender::H2(s)
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io).await.expect("h1 handshake");
        tokio::spawn(c);
        Sender::H1(s)
    };
    (cert, sender)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// POSTs a trigger to acme; returns the status, the HTTP version and the body.
    async fn ingest(&mut self, addr: std::net::SocketAddr, body: &str) -> (StatusCode, Version, serde_json::Value) {
        let req = Request::post(format!("https://{addr}/ingest/acme/tls"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let resp = match self {
            Sender::H1(s) => {
                let mut req = req;
                *req.uri_mut() = "/ingest/acme/tls".parse().expect("uri");
                req.headers_mut().insert("host", addr.to_string().parse().expect("host"));
                s.send_request(req).await
            }
            Sender::H2(s) => s.send_request(req).await,
        }
        .expect("response");
        let (status, version) = (resp.status(), resp.version());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, version, serde_json::from_slice(&body).expect("json body"))
    }
}

async fn stored_body(gw: &Gateway, id: &str) -> String {
    let t = gw.client.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.json();
    t["body"]["data"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn https_ingest_speaks_http1_and_http2_and_answers_plain_http_clearly() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("ingest", 365);
    let (gw, _certs) = tls_gateway(&ca, &leaf, "", |_| {}).await;

    // HTTP/1.1 and HTTP/2, chosen by ALPN; both stored.
    for (alpn, version) in [(&[b"http/1.1".as_slice()][..], Version::HTTP_11), (&[b"h2".as_slice()][..], Version::HTTP_2)] {
        let (_, mut sender) = connect(gw.ingest, &ca, alpn).await;
        let body = format!(r#"{{"over":"{version:?}"}}"#);
        let (status, got, reply) = sender.ingest(gw.ingest, &body).await;
        assert_eq!((status, got), (StatusCode::ACCEPTED, version), "{reply}");
        let id = reply["id"].as_str().expect("id");
        assert_eq!(stored_body(&gw, id).await, body);
    }

    // A client that does not trust the CA refuses the gateway's certificate.
    let untrusting = Client::with_tls(pki::client_config(None, None));
    let err = untrusting.send(http::Method::GET, &gw.ingest_url("/healthz"), &[], Bytes::new()).await.expect_err("untrusted");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // Plain HTTP to the TLS port: a 400 that says to use https://, then a close.
    let mut tcp = TcpStream::connect(gw.ingest).await.expect("connect");
    tcp.write_all(b"POST /ingest/acme/plain HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read until close");
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.contains(r#""error":"tls_required""#) && answer.contains("https://"), "{answer}");
    drop(tcp);

    // The listener is unharmed, and the refusal was counted once, as plain HTTP only.
    let r = gw.client.get(&gw.ingest_url("/healthz"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_handshake_failures_total", &[("listener", "ingest"), ("reason", "plain_http")]), 1.0);
    assert_eq!(metric(&m, "weir_tls_handshake_failures_total", &[("listener", "ingest"), ("reason", "timeout")]), 0.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_returning_client_resumes_its_session() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("ingest", 365);
    let (gw, _certs) = tls_gateway(&ca, &leaf, "", |_| {}).await;
    // One client configuration (and so one session cache) for both connections.
    let config = Arc::new(pki::client_config(Some(&ca), None));
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(gw.ingest).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut stream = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.expect("handshake");
        // TLS 1.3 tickets arrive after the handshake: read the answer to a request.
        stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        kinds.push(stream.get_ref().1.handshake_kind());
    }
    assert_eq!(kinds, [Some(rustls::HandshakeKind::Full), Some(rustls::HandshakeKind::Resumed)]);
    gw.stop().await;
}

#[tokio::test]
async fn tls_1_3_minimum_refuses_a_tls_1_2_client() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("ingest", 365);
    let (gw, _certs) = tls_gateway(&ca, &leaf, "min_version = \"1.3\"", |_| {}).await;
    let tls12_only = rustls::ClientConfig::builder_with_provider(weir::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let err =
        Client::with_tls(tls12_only).send(http::Method::GET, &gw.ingest_url("/healthz"), &[], Bytes::new()).await.expect_err("refused");
    assert!(err.contains("ProtocolVersion") || err.contains("protocol version"), "{err}");
    // TLS 1.3 clients are served.
    assert_eq!(gw.client.get(&gw.ingest_url("/healthz"), None).await.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn silent_and_half_open_clients_are_closed_at_the_handshake_deadline() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("ingest", 365);
    let (gw, _certs) = tls_gateway(&ca, &leaf, "handshake_timeout_ms = 200", |_| {}).await;
    // One sends nothing; one starts a TLS record and stops.
    for opening in [&b""[..], &[0x16, 0x03, 0x01, 0x00, 0xc8][..]] {
        let mut tcp = TcpStream::connect(gw.ingest).await.expect("connect");
        tcp.write_all(opening).await.expect("write");
        let mut buf = [0u8; 64];
        // The gateway closes: EOF (or a reset). The outer bound only keeps a
        // broken gateway from hanging the test.
        let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await.expect("the gateway closed the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_handshake_failures_total", &[("listener", "ingest"), ("reason", "timeout")]), 2.0);
    assert_eq!(gw.client.get(&gw.ingest_url("/healthz"), None).await.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_request_timeout_on_plain_and_tls_listeners() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("ingest", 365);
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = leaf.write(certs.path(), "admin");
    // TLS on ingest, plain admin; both close a connection that sends no request head in time.
    let extra = format!(
        "{}\n[server.admin_tls]\ncert = {:?}\nkey = {:?}\n",
        server_tls(certs.path(), &leaf, ""),
        cert.display().to_string(),
        key.display().to_string()
    );
    let client = Client::with_tls(pki::client_config(Some(&ca), None));
    let gw = Gateway::start_with_client(tempfile::tempdir().expect("tempdir"), &extra, |c| c.server.request_timeout_ms = 300, client).await;
    let plain = Gateway::start_with("", |c| c.server.request_timeout_ms = 300).await;

    // Plain: connected, silent.
    let mut tcp = TcpStream::connect(plain.ingest).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await.expect("closed by the gateway");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // TLS, both ALPN choices: handshake done, then silent.
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut config = pki::client_config(Some(&ca), None);
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(gw.ingest).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("handshake");
        // HTTP/2: the server's SETTINGS may arrive first; read until the close.
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle {} connection stayed open", String::from_utf8_lossy(alpn));
    }
    plain.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_stuck_in_their_handshake() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("ingest", 365);
    // A long handshake deadline and grace period: waiting for either would show.
    let (gw, _certs) = tls_gateway(&ca, &leaf, "handshake_timeout_ms = 120000", |c| c.server.shutdown_grace_ms = 120_000).await;
    let _silent = TcpStream::connect(gw.ingest).await.expect("connect");
    // Accepted (counted open) before shutdown starts.
    eventually(Duration::from_secs(10), || async {
        let m = scrape(&gw.client, &gw).await;
        (metric(&m, "weir_connections", &[("listener", "ingest")]) >= 1.0).then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), gw.stop())
        .await
        .expect("stopped without waiting out the handshake deadline or the grace period");
}

#[tokio::test]
async fn a_changed_certificate_is_served_to_new_connections_and_a_broken_one_is_ignored() {
    let ca = Ca::new("weir test CA");
    let first = ca.server("first", 365);
    let (gw, certs) = tls_gateway(&ca, &first, "watch_interval_ms = 50\nexpiry_warn_days = 14", |_| {}).await;

    let (seen, mut old_conn) = connect(gw.ingest, &ca, &[b"http/1.1"]).await;
    assert_eq!(seen, first.der);
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_certificate_not_after_seconds", &[("listener", "ingest")]), first.not_after() as f64);
    assert_eq!(metric(&m, "weir_tls_certificate_expiring", &[("listener", "ingest")]), 0.0);

    // Rotate to a certificate that expires in 3 days (inside the 14-day warning).
    let second = ca.server("second", 3);
    second.write(certs.path(), "ingest");
    eventually(Duration::from_secs(30), || async {
        let (cert, _) = connect(gw.ingest, &ca, &[b"http/1.1"]).await;
        (cert == second.der).then_some(())
    })
    .await;
    // The connection opened before the rotation still works.
    let (status, _, _) = old_conn.ingest(gw.ingest, r#"{"still":"here"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_certificate_not_after_seconds", &[("listener", "ingest")]), second.not_after() as f64);
    assert_eq!(metric(&m, "weir_tls_certificate_expiring", &[("listener", "ingest")]), 1.0);
    let ok_reloads = metric(&m, "weir_tls_reloads_total", &[("listener", "ingest"), ("result", "ok")]);
    assert!(ok_reloads >= 1.0);

    // A broken certificate file: the reload fails, is counted once, and the
    // previous certificate stays in service.
    pki::write(certs.path(), "ingest.crt", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    eventually(Duration::from_secs(30), || async {
        let m = scrape(&gw.client, &gw).await;
        (metric(&m, "weir_tls_reloads_total", &[("listener", "ingest"), ("result", "error")]) == 1.0).then_some(())
    })
    .await;
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_reload_failing", &[("listener", "ingest")]), 1.0);
    let (cert, mut sender) = connect(gw.ingest, &ca, &[b"h2"]).await;
    assert_eq!(cert, second.der);
    assert_eq!(sender.ingest(gw.ingest, "{}").await.0, StatusCode::ACCEPTED);
    // Reported once, not on every poll: another change of the other file is needed to retry.
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_reloads_total", &[("listener", "ingest"), ("result", "error")]), 1.0);
    assert_eq!(metric(&m, "weir_tls_reloads_total", &[("listener", "ingest"), ("result", "ok")]), ok_reloads);

    // Fixed files clear the failure.
    let third = ca.server("third", 365);
    third.write(certs.path(), "ingest");
    eventually(Duration::from_secs(30), || async {
        let m = scrape(&gw.client, &gw).await;
        (metric(&m, "weir_tls_reload_failing", &[("listener", "ingest")]) == 0.0).then_some(())
    })
    .await;
    assert_eq!(connect(gw.ingest, &ca, &[b"http/1.1"]).await.0, third.der);
    gw.stop().await;
}

/// The way Kubernetes updates a mounted secret: the files are reached
/// through a directory symlink, which is swapped in one rename.
#[tokio::test]
async fn a_swapped_directory_symlink_is_picked_up_and_a_rotation_in_progress_is_no_error() {
    let ca = Ca::new("weir test CA");
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir(&a).expect("mkdir");
    std::fs::create_dir(&b).expect("mkdir");
    let first = ca.server("first", 365);
    first.write(&a, "ingest");
    std::os::unix::fs::symlink(&a, root.path().join("live")).expect("symlink");
    let live = root.path().join("live");
    let extra = format!(
        "\n[server.tls]\ncert = {:?}\nkey = {:?}\nwatch_interval_ms = 20\n",
        live.join("ingest.crt").display().to_string(),
        live.join("ingest.key").display().to_string()
    );
    let client = Client::with_tls(pki::client_config(Some(&ca), None));
    let gw = Gateway::start_with_client(tempfile::tempdir().expect("tempdir"), &extra, |_| {}, client).await;
    assert_eq!(connect(gw.ingest, &ca, &[b"http/1.1"]).await.0, first.der);

    let second = ca.server("second", 365);
    second.write(&b, "ingest");
    let tmp = root.path().join("live.tmp");
    std::os::unix::fs::symlink(&b, &tmp).expect("symlink");
    std::fs::rename(&tmp, &live).expect("swap the symlink");
    eventually(Duration::from_secs(30), || async { (connect(gw.ingest, &ca, &[b"http/1.1"]).await.0 == second.der).then_some(()) }).await;

    // Then a rotation in place, file by file, with the watcher polling every
    // 20 ms: the moment between the two renames is never reported.
    let third = ca.server("third", 365);
    third.write(&b, "ingest");
    eventually(Duration::from_secs(30), || async { (connect(gw.ingest, &ca, &[b"http/1.1"]).await.0 == third.der).then_some(()) }).await;
    let m = scrape(&gw.client, &gw).await;
    assert_eq!(metric(&m, "weir_tls_reloads_total", &[("listener", "ingest"), ("result", "error")]), 0.0);
    assert_eq!(metric(&m, "weir_tls_reload_failing", &[("listener", "ingest")]), 0.0);
    gw.stop().await;
}

#[test]
fn sighup_reloads_the_certificate_of_the_real_binary() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ca = Ca::new("weir test CA");
    let first = ca.server("first", 365);
    let dir = tempfile::tempdir().expect("tempdir");
    // No file watching: only the signal can make it reload.
    let extra = server_tls(dir.path(), &first, "watch_interval_ms = 0");
    let config = crate::support::write_config(dir.path(), &extra);
    let weir = WeirProcess::start(&config);

    let (seen, _) = rt.block_on(connect(weir.ingest, &ca, &[b"http/1.1"]));
    assert_eq!(seen, first.der);
    let second = ca.server("second", 365);
    second.write(dir.path(), "ingest");
    weir.signal(libc::SIGHUP);
    weir.wait_for_log("TLS certificate reloaded", Duration::from_secs(30));
    let (seen, mut sender) = rt.block_on(connect(weir.ingest, &ca, &[b"http/1.1"]));
    assert_eq!(seen, second.der);
    assert_eq!(rt.block_on(sender.ingest(weir.ingest, "{}")).0, StatusCode::ACCEPTED);
}

#[test]
fn sighup_does_not_stop_a_gateway_without_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::write_config(dir.path(), "");
    let mut weir = WeirProcess::start(&config);
    weir.signal(libc::SIGHUP);
    weir.wait_for_log("SIGHUP", Duration::from_secs(30));
    assert!(weir.child.try_wait().expect("wait").is_none(), "weir exited on SIGHUP");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let r = rt.block_on(Client::new().get(&format!("http://{}/healthz", weir.ingest), None));
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_and_cli_over_https() {
    let ca = Ca::new("weir test CA");
    let leaf = ca.server("admin", 365);
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = leaf.write(certs.path(), "admin");
    let extra = format!("\n[server.admin_tls]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    let client = Client::with_tls(pki::client_config(Some(&ca), None));
    let gw = Gateway::start_with_client(tempfile::tempdir().expect("tempdir"), &extra, |_| {}, client).await;
    assert!(gw.admin_url("/").starts_with("https://"));
    let status = gw.client.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await;
    assert_eq!(status.status, StatusCode::OK);

    let ca_file = ca.write(certs.path(), "ca.pem");
    let cli = |ca: Option<&Path>| {
        let mut cmd = std::process::Command::new(crate::support::weir_bin());
        cmd.args(["status", "--admin-url", &gw.admin_url("")]).env("WEIR_ADMIN_TOKEN", TOKEN);
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd.output().expect("run weir status")
    };
    let out = tokio::task::block_in_place(|| cli(Some(&ca_file)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tokio::task::block_in_place(|| cli(None));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate verify failed: unknown issuer"), "{stderr}");
    gw.stop().await;
}

/// A gateway forwarding to `up`, trusting `ca_file` and presenting `identity`.
async fn forwarding_gateway(up: &Upstream, ca_file: Option<&Path>, identity: Option<(&Path, &Path)>) -> Gateway {
    forwarding_gateway_to(up.url(), ca_file, identity).await
}

async fn forwarding_gateway_to(url: String, ca_file: Option<&Path>, identity: Option<(&Path, &Path)>) -> Gateway {
    Gateway::start_with("", |c| {
        c.forward.failure_threshold = 2;
        c.forward.upstreams = vec![url];
        c.forward.backoff_base_ms = 20;
        c.forward.backoff_cap_ms = 200;
        c.forward.timeout_ms = 5000;
        c.forward.ca_file = ca_file.map(Path::to_path_buf);
        c.forward.client_cert = identity.map(|(c, _)| c.to_path_buf());
        c.forward.client_key = identity.map(|(_, k)| k.to_path_buf());
    })
    .await
}

async fn ingest(gw: &Gateway, body: &str) -> String {
    let r = gw.client.post(&gw.ingest_url("/ingest/acme/src"), &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    r.json()["id"].as_str().expect("id").to_string()
}

/// Waits until the upstream's `last_error` in `/v1/status` contains `needle`.
async fn upstream_error(gw: &Gateway, needle: &str) -> String {
    eventually(Duration::from_secs(30), || async {
        let s = gw.client.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
        let e = s["upstreams"][0]["last_error"].as_str().unwrap_or_default().to_string();
        e.contains(needle).then_some(e)
    })
    .await
}

#[tokio::test]
async fn delivers_to_an_https_upstream_over_http2_with_a_test_ca() {
    let ca = Ca::new("upstream CA");
    let up = Upstream::start_tls(Mode::Ok, ca.server("upstream", 365).server_config(None)).await;
    let files = tempfile::tempdir().expect("tempdir");
    let gw = forwarding_gateway(&up, Some(&ca.write(files.path(), "ca.pem")), None).await;
    let id = ingest(&gw, r#"{"secure":true}"#).await;
    up.wait_until(Duration::from_secs(30), |r| r.len() == 1).await;
    let got = &up.received()[0];
    assert_eq!(got.header("weir-trigger-id"), id);
    assert_eq!(got.body, r#"{"secure":true}"#);
    assert_eq!(got.version, Version::HTTP_2, "ALPN offered h2 and the upstream took it");
    // More deliveries reuse the pooled connection: no handshake per trigger.
    for i in 0..20 {
        ingest(&gw, &format!(r#"{{"n":{i}}}"#)).await;
    }
    up.wait_until(Duration::from_secs(30), |r| r.len() == 21).await;
    assert!(up.connections() <= 2, "{} TLS connections for 21 deliveries", up.connections());
    gw.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_is_reported_in_status_and_loses_nothing() {
    let ca = Ca::new("upstream CA");
    let other = Ca::new("some other CA");
    let mut up = Upstream::start_tls(Mode::Ok, ca.server("upstream", 365).server_config(None)).await;
    let files = tempfile::tempdir().expect("tempdir");
    let gw = forwarding_gateway(&up, Some(&other.write(files.path(), "ca.pem")), None).await;
    let id = ingest(&gw, "{}").await;
    let error = upstream_error(&gw, "certificate verify failed").await;
    assert!(error.contains("unknown issuer") && error.contains("forward.ca_file"), "{error}");
    assert!(up.received().is_empty());
    let t = gw.client.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.json();
    assert_eq!(t["state"], "pending", "{t}");
    let m = scrape(&gw.client, &gw).await;
    assert!(metric(&m, "weir_forward_attempts_total", &[("upstream", &up.url()), ("outcome", "retry")]) >= 1.0);
    // The breaker counts certificate failures like any other: it opens.
    eventually(Duration::from_secs(30), || async {
        let s = gw.client.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
        (s["upstreams"][0]["state"] == "open").then_some(())
    })
    .await;
    up.down().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_reported_in_status() {
    let ca = Ca::new("upstream CA");
    // Trusted, valid, but issued for another host than the URL's 127.0.0.1.
    let up = Upstream::start_tls(Mode::Ok, ca.server_for(&["triggers.example"]).server_config(None)).await;
    let files = tempfile::tempdir().expect("tempdir");
    let gw = forwarding_gateway(&up, Some(&ca.write(files.path(), "ca.pem")), None).await;
    ingest(&gw, "{}").await;
    let error = upstream_error(&gw, "certificate verify failed").await;
    assert!(error.contains("does not name the host"), "{error}");
    assert!(up.received().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn mutual_tls_is_presented_to_an_upstream_that_requires_it() {
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("client CA");
    let up = Upstream::start_tls(Mode::Ok, ca.server("upstream", 365).server_config(Some(&clients))).await;
    let files = tempfile::tempdir().expect("tempdir");
    let ca_file = ca.write(files.path(), "ca.pem");

    // Without a client certificate the upstream refuses the handshake: a
    // TLS error in status, nothing delivered.
    let gw = forwarding_gateway(&up, Some(&ca_file), None).await;
    ingest(&gw, "{}").await;
    let error = upstream_error(&gw, "TLS handshake failed").await;
    assert!(error.contains("CertificateRequired") && error.contains("forward.client_cert"), "{error}");
    gw.stop().await;
    assert!(up.received().is_empty());

    // With one issued by the CA the upstream trusts, it is delivered.
    let (cert, key) = clients.client("weir-edge").write(files.path(), "client");
    let gw = forwarding_gateway(&up, Some(&ca_file), Some((&cert, &key))).await;
    let id = ingest(&gw, r#"{"mtls":1}"#).await;
    up.wait_until(Duration::from_secs(30), |r| r.iter().any(|x| x.header("weir-trigger-id") == id)).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exports_go_to_an_https_collector_trusted_through_ssl_cert_file() {
    let ca = Ca::new("collector CA");
    let collector = Upstream::start_tls(Mode::Ok, ca.server("collector", 365).server_config(None)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let extra = format!("\n[telemetry]\notlp_endpoint = \"https://{}\"\notlp_metrics_interval_secs = 1\n", collector.addr);
    let config = crate::support::write_config(dir.path(), &extra);
    // The system's trust store, replaced by the test CA (rustls-native-certs honours SSL_CERT_FILE).
    let weir =
        tokio::task::block_in_place(|| WeirProcess::start_with_env(&config, &[("SSL_CERT_FILE", ca_file.to_str().expect("utf8 path"))]));
    let r = Client::new().post(&format!("http://{}/ingest/acme/otlp", weir.ingest), &[], "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    collector.wait_until(Duration::from_secs(30), |got| got.iter().any(|x| x.header("content-type") == "application/x-protobuf")).await;
}

/// OTLP/gRPC over TLS: the same rustls connector (ring, the system's roots
/// plus SSL_CERT_FILE) carries HTTP/2 by ALPN to a tonic collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_exports_go_to_a_tls_collector() {
    let ca = Ca::new("collector CA");
    let collector = crate::traces::Receiver::start_grpc_with(Some(ca.server("collector", 365).server_config(None))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let extra = format!(
        "\n[telemetry]\notlp_endpoint = \"https://localhost:{}\"\notlp_protocol = \"grpc\"\notlp_metrics_interval_secs = 1\n",
        collector.addr.port()
    );
    let config = crate::support::write_config(dir.path(), &extra);
    let weir =
        tokio::task::block_in_place(|| WeirProcess::start_with_env(&config, &[("SSL_CERT_FILE", ca_file.to_str().expect("utf8 path"))]));
    let r = Client::new().post(&format!("http://{}/ingest/acme/otlp", weir.ingest), &[], "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["id"].as_str().expect("id").to_string();
    eventually(Duration::from_secs(30), || async {
        let spans = collector.spans();
        spans.iter().any(|s| s.name == "ingest" && crate::traces::attr(s, "weir.trigger_id").as_deref() == Some(id.as_str())).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), || async { collector.metrics().contains_key("weir_ready").then_some(()) }).await;
}

#[test]
fn unusable_certificate_files_are_named_by_check_config() {
    let ca = Ca::new("weir test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let leaf = ca.server("ingest", 365);
    let (cert, _) = leaf.write(dir.path(), "ingest");
    let (_, other_key) = ca.server("other", 365).write(dir.path(), "other");
    let check = |tls: &str| {
        let config = crate::support::write_config(dir.path(), tls);
        let out = std::process::Command::new(crate::support::weir_bin()).arg("check-config").arg(&config).output().expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let missing = dir.path().join("missing.key");
    let (code, err) = check(&format!("[server.tls]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), missing.display().to_string()));
    assert_eq!(code, Some(2));
    assert!(err.contains("server.tls.key") && err.contains("missing.key"), "{err}");
    let (code, err) =
        check(&format!("[server.tls]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), other_key.display().to_string()));
    assert_eq!(code, Some(2));
    assert!(err.contains("does not go with the certificate"), "{err}");
    let (code, err) = check(&format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\nmin_version = \"1.1\"\n",
        cert.display().to_string(),
        other_key.display().to_string()
    ));
    assert_eq!(code, Some(2));
    assert!(err.contains("server.tls.min_version"), "{err}");
    let (code, err) = check(&format!("[forward]\nca_file = {:?}\n", missing.display().to_string()));
    assert_eq!(code, Some(2));
    assert!(err.contains("forward.ca_file"), "{err}");
}
