//! A throwaway PKI for the TLS tests: a CA, certificates it issues, their
//! files on disk, and rustls configurations for test clients and servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and key issued by a [`Ca`], as PEM and as DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for 127.0.0.1 and localhost, valid for `days`.
    pub fn server(&self, name: &str, days: u64) -> Leaf {
        self.issue(name, &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth, days)
    }

    /// A server certificate for these names only.
    pub fn server_for(&self, sans: &[&str]) -> Leaf {
        self.issue(sans[0], sans, ExtendedKeyUsagePurpose::ServerAuth, 30)
    }

    /// A client certificate (for mutual TLS).
    pub fn client(&self, name: &str) -> Leaf {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth, 30)
    }

    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose, days: u64) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(3600);
        // Whole seconds: the certificate stores no fraction.
        params.not_after = (now + Duration::from_secs(days * 86_400)).replace_nanosecond(0).expect("nanos");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write(dir, name, &self.pem)
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA pem")).expect("add root");
        roots
    }
}

impl Leaf {
    /// Writes `{name}.crt` and `{name}.key` into `dir` (each by rename, so a
    /// watcher never sees half a file).
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (write(dir, &format!("{name}.crt"), &self.cert_pem), write(dir, &format!("{name}.key"), &self.key_pem))
    }

    pub fn not_after(&self) -> i64 {
        weir::tls::der::not_after(&self.der).expect("not_after")
    }

    /// An HTTPS server configuration with this certificate; `clients` set
    /// requires a client certificate issued by that CA.
    pub fn server_config(&self, clients: Option<&Ca>) -> rustls::ServerConfig {
        let provider = weir::tls::provider();
        let builder =
            rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().expect("versions");
        let builder = match clients {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider).build().expect("verifier"),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(vec![self.der.clone()], self.key()).expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key pem")
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write pem");
    std::fs::rename(&tmp, &path).expect("rename pem");
    path
}

/// A client configuration trusting `ca` (or nothing) and offering TLS 1.2 and 1.3.
pub fn client_config(ca: Option<&Ca>, identity: Option<&Leaf>) -> rustls::ClientConfig {
    let roots = ca.map(Ca::roots).unwrap_or_else(rustls::RootCertStore::empty);
    let builder = rustls::ClientConfig::builder_with_provider(weir::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        Some(leaf) => builder.with_client_auth_cert(vec![leaf.der.clone()], leaf.key()).expect("client cert"),
        None => builder.with_no_client_auth(),
    }
}
