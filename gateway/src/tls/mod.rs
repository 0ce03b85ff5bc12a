//! TLS, on rustls with the ring provider: the ingest and admin listeners
//! ([`ServerTls`]: handshake with a deadline, certificate reload) and the
//! connections to upstreams ([`upstream`]).
//!
//! One crypto provider everywhere (ring: no cmake, no C++), TLS 1.2 and 1.3
//! only, rustls' default suites (all AEAD with forward secrecy).

pub mod der;
mod server;
pub mod upstream;

use std::path::Path;
use std::sync::Arc;

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use server::{HandshakeError, ServerTls};

/// A TLS file that cannot be used, naming the config key, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("config key `{key}`: cannot read {path}: {reason}")]
    Read { key: String, path: String, reason: String },
    #[error(
        "config key `{key}`: {path} holds no PEM certificate; it must contain the chain, leaf first, as -----BEGIN CERTIFICATE----- blocks"
    )]
    NoCertificate { key: String, path: String },
    #[error("config key `{key}`: {path} holds no PEM private key; it must contain one PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key")]
    NoKey { key: String, path: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// The process-wide provider, built once. Explicit rather than rustls'
/// global default, so no other crate's choice can change what Weir negotiates.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// `"1.2"` (the default) allows TLS 1.2 and 1.3; `"1.3"` only TLS 1.3.
pub fn versions(min_version: &str) -> Option<&'static [&'static SupportedProtocolVersion]> {
    static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min_version {
        "1.2" => Some(BOTH),
        "1.3" => Some(ONLY_13),
        _ => None,
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { key: key.into(), path: path.display().to_string(), reason: e.to_string() })
}

/// Every certificate in a PEM file (a chain, or a bundle of roots).
pub fn certificates(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid { key: key.into(), reason: format!("{} is not valid PEM: {e}", path.display()) })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { key: key.into(), path: path.display().to_string() });
    }
    Ok(certs)
}

pub fn private_key(key: &str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { key: key.into(), path: path.display().to_string() },
        e => TlsError::Invalid { key: key.into(), reason: format!("{} is not valid PEM: {e}", path.display()) },
    })
}

/// Reads a PEM file of certificates (for `forward.ca_file` and the like).
pub fn read_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates(key, path, &read(key, path)?)
}

/// Checks every TLS file the configuration names, as startup would
/// (`weir check-config`).
pub fn check(config: &crate::Config) -> Result<(), TlsError> {
    for (_, prefix, tls) in config.server.tls_listeners() {
        if let Some(tls) = tls {
            server::load_key(prefix, tls)?;
        }
    }
    upstream::client_config(&config.forward)?;
    Ok(())
}
