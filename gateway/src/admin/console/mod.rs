//! The operator console (docs/console.md): plain ES modules and CSS compiled
//! into the binary, served on the admin listener under `/ui` with strict headers.
//!
//! The page needs no token; it holds the one the operator types in memory
//! (or sessionStorage) and sends it as `Authorization: Bearer` to the `/v1/`
//! API, so no cookie carries authority and there is nothing to forge (no CSRF).
//! The Content-Security-Policy allows only these same-origin files: no inline
//! script, no eval, no other origin, no framing.

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::http::{self as h, Resp};

/// The policy every `/ui` response carries (the page renders strangers' payloads).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Name under `/ui/`, content type, bytes. `/ui` itself is `index.html`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("api.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_bytes!("dom.js")),
    ("views.js", "text/javascript; charset=utf-8", include_bytes!("views.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("style.css")),
];

/// The asset `name` (`""` for the page), with the console's headers; 404 for anything else.
pub fn serve(method: &Method, name: &str) -> Resp {
    let name = if name.is_empty() { "index.html" } else { name };
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return with_headers(h::not_found(&format!("no console asset {name:?}")));
    };
    let body = if method == Method::HEAD { h::full(&b""[..]) } else { h::full(*bytes) };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    with_headers(resp)
}

fn with_headers(mut resp: Resp) -> Resp {
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The assets change with the binary; a stale app.js against a new API is worse than a refetch.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_and_every_miss_carries_the_policy() {
        for name in ["", "app.js", "style.css", "nope.js", "../Cargo.toml"] {
            let resp = serve(&Method::GET, name);
            assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], CSP, "{name}");
            assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{name}");
            assert_eq!(resp.headers()[header::REFERRER_POLICY], "no-referrer", "{name}");
        }
        assert_eq!(serve(&Method::GET, "nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve(&Method::GET, "").headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }

    #[test]
    fn no_asset_holds_inline_script_or_eval() {
        let html = std::str::from_utf8(include_bytes!("index.html")).expect("utf8");
        assert!(!html.contains("<script>") && !html.contains("onclick") && !html.contains("style="), "inline code in index.html");
        for (name, _, bytes) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            let js = std::str::from_utf8(bytes).expect("utf8");
            for banned in ["innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "document.write"] {
                assert!(!js.contains(banned), "{name} uses {banned}");
            }
        }
    }
}
