//! The admin route table: every endpoint, its method and who may call it.
//! The router dispatches from this table, and the authorisation-matrix test
//! iterates it, so an endpoint cannot exist without its row.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the operator token (data of every tenant, or of none).
    Operator,
    /// The operator, or a tenant token for that tenant's own data.
    Tenant,
    /// No token: the console's page and assets (they hold no data; the API calls they make need a token).
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Status,
    ListTriggers,
    GetTrigger,
    DeleteTrigger,
    Purge,
    Replay,
    ReplayJob,
    Audit,
    Backup,
    UploadPlugin,
    ListPlugins,
    RollbackPlugin,
    ActivatePlugin,
    Pause,
    Resume,
    FleetPlugins,
    FleetPops,
    UploadFleetPlugin,
    RollbackFleetPlugin,
    WhoAmI,
    History,
    Console,
    ConsoleAsset,
}

#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    /// Segments; `{x}` matches any one segment.
    pub pattern: &'static str,
    pub access: Access,
    pub name: Name,
}

pub const ROUTES: &[Route] = &[
    Route { method: "GET", pattern: "/v1/status", access: Access::Operator, name: Name::Status },
    Route { method: "GET", pattern: "/v1/triggers", access: Access::Tenant, name: Name::ListTriggers },
    Route { method: "GET", pattern: "/v1/triggers/{id}", access: Access::Tenant, name: Name::GetTrigger },
    Route { method: "DELETE", pattern: "/v1/triggers/{id}", access: Access::Tenant, name: Name::DeleteTrigger },
    Route { method: "POST", pattern: "/v1/purge", access: Access::Tenant, name: Name::Purge },
    Route { method: "POST", pattern: "/v1/replay", access: Access::Tenant, name: Name::Replay },
    Route { method: "GET", pattern: "/v1/replays/{job}", access: Access::Tenant, name: Name::ReplayJob },
    Route { method: "GET", pattern: "/v1/audit", access: Access::Tenant, name: Name::Audit },
    Route { method: "GET", pattern: "/v1/backup", access: Access::Operator, name: Name::Backup },
    Route { method: "PUT", pattern: "/v1/tenants/{tenant}/plugin", access: Access::Tenant, name: Name::UploadPlugin },
    Route { method: "GET", pattern: "/v1/tenants/{tenant}/plugin", access: Access::Tenant, name: Name::ListPlugins },
    Route { method: "POST", pattern: "/v1/tenants/{tenant}/plugin/rollback", access: Access::Tenant, name: Name::RollbackPlugin },
    Route { method: "POST", pattern: "/v1/tenants/{tenant}/plugin/activate", access: Access::Tenant, name: Name::ActivatePlugin },
    Route { method: "POST", pattern: "/v1/tenants/{tenant}/pause", access: Access::Tenant, name: Name::Pause },
    Route { method: "POST", pattern: "/v1/tenants/{tenant}/resume", access: Access::Tenant, name: Name::Resume },
    // The last hour of totals, like /v1/status: every tenant's counts.
    Route { method: "GET", pattern: "/v1/history", access: Access::Operator, name: Name::History },
    // Fleet plugins reach every PoP: the operator's alone.
    // Every PoP's heartbeat (backlog, upstreams, plugins): the operator's alone.
    Route { method: "GET", pattern: "/v1/fleet/pops", access: Access::Operator, name: Name::FleetPops },
    Route { method: "GET", pattern: "/v1/fleet/plugins", access: Access::Operator, name: Name::FleetPlugins },
    Route { method: "PUT", pattern: "/v1/fleet/plugins/{tenant}", access: Access::Operator, name: Name::UploadFleetPlugin },
    Route { method: "POST", pattern: "/v1/fleet/plugins/{tenant}/rollback", access: Access::Operator, name: Name::RollbackFleetPlugin },
    // Who the token is: the console asks once at login (a tenant token learns only its own tenant).
    Route { method: "GET", pattern: "/v1/whoami", access: Access::Tenant, name: Name::WhoAmI },
    Route { method: "GET", pattern: "/ui", access: Access::Public, name: Name::Console },
    Route { method: "GET", pattern: "/ui/{asset}", access: Access::Public, name: Name::ConsoleAsset },
];

pub enum Miss {
    NotFound,
    /// The path exists with other methods.
    Method(String),
}

/// The route for `method path` and its `{}` parameters.
pub fn find<'a>(method: &str, path: &'a str) -> Result<(&'static Route, Vec<&'a str>), Miss> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut allowed = Vec::new();
    for route in ROUTES {
        let pattern: Vec<&str> = route.pattern.split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let matches = pattern.iter().zip(&segments).all(|(p, s)| {
            if p.starts_with('{') {
                params.push(*s);
                !s.is_empty()
            } else {
                p == s
            }
        });
        if !matches {
            continue;
        }
        if route.method == method {
            return Ok((route, params));
        }
        allowed.push(route.method);
    }
    if allowed.is_empty() { Err(Miss::NotFound) } else { Err(Miss::Method(allowed.join(", "))) }
}
