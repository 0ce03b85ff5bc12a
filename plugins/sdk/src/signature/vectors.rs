//! The shared signature vectors (`tests/vectors/signatures/*.json`, made by
//! the providers' official libraries; format in `tests/vectors/README.md`),
//! run through [`Scheme::verify`]: every SDK is held to the same cases.

use serde_json::Value;

use super::{DEFAULT_TOLERANCE_SECS, Scheme, SignatureError};
use crate::Header;

const FILES: [(&str, &str); 5] = [
    (
        "github",
        include_str!("../../../../tests/vectors/signatures/github.json"),
    ),
    (
        "stripe",
        include_str!("../../../../tests/vectors/signatures/stripe.json"),
    ),
    (
        "standard-webhooks",
        include_str!("../../../../tests/vectors/signatures/standard-webhooks.json"),
    ),
    (
        "shopify",
        include_str!("../../../../tests/vectors/signatures/shopify.json"),
    ),
    (
        "slack",
        include_str!("../../../../tests/vectors/signatures/slack.json"),
    ),
];

/// One vector file, parsed.
struct File {
    scheme: Scheme,
    keys: Vec<Vec<u8>>,
    now: u64,
    tolerance_secs: u64,
    cases: Vec<Case>,
}

struct Case {
    name: String,
    headers: Vec<Header>,
    body: Vec<u8>,
    /// `Ok(matched secret)` or the error kind.
    expect: Result<usize, String>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn load(name: &str, text: &str) -> File {
    let json: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}.json: {e}"));
    let scheme: Scheme = str_of(&json, "scheme").parse().expect("known scheme");
    assert_eq!(scheme.name(), name, "{name}.json names its scheme");
    let keys = json["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            scheme
                .key(s.as_str().expect("secret"))
                .expect("usable secret")
        })
        .collect();
    let cases = json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: str_of(c, "name").to_owned(),
            headers: c["headers"]
                .as_object()
                .expect("headers")
                .iter()
                .map(|(k, v)| Header::new(k.as_str(), v.as_str().expect("header value")))
                .collect(),
            body: str_of(c, "body").as_bytes().to_vec(),
            expect: match str_of(c, "expect") {
                "ok" => Ok(c["matched_secret"].as_u64().expect("matched_secret") as usize),
                kind => Err(kind.to_owned()),
            },
        })
        .collect();
    File {
        scheme,
        keys,
        now: json["now"].as_u64().expect("now"),
        tolerance_secs: json["tolerance_secs"]
            .as_u64()
            .unwrap_or(DEFAULT_TOLERANCE_SECS),
        cases,
    }
}

fn files() -> Vec<File> {
    FILES.iter().map(|(name, text)| load(name, text)).collect()
}

impl Case {
    /// `expect` with a borrowed kind, to compare with literals.
    fn expected(&self) -> Result<usize, &str> {
        self.expect.as_ref().map(|i| *i).map_err(String::as_str)
    }
}

impl File {
    fn verify(&self, keys: &[Vec<u8>], case: &Case) -> Result<usize, SignatureError> {
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        self.scheme.verify(
            &keys,
            &case.headers,
            &case.body,
            self.now,
            self.tolerance_secs,
        )
    }
}

#[test]
fn every_vector_gets_its_expected_outcome() {
    let mut failures = Vec::new();
    for file in files() {
        for case in &file.cases {
            let got = file.verify(&file.keys, case);
            let got_kind = got.as_ref().map(|i| *i).map_err(|e| e.kind().to_owned());
            if got_kind != case.expect {
                failures.push(format!(
                    "{}/{}: expected {:?}, got {got:?}",
                    file.scheme, case.name, case.expect
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_vectors_cover_every_scheme_rotation_and_error() {
    let files = files();
    assert_eq!(
        files.iter().map(|f| f.scheme).collect::<Vec<_>>(),
        Scheme::ALL
    );
    for file in &files {
        let has = |expect: Result<usize, &str>| file.cases.iter().any(|c| c.expected() == expect);
        assert_eq!(file.keys.len(), 2, "{}: current and previous", file.scheme);
        for expect in [
            Ok(0),
            Ok(1),
            Err("mismatch"),
            Err("missing_header"),
            Err("malformed_header"),
        ] {
            assert!(has(expect), "{}: no case expecting {expect:?}", file.scheme);
        }
        assert_eq!(
            has(Err("timestamp_out_of_tolerance")),
            file.scheme.is_timestamped(),
            "{}",
            file.scheme
        );
    }
}

#[test]
fn rotated_vectors_need_the_previous_secret() {
    for file in files() {
        for case in file.cases.iter().filter(|c| c.expect == Ok(1)) {
            assert_eq!(
                file.verify(&file.keys[..1], case),
                Err(SignatureError::Mismatch),
                "{}/{}",
                file.scheme,
                case.name
            );
        }
    }
}

#[test]
fn a_zero_tolerance_accepts_genuine_stale_vectors() {
    for mut file in files().into_iter().filter(|f| f.scheme.is_timestamped()) {
        file.tolerance_secs = 0;
        for case in &file.cases {
            if case.expected() == Err("timestamp_out_of_tolerance") {
                assert_eq!(
                    file.verify(&file.keys, case),
                    Ok(0),
                    "{}/{}",
                    file.scheme,
                    case.name
                );
            }
        }
    }
}
