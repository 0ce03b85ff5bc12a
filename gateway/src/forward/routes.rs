//! The routing table: every distinct upstream URL once (so an upstream named
//! by two routes has one breaker and one health), and each route's ordered
//! list of upstreams. Route 0 is the default, `forward.upstreams`.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::ForwardConfig;

/// Index of the default route (`forward.upstreams`).
pub const DEFAULT_ROUTE: usize = 0;

#[derive(Debug, Clone)]
pub struct Routes {
    /// Distinct upstream URLs: `forward.upstreams` first, then each route's
    /// new ones in file order. An attempt's `upstream` is an index here.
    pub urls: Vec<String>,
    /// Per route, indices into `urls` in failover order.
    pub members: Vec<Vec<usize>>,
    /// Per route, its name (`None` for the default).
    pub names: Vec<Option<String>>,
    by_name: HashMap<String, usize>,
}

/// A route as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    /// `null` for the default route (`forward.upstreams`).
    pub name: Option<String>,
    pub upstreams: Vec<String>,
}

impl Routes {
    pub fn new(f: &ForwardConfig) -> Routes {
        let mut urls: Vec<String> = Vec::new();
        let index = |url: &String, urls: &mut Vec<String>| match urls.iter().position(|u| u == url) {
            Some(i) => i,
            None => {
                urls.push(url.clone());
                urls.len() - 1
            }
        };
        let mut members = vec![f.upstreams.iter().map(|u| index(u, &mut urls)).collect::<Vec<_>>()];
        let mut names = vec![None];
        let mut by_name = HashMap::new();
        for r in &f.routes {
            by_name.insert(r.name.clone(), members.len());
            members.push(r.upstreams.iter().map(|u| index(u, &mut urls)).collect());
            names.push(Some(r.name.clone()));
        }
        Routes { urls, members, names, by_name }
    }

    /// The route a trigger takes: the one its `route` names, else the default
    /// (no route, or a name no `[[forward.routes]]` table has).
    pub fn resolve(&self, route: Option<&str>) -> usize {
        route.and_then(|r| self.by_name.get(r).copied()).unwrap_or(DEFAULT_ROUTE)
    }

    pub fn status(&self) -> Vec<RouteStatus> {
        self.members
            .iter()
            .zip(&self.names)
            .map(|(m, name)| RouteStatus { name: name.clone(), upstreams: m.iter().map(|&i| self.urls[i].clone()).collect() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    #[test]
    fn routes_share_upstreams_and_unknown_names_take_the_default() {
        let f = ForwardConfig {
            upstreams: vec!["http://a/".into(), "http://b/".into()],
            routes: vec![RouteConfig { name: "push".into(), upstreams: vec!["http://c/".into(), "http://a/".into()] }],
            ..ForwardConfig::default()
        };
        let r = Routes::new(&f);
        assert_eq!(r.urls, ["http://a/", "http://b/", "http://c/"]);
        assert_eq!(r.members, vec![vec![0, 1], vec![2, 0]]);
        assert_eq!(r.resolve(Some("push")), 1);
        assert_eq!(r.resolve(Some("nope")), DEFAULT_ROUTE);
        assert_eq!(r.resolve(None), DEFAULT_ROUTE);
    }
}
