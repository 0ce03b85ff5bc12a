//! TLS to upstreams: the system's roots plus `forward.ca_file`, optional
//! client certificates (mutual TLS), ALPN offering HTTP/2 and HTTP/1.1.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::{TlsError, certificates, private_key, provider, read, read_certificates, versions};
use crate::config::ForwardConfig;

/// The system's trusted roots, read once per process (a few hundred
/// certificates; reading them costs milliseconds, not worth repeating).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "could not read some of the system's CA certificates");
        }
        found.certs
    })
}

/// The client TLS configuration for every upstream.
pub fn client_config(f: &ForwardConfig) -> Result<ClientConfig, TlsError> {
    let identity = match (&f.client_cert, &f.client_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => {
            return Err(TlsError::Invalid {
                key: "forward.client_cert".into(),
                reason: "forward.client_cert and forward.client_key go together; set both for mutual TLS, or neither".into(),
            });
        }
    };
    let config = client_tls(f.ca_file.as_deref().map(|p| ("forward.ca_file", p)), identity, "forward")?;
    if f.ca_file.is_none() && system_roots().is_empty() && f.upstreams.iter().any(|u| u.starts_with("https://")) {
        tracing::warn!(
            "no trusted CA certificates: the system has none and forward.ca_file is not set, so https upstreams will fail verification"
        );
    }
    Ok(config)
}

/// A client configuration trusting the system's roots plus `ca` (the config
/// key it came from, and the file), presenting `identity` (certificate and
/// key files) when the server asks for one.
pub fn client_tls(ca: Option<(&str, &Path)>, identity: Option<(&Path, &Path)>, section: &str) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let (_added, _unusable) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some((key, path)) = ca {
        for cert in read_certificates(key, path)? {
            roots.add(cert).map_err(|e| TlsError::Invalid {
                key: key.into(),
                reason: format!("{} holds a certificate that is not a usable CA: {e}", path.display()),
            })?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions("1.2").unwrap_or_default())
        .map_err(|e| TlsError::Invalid { key: section.into(), reason: e.to_string() })?
        .with_root_certificates(Arc::new(roots));
    let Some((cert, key)) = identity else { return Ok(builder.with_no_client_auth()) };
    let (cert_key, key_key) = (format!("{section}.client_cert"), format!("{section}.client_key"));
    let chain = certificates(&cert_key, cert, &read(&cert_key, cert)?)?;
    let pk = private_key(&key_key, key, &read(&key_key, key)?)?;
    builder.with_client_auth_cert(chain, pk).map_err(|e| TlsError::Invalid {
        key: key_key,
        reason: format!("{} does not go with the certificate in {}: {e}", key.display(), cert.display()),
    })
}

/// An https-or-http connector speaking HTTP/1.1 and HTTP/2 (by ALPN) over `tls`.
pub fn connector(tls: ClientConfig, mut http: HttpConnector) -> HttpsConnector<HttpConnector> {
    // The https connector hands http:// URLs to the plain connector.
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().enable_http2().wrap_connector(http)
}

/// Finds a TLS failure in an error's chain and says it plainly:
/// `certificate verify failed: …` for a certificate the gateway rejected,
/// `TLS handshake failed: …` for anything else rustls refused.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(c) => format!("certificate verify failed: {}", certificate_problem(c)),
                rustls::Error::AlertReceived(a) => format!("TLS handshake failed: {tls}{}", alert_hint_by_name(&format!("{a:?}"))),
                other => format!("TLS handshake failed: {other}"),
            });
        }
        // io::Error's source() skips the error it wraps (hyper-rustls wraps
        // tokio-rustls' io::Error in another), so look inside explicitly.
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    // An alert after the handshake (TLS 1.3 reports a refused client
    // certificate on the first read) reaches us with rustls' error already
    // flattened to text by the HTTP/2 layer.
    let text = chain_text(e);
    let at = text.find(ALERT)?;
    let alert = text[at + ALERT.len()..].split([':', ' ', ')']).next().unwrap_or_default();
    Some(format!("TLS handshake failed: {ALERT}{alert}{}", alert_hint_by_name(alert)))
}

/// How rustls words an alert from the peer.
const ALERT: &str = "received fatal alert: ";

/// An error and its sources, joined by `: `.
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

fn alert_hint_by_name(alert: &str) -> &'static str {
    match alert {
        "CertificateRequired" => " (the upstream requires a client certificate: forward.client_cert and forward.client_key)",
        "HandshakeFailure" => " (no TLS version or cipher suite in common, or the upstream wants a client certificate)",
        "BadCertificate" | "UnknownCA" | "CertificateUnknown" | "AccessDenied" => {
            " (the upstream did not accept the client certificate, or its absence: check forward.client_cert)"
        }
        _ => "",
    }
}

fn certificate_problem(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => {
            "unknown issuer (the upstream's certificate is not signed by a trusted CA; add its CA to forward.ca_file)".into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("{c} (the certificate does not name the host in the upstream URL)")
        }
        C::Expired | C::ExpiredContext { .. } => format!("{c} (the upstream's certificate has expired)"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let text = describe(&io).expect("found");
        assert!(text.starts_with("certificate verify failed: unknown issuer"), "{text}");
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        ));
        let text = describe(&nested).expect("found");
        assert!(text.starts_with("certificate verify failed: ") && text.contains("has expired"), "{text}");
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert!(
            describe(&alert)
                .expect("found")
                .starts_with("TLS handshake failed: received fatal alert: CertificateRequired (the upstream requires")
        );
        let flattened = std::io::Error::new(std::io::ErrorKind::InvalidData, "received fatal alert: BadCertificate");
        let text = describe(&flattened).expect("found");
        assert!(
            text.ends_with(
                "BadCertificate (the upstream did not accept the client certificate, or its absence: check forward.client_cert)"
            ),
            "{text}"
        );
        assert_eq!(describe(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn client_cert_and_key_go_together() {
        let f = ForwardConfig { client_cert: Some("c.pem".into()), ..ForwardConfig::default() };
        let e = client_config(&f).expect_err("half a pair").to_string();
        assert!(e.contains("go together"), "{e}");
    }
}
