//! Fuzzing the config parser: the example config with random lines replaced,
//! and random `WEIR_*` overrides. A config never panics the parser, and an
//! error names the line, the variable or the key, and says what is wrong.
//!
//! `PROPTEST_CASES` raises the case count for a longer run (docs/operations.md).

use proptest::prelude::*;

use super::*;

/// The config of every fuzz test: `ci_cases` cases (kept small so the suite
/// stays fast in CI), or `PROPTEST_CASES` when it is set, for a longer run.
/// (Setting `cases` in a `ProptestConfig` would otherwise override it.)
pub(crate) fn fuzz_config(ci_cases: u32) -> ProptestConfig {
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { ci_cases };
    ProptestConfig { cases, ..ProptestConfig::default() }
}

const EXAMPLE: &str = include_str!("../../../examples/weir.toml");

/// Keys, sections and values that look like config, so replaced lines reach
/// deserialisation and validation rather than stopping at the TOML parser.
fn line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "listen",
            "admin_listen",
            "max_body_bytes",
            "path",
            "max_bytes",
            "upstreams",
            "token",
            "id",
            "plugin",
            "shards",
            "name",
            "cert",
            "key",
            "ca_file",
            "metrics_token",
            "plugin_timeout_ms",
            "min_free_bytes",
        ])
        .prop_map(String::from),
        "[a-z_]{1,14}",
    ];
    let value = prop_oneof![
        "\"[ -~]{0,24}\"",
        "-?[0-9]{1,21}",
        Just("true".to_string()),
        "\\[(\"[ -~&&[^\"\\\\]]{0,12}\", ?){0,3}\\]",
        "[ -~]{0,16}",
        Just("\"0.0.0.0:0\"".to_string()),
        Just("\"http://127.0.0.1:1/x\"".to_string()),
    ];
    prop_oneof![
        3 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(vec![
            "[server]", "[store]", "[forward]", "[admin]", "[[tenants]]", "[server.tls]", "[[forward.routes]]",
            "[fleet]", "[plugins]", "[telemetry]", "[tenants.config]",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,30}",
        1 => any::<String>(),
    ]
}

fn env_var() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "SERVER_LISTEN",
            "SERVER_MAX_BODY_BYTES",
            "SERVER_TLS_CERT",
            "STORE_PATH",
            "STORE_SHARDS",
            "STORE_MAX_BYTES",
            "FORWARD_UPSTREAMS",
            "FORWARD_ROUTES_0_NAME",
            "FORWARD_ROUTES_1_UPSTREAMS",
            "ADMIN_TOKEN",
            "TENANTS_0_ID",
            "TENANTS_1_PLUGIN_TIMEOUT_MS",
            "TENANTS_7_ID",
            "TENANTS_0_CONFIG_SECRET",
            "FLEET_NATS_URLS",
            "FLEET_POP",
            "TELEMETRY_TRACE_SAMPLE_RATIO",
            "PLUGINS_FLEET_MEMORY_MB",
            "LOG",
            "SERVER",
            "TENANTS",
            "TENANTS_X_ID",
        ])
        .prop_map(String::from),
        "[A-Z0-9_]{0,24}",
        "[a-zA-Z0-9_.-]{0,12}",
    ];
    let value = prop_oneof!["[ -~]{0,24}", "-?[0-9]{1,21}", Just("true".to_string()), "\\[[ -~]{0,20}", any::<String>()];
    (name, value).prop_map(|(n, v)| (format!("{ENV_PREFIX}{n}"), v))
}

/// The example with up to four lines replaced or inserted.
fn config_text() -> impl Strategy<Value = String> {
    proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>(), line()), 0..4).prop_map(|edits| {
        let mut lines: Vec<String> = EXAMPLE.lines().map(String::from).collect();
        for (at, insert, l) in edits {
            let i = at.index(lines.len());
            if insert { lines.insert(i, l) } else { lines[i] = l }
        }
        lines.join("\n")
    })
}

/// What the properties require of an error.
fn check_error(e: &ConfigError, env: &[(String, String)]) -> Result<(), TestCaseError> {
    match e {
        ConfigError::Parse { origin, message } if origin == "t" => {
            prop_assert!(message.starts_with("line "), "a file error without its line: {e}");
            prop_assert!(message.len() > "line 1: ".len(), "nothing said after the line: {e}");
        }
        ConfigError::Parse { origin, message } => {
            // Only when no single variable breaks it on its own.
            prop_assert!(env.iter().filter(|(k, _)| origin.contains(k.as_str())).count() > 1, "an override error names no variable: {e}");
            prop_assert!(!message.is_empty(), "{e}");
        }
        ConfigError::Env { var, message } => {
            prop_assert!(env.iter().any(|(k, _)| k == var), "names {var}, which was not set");
            prop_assert!(!message.is_empty(), "{e}");
        }
        ConfigError::Invalid { key, message } => prop_assert!(!key.is_empty() && !message.is_empty(), "{e}"),
        ConfigError::Read { .. } => return Err(TestCaseError::fail(format!("no file was read: {e}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::config::fuzz::fuzz_config(256))]

    #[test]
    fn config_fuzz_lines_replaced_in_the_example(text in config_text()) {
        if let Err(e) = Config::from_toml_with_env(&text, "t", &[]) {
            check_error(&e, &[])?;
        }
    }

    #[test]
    fn config_fuzz_environment_overrides(text in config_text(), env in proptest::collection::vec(env_var(), 0..4)) {
        if let Err(e) = Config::from_toml_with_env(&text, "t", &env) {
            check_error(&e, &env)?;
        }
    }

    /// Any bytes read as text (a file that is not a config at all).
    #[test]
    fn config_fuzz_arbitrary_text(text in any::<String>()) {
        if let Err(e) = Config::from_toml_with_env(&text, "t", &[]) {
            check_error(&e, &[])?;
        }
    }
}
