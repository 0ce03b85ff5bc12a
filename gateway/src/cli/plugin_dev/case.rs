//! The sample requests of `weir plugin test`: a raw HTTP request file
//! (`NAME.http`), its optional settings and expectation (`NAME.toml` next to
//! it), a directory of such cases, or one request made of flags.
//!
//! A request file is what a sender puts on the wire, without chunking:
//!
//! ```text
//! POST /ingest/acme/github HTTP/1.1
//! Content-Type: application/json
//! X-GitHub-Event: issues
//!
//! {"action":"opened"}
//! ```
//!
//! The request line's `/ingest/{tenant}/{source}` names the tenant and the
//! source (other paths name neither); the body is the rest of the file byte
//! for byte, cut at `Content-Length` when the file has that header.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// What a plugin answered (or what happened instead), as `--expect` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Reject,
    Drop,
    /// A plugin fault: a trap, a missed deadline, too much memory, a malformed verdict.
    Fault,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Drop => "drop",
            Verdict::Fault => "fault",
        }
    }
}

/// When the plugin runs, as the trigger's `phase` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Ingest,
    Replay,
}

/// A case's `NAME.toml`: settings for this case, and what to expect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub tenant: Option<String>,
    pub source: Option<String>,
    pub phase: Option<Phase>,
    /// Arrival time (ms since the Unix epoch): signed timestamps are checked against it.
    pub received_at_ms: Option<u64>,
    /// Merged over the tenant's `[tenants.config]` (what `config(key)` returns).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    pub expect: Option<Expect>,
}

/// What a case must come to; every key but `verdict` is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub verdict: Verdict,
    /// The status the sender gets for a reject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Text the reject's reason (or the fault's detail) contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
    /// Headers the stored trigger has after the plugin (name: value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Headers the stored trigger does not have after the plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_headers: Vec<String>,
    /// The stored body (the plugin's new one, or the received one): equal
    /// as JSON values when both are JSON, byte for byte otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Text each of which some log line of the plugin contains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs_contain: Vec<String>,
}

impl Expect {
    pub fn verdict(verdict: Verdict) -> Expect {
        Expect {
            verdict,
            status: None,
            reason_contains: None,
            headers: BTreeMap::new(),
            absent_headers: Vec::new(),
            body: None,
            route: None,
            idempotency_key: None,
            logs_contain: Vec::new(),
        }
    }
}

/// One sample request and its settings, before the command line's flags.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The request file, when there is one.
    pub file: Option<PathBuf>,
    pub tenant: Option<String>,
    pub source: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// A query string the request had: never stored, so never shown to a plugin.
    pub dropped_query: Option<String>,
    pub settings: Settings,
}

/// `--request PATH`: one request file (with its `.toml` if there is one) or
/// a directory of them (every `*.http`, by name).
pub fn load(path: &Path) -> Result<Vec<Case>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![load_file(path)?]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?.path();
        match p.extension().and_then(|e| e.to_str()) {
            Some("http") => files.push(p),
            // A settings file without its request is a mistake worth naming.
            Some("toml") if !p.with_extension("http").exists() => {
                return Err(format!("{} has no request file {}", p.display(), p.with_extension("http").display()));
            }
            _ => {}
        }
    }
    if files.is_empty() {
        return Err(format!("{} holds no request files (*.http)", path.display()));
    }
    files.sort();
    files.iter().map(|f| load_file(f)).collect()
}

fn load_file(path: &Path) -> Result<Case, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let request = parse_request(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let sidecar = path.with_extension("toml");
    let settings = match std::fs::read_to_string(&sidecar) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", sidecar.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", sidecar.display())),
    };
    let name = path.file_stem().map_or_else(|| "request".into(), |s| s.to_string_lossy().into_owned());
    Ok(Case { name, file: Some(path.to_path_buf()), settings, ..request })
}

/// A request made of flags (`--body`, `--header`), with no file.
pub fn from_flags(headers: &[String], body: Vec<u8>) -> Result<Case, String> {
    let mut map = HeaderMap::new();
    for h in headers {
        let (name, value) = h.split_once(':').ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))?;
        append(&mut map, name, value).map_err(|e| format!("--header {h:?}: {e}"))?;
    }
    Ok(Case {
        name: "request".into(),
        file: None,
        tenant: None,
        source: None,
        headers: map,
        body,
        dropped_query: None,
        settings: Settings::default(),
    })
}

/// `--body TEXT`, `--body @FILE` (byte for byte) or `--body @-` (stdin).
pub fn body_arg(arg: &str) -> Result<Vec<u8>, String> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| format!("--body @-: cannot read stdin: {e}"))?;
            Ok(buf)
        }
        Some(file) => std::fs::read(file).map_err(|e| format!("--body @{file}: {e}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// Adds a header (`Name: value` parts) as a sender would send it.
pub fn append(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| format!("the value of {name} is not a valid header value"))?;
    map.append(name, value);
    Ok(())
}

/// A raw HTTP/1.1 request (LF or CRLF line ends): request line, headers,
/// an empty line, the body.
pub fn parse_request(bytes: &[u8]) -> Result<Case, String> {
    let (head, body) = split_head(bytes)
        .ok_or("no empty line after the headers (a request file is the request line, headers, an empty line, then the body)")?;
    let head = std::str::from_utf8(head).map_err(|_| "the request line and headers are not UTF-8")?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method != "POST" {
        return Err(format!("the request line {request_line:?} is not a POST (ingest takes POST only)"));
    }
    // An absolute URL (http://host/path) names a path too.
    let path_and_query = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path_and_query, None),
    };
    let (tenant, source) = match path.strip_prefix("/ingest/").and_then(|r| r.split_once('/')) {
        Some((t, s)) if !t.is_empty() && !s.is_empty() && !s.contains('/') => (Some(t.to_string()), Some(s.to_string())),
        _ => (None, None),
    };
    let mut headers = HeaderMap::new();
    for (n, line) in lines.enumerate() {
        if line.starts_with([' ', '\t']) {
            return Err(format!("header line {}: folded header lines are not supported", n + 2));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| format!("header line {}: expected 'Name: value', got {line:?}", n + 2))?;
        append(&mut headers, name, value).map_err(|e| format!("header line {}: {e}", n + 2))?;
    }
    if headers.get("transfer-encoding").is_some() {
        return Err("Transfer-Encoding is not supported in a request file: give the body as it is".into());
    }
    let body = match headers.get("content-length") {
        Some(v) => {
            let len: usize = v.to_str().ok().and_then(|s| s.trim().parse().ok()).ok_or("Content-Length is not a number")?;
            if len > body.len() {
                return Err(format!("Content-Length says {len} bytes, the file has {} after the headers", body.len()));
            }
            &body[..len]
        }
        None => body,
    };
    Ok(Case {
        name: "request".into(),
        file: None,
        tenant,
        source,
        headers,
        body: body.to_vec(),
        dropped_query: query.filter(|q| !q.is_empty()),
        settings: Settings::default(),
    })
}

/// Head and body, split at the first empty line.
fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let (end, start) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 < b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&bytes[..end], &bytes[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_file_names_tenant_source_headers_and_body() {
        let file = b"POST /ingest/acme/github?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nX-Many: 1\r\nx-many: 2\r\n\r\n{\"a\":1}\n";
        let c = parse_request(file).expect("parses");
        assert_eq!((c.tenant.as_deref(), c.source.as_deref()), (Some("acme"), Some("github")));
        assert_eq!(c.dropped_query.as_deref(), Some("x=1"));
        assert_eq!(c.headers.get_all("x-many").iter().count(), 2);
        assert_eq!(c.body, b"{\"a\":1}\n", "the body is the rest of the file, byte for byte");
    }

    #[test]
    fn content_length_cuts_the_body_and_lf_files_work() {
        let c = parse_request(b"POST http://gw.example/ingest/t/s\nContent-Length: 2\n\nhello\n").expect("parses");
        assert_eq!(c.body, b"he");
        assert_eq!(c.source.as_deref(), Some("s"));
        let c = parse_request(b"POST /\n\n").expect("no headers, no body");
        assert!(c.body.is_empty() && c.tenant.is_none());
    }

    #[test]
    fn bad_request_files_say_what_is_wrong() {
        for (file, says) in [
            (&b"GET /ingest/a/b HTTP/1.1\n\n"[..], "not a POST"),
            (b"POST /\nX-A 1\n\n", "expected 'Name: value'"),
            (b"POST /\nX-A: 1\n", "no empty line"),
            (b"POST /\nContent-Length: 9\n\nabc", "Content-Length says 9"),
            (b"POST /\nTransfer-Encoding: chunked\n\n", "Transfer-Encoding"),
            (b"POST /\nX-A: 1\n folded\n\n", "folded"),
        ] {
            let err = parse_request(file).expect_err("refused");
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn settings_files_are_strict() {
        let s: Settings =
            toml::from_str("phase = \"replay\"\n[config]\nk = \"v\"\n[expect]\nverdict = \"reject\"\nstatus = 401\n").expect("ok");
        assert_eq!(s.phase, Some(Phase::Replay));
        assert_eq!(s.expect.expect("expect").status, Some(401));
        assert!(toml::from_str::<Settings>("[expect]\nverdict = \"accept\"\nstatuss = 1\n").is_err());
    }
}
