//! The `http` trigger: API-gateway-style routes (`POST /orders/{id}`, `GET /files/{proxy+}`,
//! `ANY /health`) mapped to functions. This module holds the routes and their matching;
//! the listener that serves them is in `wisp-api`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_store::TriggerRow;

pub const KIND: &str = "http";

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Config {
    /// GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY.
    pub method: String,
    /// `/orders/{id}`; a last segment `{name+}` matches the rest of the path.
    pub path: String,
    /// CORS, in the shape of a function URL's `Cors` (AllowOrigins, AllowMethods, ...).
    #[serde(default)]
    pub cors: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    Greedy(String),
}

fn parse_path(path: &str) -> Result<Vec<Seg>> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "Invalid route path '{}': {why}",
            path.chars().take(200).collect::<String>()
        )))
    };
    if !path.starts_with('/') || path.len() > 1024 {
        return bad("a path starts with '/' and is at most 1024 characters");
    }
    let parts: Vec<&str> = path[1..].split('/').collect();
    let mut segs = Vec::new();
    let mut names = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            if parts.len() == 1 {
                break; // "/" itself
            }
            return bad("empty segment");
        }
        if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return bad("parameter names are letters, digits, '_' and '-'");
            }
            if names.contains(&name) {
                return bad("a parameter name appears twice");
            }
            names.push(name);
            if greedy {
                if i + 1 != parts.len() {
                    return bad("a greedy parameter {name+} must be the last segment");
                }
                segs.push(Seg::Greedy(name.to_string()));
            } else {
                segs.push(Seg::Param(name.to_string()));
            }
        } else if part.contains(['{', '}']) {
            return bad("braces only around a whole segment");
        } else {
            segs.push(Seg::Lit(part.to_string()));
        }
    }
    Ok(segs)
}

impl Config {
    pub fn from_value(v: &Value) -> Result<Config> {
        let mut cfg: Config = serde_json::from_value(v.clone())
            .map_err(|e| Error::invalid(format!("Invalid http trigger configuration: {e}")))?;
        cfg.method = cfg.method.to_ascii_uppercase();
        if !METHODS.contains(&cfg.method.as_str()) {
            return Err(Error::invalid(format!(
                "Method must be one of {}.",
                METHODS.join(", ")
            )));
        }
        parse_path(&cfg.path)?;
        if let Some(c) = &cfg.cors {
            if !c.is_object() {
                return Err(Error::invalid("Cors must be an object."));
            }
        }
        Ok(cfg)
    }
}

/// The `http` kind: nothing to run; the routes listener serves the route table that
/// `Triggers::reconcile` rebuilds.
pub struct Routes;

impl crate::Source for Routes {
    const KIND: &'static str = KIND;
    type Config = Config;

    fn config(value: &Value) -> Result<Config> {
        Config::from_value(value)
    }

    fn start(
        triggers: &std::sync::Arc<crate::Triggers>,
        row: &TriggerRow,
        _config: Config,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        triggers.set_status(&row.id, |s| s.state = "Serving".into());
        Ok(None)
    }
}

/// The same route twice (same method, same path shape) is a conflict.
pub fn check_conflicts<'a>(
    cfg: &Config,
    existing: impl Iterator<Item = &'a TriggerRow>,
) -> Result<()> {
    let shape = |segs: &[Seg]| -> Vec<String> {
        segs.iter()
            .map(|s| match s {
                Seg::Lit(l) => l.clone(),
                Seg::Param(_) => "{}".into(),
                Seg::Greedy(_) => "{+}".into(),
            })
            .collect()
    };
    let mine = shape(&parse_path(&cfg.path)?);
    for row in existing {
        let Ok(other) = Config::from_value(&row.config) else {
            continue;
        };
        let Ok(segs) = parse_path(&other.path) else {
            continue;
        };
        if other.method == cfg.method && shape(&segs) == mine {
            return Err(Error::conflict(format!(
                "Route {} {} already exists (trigger {}).",
                cfg.method, cfg.path, row.id
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Route {
    pub trigger_id: String,
    pub method: String,
    pub route_key: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub cors: Option<Value>,
    segs: Vec<Seg>,
}

/// The result of matching a request.
#[derive(Debug)]
pub enum Match<'a> {
    Found {
        route: &'a Route,
        params: BTreeMap<String, String>,
    },
    /// The path exists, but not for this method; the methods it has.
    MethodNotAllowed(Vec<String>, Option<&'a Route>),
    NotFound,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Most specific first: more literal segments, then more parameters, greedy last.
    routes: Vec<Route>,
}

fn matches(segs: &[Seg], path: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Greedy(name) => {
                if i >= path.len() {
                    return None;
                }
                params.insert(name.clone(), path[i..].join("/"));
                return Some(params);
            }
            Seg::Lit(l) => {
                if path.get(i) != Some(&l.as_str()) {
                    return None;
                }
            }
            Seg::Param(name) => {
                let v = path.get(i).filter(|v| !v.is_empty())?;
                params.insert(name.clone(), (*v).to_string());
            }
        }
    }
    (segs.len() == path.len()).then_some(params)
}

impl RouteTable {
    pub fn build<'a>(rows: impl Iterator<Item = &'a TriggerRow>) -> Self {
        let mut routes: Vec<Route> = rows
            .filter_map(|row| {
                let cfg = Config::from_value(&row.config).ok()?;
                let segs = parse_path(&cfg.path).ok()?;
                Some(Route {
                    trigger_id: row.id.clone(),
                    route_key: format!("{} {}", cfg.method, cfg.path),
                    method: cfg.method,
                    function: row.function.clone(),
                    qualifier: row.qualifier.clone(),
                    cors: cfg.cors,
                    segs,
                })
            })
            .collect();
        let rank = |r: &Route| {
            let lits = r.segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
            let greedy = r.segs.iter().any(|s| matches!(s, Seg::Greedy(_)));
            (
                greedy,
                std::cmp::Reverse(lits),
                std::cmp::Reverse(r.segs.len()),
                r.method == "ANY",
            )
        };
        routes.sort_by_key(rank);
        RouteTable { routes }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the most specific route for `method` and `path` (percent-decoded segments).
    pub fn find(&self, method: &str, path: &str) -> Match<'_> {
        let parts: Vec<&str> = if path == "/" {
            Vec::new()
        } else {
            path.trim_start_matches('/').split('/').collect()
        };
        let mut allowed = Vec::new();
        let mut first_on_path = None;
        for route in &self.routes {
            let Some(params) = matches(&route.segs, &parts) else {
                continue;
            };
            if route.method == method
                || route.method == "ANY"
                || (method == "HEAD" && route.method == "GET")
            {
                return Match::Found { route, params };
            }
            first_on_path.get_or_insert(route);
            allowed.push(route.method.clone());
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed, first_on_path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, method: &str, path: &str) -> TriggerRow {
        TriggerRow {
            id: id.into(),
            kind: KIND.into(),
            function: format!("fn-{id}"),
            qualifier: None,
            config: serde_json::json!({ "Method": method, "Path": path }),
            created_ms: 0,
        }
    }

    fn check(table: &RouteTable, method: &str, path: &str, expect: &str) {
        let got = match table.find(method, path) {
            Match::Found { route, params } => format!("{} {:?}", route.trigger_id, params),
            Match::MethodNotAllowed(m, _) => format!("405 {m:?}"),
            Match::NotFound => "404".into(),
        };
        assert_eq!(got, expect, "{method} {path}");
    }

    #[test]
    fn most_specific_route_wins() {
        let rows = [
            row("a", "POST", "/orders/{id}"),
            row("b", "GET", "/orders/latest"),
            row("c", "ANY", "/files/{proxy+}"),
            row("d", "GET", "/"),
            row("e", "GET", "/orders/{id}/items/{item}"),
        ];
        let t = RouteTable::build(rows.iter());
        check(&t, "POST", "/orders/7", r#"a {"id": "7"}"#);
        check(&t, "GET", "/orders/latest", "b {}");
        check(&t, "GET", "/orders/7", r#"405 ["POST"]"#);
        check(&t, "DELETE", "/files/a/b/c", r#"c {"proxy": "a/b/c"}"#);
        check(&t, "GET", "/files", "404");
        check(&t, "GET", "/", "d {}");
        check(
            &t,
            "GET",
            "/orders/1/items/2",
            r#"e {"id": "1", "item": "2"}"#,
        );
        check(&t, "GET", "/nope", "404");
    }

    #[test]
    fn refuses_bad_paths_and_duplicates() {
        for bad in [
            "orders", "/a//b", "/{a}/{a}", "/{p+}/x", "/a{b}", "/{}", "/{a b}",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
        let cfg = Config::from_value(&serde_json::json!({"Method": "post", "Path": "/orders/{x}"}))
            .unwrap();
        let existing = [row("a", "POST", "/orders/{id}")];
        assert!(check_conflicts(&cfg, existing.iter()).is_err());
        assert!(Config::from_value(&serde_json::json!({"Method": "FETCH", "Path": "/"})).is_err());
        assert!(
            Config::from_value(&serde_json::json!({"Method": "GET", "Path": "/", "Extra": 1}))
                .is_err()
        );
    }
}
