//! A certificate's `notAfter`, for the expiry metric: rustls verifies
//! certificates but does not expose their validity, so the served
//! certificate is decoded with `x509-cert` (any malformed input gives
//! `None`, never a panic).

use x509_cert::der::Decode;

/// The certificate's `notAfter` as Unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let cert = x509_cert::Certificate::from_der(cert).ok()?;
    i64::try_from(cert.tbs_certificate.validity.not_after.to_unix_duration().as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cert_expiring(unix: i64) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(unix).expect("timestamp");
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // 2030 is written as UTCTime, 2050 and later as GeneralizedTime.
        for unix in [1_900_000_000i64, 2_556_143_999, 2_556_144_000, 2_600_000_000] {
            assert_eq!(not_after(&cert_expiring(unix)), Some(unix), "{unix}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn any_rcgen_expiry_round_trips(unix in 157_766_400i64..4_102_444_799) {
            prop_assert_eq!(not_after(&cert_expiring(unix)), Some(unix));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = not_after(&bytes);
        }

        #[test]
        fn truncated_certificates_give_none(cut in 0usize..200) {
            let der = cert_expiring(1_900_000_000);
            prop_assert_eq!(not_after(&der[..cut.min(der.len() - 1)]), None);
        }
    }
}
