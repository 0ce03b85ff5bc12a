//! A throwaway PKI for `ingest-tls`: an ECDSA P-256 CA and a server
//! certificate it issued for 127.0.0.1 and localhost, written as PEM files for
//! weir's `[server.tls]`, and rustls client configurations that trust the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};

/// The CA and the server certificate, on disk.
pub struct Pki {
    /// The server's PEM certificate chain (leaf only).
    pub cert: PathBuf,
    /// The server's PEM private key.
    pub key: PathBuf,
    roots: RootCertStore,
}

impl Pki {
    /// Generates the CA and the server certificate and writes `ca.crt`,
    /// `server.crt` and `server.key` into `dir` (created if missing).
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "weir-bench CA");
        let ca_cert = ca_params.self_signed(&ca_key).context("self-signing the CA")?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().context("generating the server key")?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).context("server certificate params")?;
        params.distinguished_name.push(DnType::CommonName, "weir-bench server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).context("issuing the server certificate")?;

        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).context("trusting the bench CA")?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        write("ca.crt", &ca_cert.pem())?;
        Ok(Pki { cert: write("server.crt", &cert.pem())?, key: write("server.key", &key.serialize_pem())?, roots })
    }

    /// A client trusting the CA, offering `alpn` (e.g. `b"http/1.1"` or
    /// `b"h2"`). Session resumption is off: every connection pays a full
    /// handshake, which is what the handshake figure is about.
    pub fn client(&self, alpn: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
        let mut config = ClientConfig::builder_with_provider(weir::tls::provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Method, StatusCode};
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use rustls::ServerConfig;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::client::{Conn, base_headers};

    /// An HTTPS server on the PKI's files (ALPN h2 and http/1.1, as weir's)
    /// answering 200 with the HTTP version it saw.
    async fn server(pki: &Pki) -> SocketAddrAndTask {
        let cert_pem = std::fs::read(&pki.cert).expect("cert file");
        let key_pem = std::fs::read(&pki.key).expect("key file");
        let chain = weir::tls::certificates("cert", &pki.cert, &cert_pem).expect("chain");
        let key = weir::tls::private_key("key", &pki.key, &key_pem).expect("key");
        let mut config = ServerConfig::builder_with_provider(weir::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let v = format!("{:?}", req.version());
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(v))))
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        (addr, task)
    }

    type SocketAddrAndTask = (std::net::SocketAddr, tokio::task::JoinHandle<()>);

    #[tokio::test]
    async fn clients_trust_the_server_certificate_over_h1_and_h2() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::create(dir.path()).expect("pki");
        assert!(dir.path().join("ca.crt").is_file());
        let (addr, task) = server(&pki).await;
        for (alpn, h2, version) in [(&b"http/1.1"[..], false, "HTTP/1.1"), (&b"h2"[..], true, "HTTP/2.0")] {
            let client = pki.client(alpn).expect("client config");
            let mut conn = Conn::open_with(addr, Some(&client)).await.expect("connect");
            assert_eq!(conn.is_h2(), h2);
            for _ in 0..2 {
                let (status, body) = conn.send(Method::GET, "/healthz", &base_headers(addr), Bytes::new()).await.expect("request");
                assert_eq!(status, StatusCode::OK);
                assert_eq!(body, version);
            }
        }
        task.abort();
    }

    #[tokio::test]
    async fn a_foreign_ca_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::create(&dir.path().join("a")).expect("pki a");
        let other = Pki::create(&dir.path().join("b")).expect("pki b");
        let (addr, task) = server(&pki).await;
        let client = other.client(b"http/1.1").expect("client config");
        assert!(Conn::open_with(addr, Some(&client)).await.is_err());
        task.abort();
    }
}
