//! Who is asking: the operator token sees every tenant; a tenant's own token
//! sees only that tenant. Tokens are compared in constant time, never logged.

use http::{HeaderValue, StatusCode, header};

use crate::config::Config;
use crate::http::{self as h, Resp};

/// What a request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Operator,
    Tenant(String),
}

impl Scope {
    /// True when this scope may see `tenant`'s data.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
        }
    }

    /// For the audit log.
    pub fn actor(&self) -> String {
        match self {
            Scope::Operator => "operator".into(),
            Scope::Tenant(t) => format!("tenant:{t}"),
        }
    }

    /// The only tenant this scope may see, if it is limited to one.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::Operator => None,
            Scope::Tenant(t) => Some(t),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tenants[{index}] ({tenant}): cannot read token_file {path}: {reason}")]
    TokenFile { index: usize, tenant: String, path: String, reason: String },
    #[error("tenants[{index}] ({tenant}): token_env {var} is not set; export it or use token / token_file")]
    TokenEnv { index: usize, tenant: String, var: String },
    #[error("tenants[{index}] ({tenant}): its token is empty")]
    Empty { index: usize, tenant: String },
}

pub struct Auth {
    operator: Option<String>,
    /// May scrape `/metrics` and nothing else.
    metrics: Option<String>,
    tenants: Vec<(String, String)>,
}

impl Auth {
    /// Resolves every token (inline, file or environment) once, at startup.
    pub fn from_config(config: &Config) -> Result<Auth, AuthError> {
        let mut tenants = Vec::new();
        for (index, t) in config.tenants.iter().enumerate() {
            let tenant = t.id.clone();
            let token = if let Some(tok) = &t.token {
                Some(tok.clone())
            } else if let Some(path) = &t.token_file {
                let text = std::fs::read_to_string(path).map_err(|e| AuthError::TokenFile {
                    index,
                    tenant: tenant.clone(),
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Some(text.trim().to_string())
            } else if let Some(var) = &t.token_env {
                Some(std::env::var(var).map_err(|_| AuthError::TokenEnv { index, tenant: tenant.clone(), var: var.clone() })?)
            } else {
                None
            };
            if let Some(token) = token {
                if token.trim().is_empty() {
                    return Err(AuthError::Empty { index, tenant });
                }
                tenants.push((tenant, token.trim().to_string()));
            }
        }
        Ok(Auth { operator: config.admin.token.clone(), metrics: config.admin.metrics_token.clone(), tenants })
    }

    /// The scope of a request, or the 401 to answer.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<Scope, Resp> {
        if self.operator.is_none() && self.tenants.is_empty() {
            return Err(h::error(
                StatusCode::UNAUTHORIZED,
                "no_admin_token_configured",
                "this gateway has no admin token; set [admin] token in the config or WEIR_ADMIN_TOKEN, then restart",
            ));
        }
        let Some(given) = bearer(authorization) else {
            return Err(unauthorized("send `Authorization: Bearer <token>` with the operator token or your tenant token"));
        };
        // Compare against every token, without stopping early.
        let mut found = None;
        if let Some(op) = &self.operator
            && constant_time_eq(given.as_bytes(), op.as_bytes())
        {
            found = Some(Scope::Operator);
        }
        for (tenant, token) in &self.tenants {
            if constant_time_eq(given.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(Scope::Tenant(tenant.clone()));
            }
        }
        found.ok_or_else(|| unauthorized("the bearer token is not valid for this gateway"))
    }

    /// Whether a request may scrape `/metrics`: the operator token or the
    /// metrics token. Metrics name every tenant, so a tenant token gets 403
    /// and no token 401 (docs/observability.md).
    pub fn check_metrics(&self, authorization: Option<&HeaderValue>) -> Result<(), Resp> {
        if let Some(metrics) = &self.metrics
            && bearer(authorization).is_some_and(|given| constant_time_eq(given.as_bytes(), metrics.as_bytes()))
        {
            return Ok(());
        }
        match self.check(authorization)? {
            Scope::Operator => Ok(()),
            Scope::Tenant(_) => Err(h::error(
                StatusCode::FORBIDDEN,
                "operator_only",
                "/metrics needs the operator token or admin.metrics_token, not a tenant token",
            )),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(authorization: Option<&HeaderValue>) -> Option<&str> {
    authorization.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)
}

fn unauthorized(message: &str) -> Resp {
    let mut resp = h::error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Compares without an early exit, so timing does not reveal a matching prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
        assert!(constant_time_eq(b"", b""));
    }
}
