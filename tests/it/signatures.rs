//! Webhook signature schemes end to end: the shared vectors
//! (`tests/vectors/signatures/`, made by the providers' official libraries)
//! posted to a real gateway whose tenants run `hmac-verify` in each SDK's
//! language (Rust, JavaScript, Python), one tenant per scheme and language,
//! configured as the vectors' receiver (current and previous secret).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::Value;
use weir::config::TenantConfig;

use crate::support::{Client, Gateway, TOKEN};

const VECTORS: [&str; 5] = [
    include_str!("../vectors/signatures/github.json"),
    include_str!("../vectors/signatures/stripe.json"),
    include_str!("../vectors/signatures/standard-webhooks.json"),
    include_str!("../vectors/signatures/shopify.json"),
    include_str!("../vectors/signatures/slack.json"),
];

fn vectors() -> Vec<Value> {
    VECTORS.iter().map(|text| serde_json::from_str(text).expect("vector file is JSON")).collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// `hmac-verify` in every SDK's language: the same vectors hold each to the
/// same verdicts and reasons.
const LANGS: [crate::support::Lang; 3] =
    [crate::support::Lang::RUST_HMAC_VERIFY, crate::support::Lang::JS_HMAC_VERIFY, crate::support::Lang::PY_HMAC_VERIFY];

fn hmac_tenant(lang: &crate::support::Lang, id: &str, config: &[(&str, String)]) -> TenantConfig {
    lang.tenant(TenantConfig {
        id: format!("{}-{id}", lang.name),
        plugin: Some(PathBuf::from(lang.component)),
        config: config.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        ..TenantConfig::default()
    })
}

/// The receiver of a vector file as `hmac-verify` config. The gateway's
/// clock is the real one, not the vectors' `now`: the tolerance grows by
/// their age, plus half the tolerance for the test's own run time (so a
/// case signed `tolerance` seconds before `now` still passes, and one signed
/// twice that before still fails).
fn receiver(file: &Value, wall_secs: u64, with_previous: bool) -> Vec<(&'static str, String)> {
    let secrets = file["secrets"].as_array().expect("secrets");
    let mut config = vec![("scheme", str_of(file, "scheme").to_owned()), ("secret", secrets[0].as_str().expect("secret").to_owned())];
    if with_previous {
        config.push(("previous_secret", secrets[1].as_str().expect("secret").to_owned()));
    }
    if let Some(tolerance) = file["tolerance_secs"].as_u64() {
        let age = wall_secs.saturating_sub(file["now"].as_u64().expect("now"));
        config.push(("tolerance_secs", (age + tolerance + tolerance / 2).to_string()));
    }
    config
}

/// Posts one case as the sender would.
async fn post(c: &Client, gw: &Gateway, tenant: &str, case: &Value) -> crate::support::Reply {
    let headers: Vec<(&str, &str)> =
        case["headers"].as_object().expect("headers").iter().map(|(k, v)| (k.as_str(), v.as_str().expect("header value"))).collect();
    c.post(&gw.ingest_url(&format!("/ingest/{tenant}/webhook")), &headers, str_of(case, "body").as_bytes().to_vec()).await
}

/// What `hmac-verify`'s reason says for each error kind of the vectors.
fn reason_of(kind: &str) -> &'static str {
    match kind {
        "missing_header" => "missing ",
        "malformed_header" => "malformed ",
        "timestamp_out_of_tolerance" => "outside the tolerance",
        "mismatch" => "signature mismatch",
        other => panic!("unknown error kind {other:?} in the vectors"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

#[tokio::test]
async fn hmac_verify_gives_every_scheme_vector_its_verdict() {
    let files = vectors();
    let wall = now_secs();
    let tenants: Vec<_> =
        LANGS.iter().flat_map(|l| files.iter().map(move |f| hmac_tenant(l, str_of(f, "scheme"), &receiver(f, wall, true)))).collect();
    let gw = Gateway::start_with("", move |c| c.tenants.extend(tenants)).await;
    let c = Client::new();

    let (mut accepted, mut rejected) = (0, 0);
    for (lang, file) in LANGS.iter().flat_map(|l| files.iter().map(move |f| (l, f))) {
        let scheme = str_of(file, "scheme");
        for case in file["cases"].as_array().expect("cases") {
            let name = format!("{}: {scheme}/{}", lang.name, str_of(case, "name"));
            // A fixed vector cannot stay in the future of the real clock;
            // the SDKs' unit tests check those at the vectors' `now`.
            if case["timestamp"].as_u64().is_some_and(|t| t > file["now"].as_u64().expect("now")) {
                continue;
            }
            let r = post(&c, &gw, &format!("{}-{scheme}", lang.name), case).await;
            match str_of(case, "expect") {
                "ok" => {
                    assert_eq!(r.status, StatusCode::ACCEPTED, "{name}: {:?}", r.body);
                    assert_eq!(r.json()["quarantined"], false, "{name}: accepted, not a plugin fault");
                    accepted += 1;
                }
                kind => {
                    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {:?}", r.body);
                    assert_eq!(r.json()["error"], "rejected", "{name}");
                    let message = r.json()["message"].as_str().expect("reason").to_owned();
                    assert!(message.contains(reason_of(kind)), "{name}: expected {kind}, the reason is {message:?}");
                    rejected += 1;
                }
            }
        }
    }
    assert!(accepted >= 3 * 5 * 2 && rejected >= 3 * 5 * 4, "every scheme ran in every language: {accepted} accepted, {rejected} rejected");
    let status = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(status["pending"].as_u64(), Some(accepted), "exactly the accepted triggers are stored");
    assert_eq!(status["quarantined"], 0, "no plugin fault");
    gw.stop().await;
}

#[tokio::test]
async fn hmac_verify_takes_the_previous_secret_only_when_configured() {
    let files = vectors();
    let wall = now_secs();
    let mut tenants = Vec::new();
    for (lang, f) in LANGS.iter().flat_map(|l| files.iter().map(move |f| (l, f))) {
        let scheme = str_of(f, "scheme");
        tenants.push(hmac_tenant(lang, &format!("{scheme}-rotating"), &receiver(f, wall, true)));
        tenants.push(hmac_tenant(lang, &format!("{scheme}-current"), &receiver(f, wall, false)));
    }
    let gw = Gateway::start_with("", move |c| c.tenants.extend(tenants)).await;
    let c = Client::new();
    for (lang, file) in LANGS.iter().flat_map(|l| files.iter().map(move |f| (l, f))) {
        let scheme = str_of(file, "scheme");
        let (rotating, current) = (format!("{}-{scheme}-rotating", lang.name), format!("{}-{scheme}-current", lang.name));
        let rotated = file["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["expect"] == "ok" && c["matched_secret"] == 1)
            .unwrap_or_else(|| panic!("{scheme}: no case signed with the previous secret"));
        let r = post(&c, &gw, &rotating, rotated).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{rotating}: signed with previous_secret: {:?}", r.body);
        let r = post(&c, &gw, &current, rotated).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{current}: the previous secret is not configured: {:?}", r.body);
        assert!(r.json()["message"].as_str().expect("reason").contains("signature mismatch"), "{current}: {:?}", r.body);
    }
    gw.stop().await;
}

#[tokio::test]
async fn hmac_verify_refuses_an_unknown_scheme_with_a_reason_not_a_fault() {
    let github = &vectors()[0];
    let valid = github["cases"].as_array().expect("cases").iter().find(|c| c["name"] == "valid").expect("a valid case");
    let secret = github["secrets"][0].as_str().expect("secret");
    let tenants: Vec<_> =
        LANGS.iter().map(|l| hmac_tenant(l, "typo", &[("scheme", "git-hub".into()), ("secret", secret.into())])).collect();
    let gw = Gateway::start_with("", move |c| c.tenants.extend(tenants)).await;
    let c = Client::new();
    for lang in &LANGS {
        let r = post(&c, &gw, &format!("{}-typo", lang.name), valid).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}: {:?}", lang.name, r.body);
        assert_eq!(r.json()["error"], "rejected");
        let message = r.json()["message"].as_str().expect("reason").to_owned();
        assert!(
            message.contains(r#"unknown signature scheme "git-hub""#) && message.contains("standard-webhooks"),
            "{}: {message}",
            lang.name
        );
    }
    let status = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!((&status["pending"], &status["quarantined"]), (&Value::from(0), &Value::from(0)), "nothing stored, not even as quarantined");
    gw.stop().await;
}
