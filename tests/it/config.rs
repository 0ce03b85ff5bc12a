//! `weir check-config` and `weir serve` on good and bad configs, through the real binary.

use std::process::Command;

use crate::support::weir_bin;

fn check_config(text: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, text).expect("write");
    let mut cmd = Command::new(weir_bin());
    cmd.arg("check-config").arg(&file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run weir");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_example_config_checks_clean() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/weir.toml")).expect("example");
    let (code, out, err) = check_config(&text, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn bad_configs_exit_2_naming_the_key_and_the_fix() {
    // (config text, environment, what the message must say)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        ("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body = 5\n", &[], &["line 3", "max_body"]),
        ("[store]\nmax_bytes = 12\n", &[], &["store.max_bytes", "at least"]),
        ("[store]\njournal_bytes = 4096\n", &[], &["store.journal_bytes", "between 65536"]),
        ("[forward]\nupstreams = [\"not a url\"]\n", &[], &["forward.upstreams[0]", "http://"]),
        ("[server]\nlisten = [1\n", &[], &["line"]),
        ("", &[("WEIR_SERVER_MAX_BODY_BYTES", "huge")], &["WEIR_SERVER_MAX_BODY_BYTES"]),
        ("", &[("WEIR_NOT_A_KEY", "1")], &["WEIR_NOT_A_KEY", "does not name a config key"]),
        ("[server]\nmax_connections = 0\n", &[], &["server.max_connections", "between 1 and"]),
        ("[server.tls]\ncert = \"/x.crt\"\n", &[], &["server.tls.key", "PEM private key"]),
        ("[server.admin_tls]\nkey = \"/x.key\"\n", &[], &["server.admin_tls.cert", "PEM certificate"]),
        ("[server.tls]\ncert = \"/x.crt\"\nkey = \"/x.key\"\nhandshake_timeout_ms = 0\n", &[], &["server.tls.handshake_timeout_ms"]),
        ("[forward]\nclient_cert = \"/c.pem\"\n", &[], &["forward.client_key", "go together"]),
        ("[telemetry]\notlp_endpoint = \"ftp://collector\"\n", &[], &["telemetry.otlp_endpoint", "https://"]),
    ];
    for (text, env, needles) in cases {
        let (code, _, err) = check_config(text, env);
        assert_eq!(code, 2, "{text:?}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{text:?} {env:?}: expected {n:?} in {err:?}");
        }
    }
}

#[test]
fn env_overrides_apply_to_check_config() {
    let (code, out, err) =
        check_config("", &[("WEIR_STORE_PATH", "/tmp/elsewhere"), ("WEIR_FORWARD_UPSTREAMS", "http://a:1/x,http://b:2/y")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 upstream(s)") && out.contains("/tmp/elsewhere"), "{out}");
}

#[test]
fn serve_refuses_a_store_file_it_cannot_open_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("shard-00.redb"), b"garbage, not a database").expect("write");
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, crate::support::config_toml(&data, "")).expect("write");
    let out = Command::new(weir_bin()).args(["serve", "--config"]).arg(&file).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shard-00.redb"), "{err}");
    assert_eq!(std::fs::read(data.join("shard-00.redb")).expect("read"), b"garbage, not a database", "left untouched");
}
