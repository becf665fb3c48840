//! The forward-auth route table: which (method, path template) of the
//! protected application is which (action, resource, context). Paths are
//! matched with `matchit` (`/documents/{docId}`); a route names the path
//! parameter that is the resource id, and where context values come from
//! (headers or query parameters, typed).

use std::collections::{BTreeMap, HashMap};

use hyper::{HeaderMap, Method};
use serde::Deserialize;

/// What happens to a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    #[default]
    Deny,
    /// Allowed for any verified caller (headers still set).
    Allow,
}

/// Which proxy asks, and so where the original method and URI are. Only
/// that proxy's way is read: the other proxies' headers are ignored, since
/// proxies that pass the client's headers on (Traefik, Caddy) would let a
/// client choose them. A method or URI that is missing is refused, never
/// defaulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyConvention {
    /// `X-Original-Method` and `X-Original-URI`, set by nginx
    /// (`auth_request` with `proxy_set_header`).
    Nginx,
    /// `X-Forwarded-Method` and `X-Forwarded-Uri`, set by Traefik
    /// ForwardAuth.
    Traefik,
    /// The same headers, set by Caddy's `forward_auth`.
    Caddy,
    /// This request's own method and its path after `/v1/forward-auth`
    /// (Envoy ext_authz HTTP service with `path_prefix`). The default: it
    /// reads no header at all, so nothing a client adds can change it, and
    /// a sidecar behind another proxy that was not told so denies
    /// everything rather than trusting headers.
    #[default]
    Envoy,
}

impl ProxyConvention {
    /// The (method, URI) headers this proxy sets; none for Envoy.
    pub fn headers(self) -> Option<(&'static str, &'static str)> {
        match self {
            ProxyConvention::Nginx => Some(("x-original-method", "x-original-uri")),
            ProxyConvention::Traefik | ProxyConvention::Caddy => {
                Some(("x-forwarded-method", "x-forwarded-uri"))
            }
            ProxyConvention::Envoy => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RouteResource {
    Document,
    Tenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    #[default]
    String,
    Long,
    Bool,
}

/// Where one context value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSource {
    pub header: Option<String>,
    pub query: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: ValueType,
    /// Used when the request has no such header or parameter.
    pub default: Option<String>,
}

/// One route of the protected application.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// An HTTP method, or `*` for any.
    pub method: String,
    /// A path template: `/documents/{docId}`.
    pub path: String,
    pub action: String,
    pub resource: RouteResource,
    /// The path parameter holding the resource id. Required for documents;
    /// for a tenant, absent means the caller's own tenant.
    pub resource_id: Option<String>,
    #[serde(default)]
    pub context: BTreeMap<String, ValueSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// The proxy in front: where the original request is read from.
    #[serde(default)]
    pub convention: ProxyConvention,
    #[serde(default)]
    pub unmapped: Unmapped,
    #[serde(default = "default_routes")]
    pub routes: Vec<RouteSpec>,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            convention: ProxyConvention::default(),
            unmapped: Unmapped::Deny,
            routes: default_routes(),
        }
    }
}

fn route(
    method: &str,
    path: &str,
    action: &str,
    resource: RouteResource,
    id: Option<&str>,
) -> RouteSpec {
    RouteSpec {
        method: method.into(),
        path: path.into(),
        action: action.into(),
        resource,
        resource_id: id.map(str::to_string),
        context: BTreeMap::new(),
    }
}

/// The routes of the reference document-search API.
pub fn default_routes() -> Vec<RouteSpec> {
    use RouteResource::{Document as D, Tenant as T};
    let mut create = route("POST", "/documents", "CreateDocument", T, None);
    create.context.insert(
        "fileType".into(),
        ValueSource {
            header: Some("x-file-type".into()),
            query: None,
            kind: ValueType::String,
            default: None,
        },
    );
    create.context.insert(
        "sizeBytes".into(),
        ValueSource {
            header: Some("x-original-content-length".into()),
            query: None,
            kind: ValueType::Long,
            default: Some("0".into()),
        },
    );
    vec![
        route("GET", "/documents/{docId}", "Read", D, Some("docId")),
        route("HEAD", "/documents/{docId}", "Read", D, Some("docId")),
        route("PUT", "/documents/{docId}", "Update", D, Some("docId")),
        route("PATCH", "/documents/{docId}", "Update", D, Some("docId")),
        route("DELETE", "/documents/{docId}", "Delete", D, Some("docId")),
        route(
            "POST",
            "/documents/{docId}/shares",
            "Share",
            D,
            Some("docId"),
        ),
        route(
            "POST",
            "/documents/{docId}/restore",
            "Restore",
            D,
            Some("docId"),
        ),
        create,
        route("GET", "/search", "Search", T, None),
        route("POST", "/search", "Search", T, None),
        route(
            "GET",
            "/tenants/{tenantId}/usage",
            "ViewUsage",
            T,
            Some("tenantId"),
        ),
        route(
            "GET",
            "/tenants/{tenantId}/audit-logs",
            "ViewAuditLogs",
            T,
            Some("tenantId"),
        ),
        route(
            "POST",
            "/tenants/{tenantId}/export",
            "Export",
            T,
            Some("tenantId"),
        ),
        route(
            "PUT",
            "/tenants/{tenantId}",
            "ManageTenant",
            T,
            Some("tenantId"),
        ),
    ]
}

/// A matched route with its decoded path parameters.
pub struct Matched<'a> {
    pub route: &'a RouteSpec,
    pub params: HashMap<String, String>,
}

/// Why a path cannot be matched safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path has a `.` or `..` segment, an encoded slash, or bad escapes")]
    Unsafe,
}

pub struct RouteTable {
    by_method: HashMap<Method, matchit::Router<usize>>,
    any: matchit::Router<usize>,
    routes: Vec<RouteSpec>,
    pub unmapped: Unmapped,
    pub convention: ProxyConvention,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes.len())
            .field("unmapped", &self.unmapped)
            .field("convention", &self.convention)
            .finish()
    }
}

fn path_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

impl RouteTable {
    pub fn new(config: &ForwardAuthConfig) -> Result<Self, String> {
        let mut by_method: HashMap<Method, matchit::Router<usize>> = HashMap::new();
        let mut any = matchit::Router::new();
        for (i, r) in config.routes.iter().enumerate() {
            let at = || format!("route {} {}", r.method, r.path);
            if !r.path.starts_with('/') {
                return Err(format!("{}: the path must start with /", at()));
            }
            let params = path_params(&r.path);
            match (&r.resource, &r.resource_id) {
                (RouteResource::Document, None) => {
                    return Err(format!("{}: a Document route needs resource_id", at()))
                }
                (_, Some(p)) if !params.contains(&p.as_str()) => {
                    return Err(format!(
                        "{}: resource_id {p:?} is not a path parameter",
                        at()
                    ))
                }
                _ => {}
            }
            for (name, src) in &r.context {
                if src.header.is_some() == src.query.is_some() {
                    return Err(format!(
                        "{}: context {name:?} needs exactly one of header or query",
                        at()
                    ));
                }
            }
            let router = if r.method == "*" {
                &mut any
            } else {
                let m = Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("{}: invalid method", at()))?;
                by_method.entry(m).or_default()
            };
            router
                .insert(r.path.clone(), i)
                .map_err(|e| format!("{}: {e}", at()))?;
        }
        Ok(RouteTable {
            by_method,
            any,
            routes: config.routes.clone(),
            unmapped: config.unmapped,
            convention: config.convention,
        })
    }

    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    /// The route for `method` and the raw (still percent-encoded) `path`.
    pub fn resolve(&self, method: &Method, path: &str) -> Result<Option<Matched<'_>>, PathError> {
        for segment in path.split('/') {
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| PathError::Unsafe)?;
            if decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\\')
            {
                return Err(PathError::Unsafe);
            }
        }
        let found = self
            .by_method
            .get(method)
            .and_then(|r| r.at(path).ok())
            .or_else(|| self.any.at(path).ok());
        let Some(m) = found else {
            return Ok(None);
        };
        let mut params = HashMap::new();
        for (k, v) in m.params.iter() {
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| PathError::Unsafe)?;
            params.insert(k.to_string(), v.into_owned());
        }
        Ok(Some(Matched {
            route: &self.routes[*m.value],
            params,
        }))
    }
}

/// Builds the context object of a matched route from the request's headers
/// and query string. Errors name the missing or mistyped value.
pub fn context(
    route: &RouteSpec,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<serde_json::Value, String> {
    let query: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    for (name, src) in &route.context {
        let raw = if let Some(h) = &src.header {
            headers
                .get(h.as_str())
                .map(|v| {
                    v.to_str()
                        .map(str::to_string)
                        .map_err(|_| format!("header {h} is not text"))
                })
                .transpose()?
        } else if let Some(q) = &src.query {
            query.iter().find(|(k, _)| k == q).map(|(_, v)| v.clone())
        } else {
            None
        };
        let Some(raw) = raw.or_else(|| src.default.clone()) else {
            return Err(format!("context value {name} is missing"));
        };
        let value = match src.kind {
            ValueType::String => serde_json::Value::String(raw),
            ValueType::Long => raw
                .trim()
                .parse::<i64>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("context value {name} is not an integer"))?,
            ValueType::Bool => match raw.trim() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => return Err(format!("context value {name} is not true or false")),
            },
        };
        out.insert(name.clone(), value);
    }
    Ok(serde_json::Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(&ForwardAuthConfig::default()).unwrap()
    }

    #[test]
    fn matches_default_routes() {
        let t = table();
        let m = t
            .resolve(&Method::GET, "/documents/q3%2Dreport")
            .unwrap()
            .unwrap();
        assert_eq!(m.route.action, "Read");
        assert_eq!(m.params["docId"], "q3-report");
        let m = t.resolve(&Method::POST, "/documents").unwrap().unwrap();
        assert_eq!(m.route.action, "CreateDocument");
        assert!(t.resolve(&Method::POST, "/admin").unwrap().is_none());
        assert!(t.resolve(&Method::PATCH, "/search").unwrap().is_none());
    }

    #[test]
    fn refuses_dot_segments_and_encoded_slashes() {
        let t = table();
        for p in [
            "/documents/..",
            "/search/../documents/x",
            "/documents/a%2Fb",
            "/documents/%2e%2e",
            "/documents/%ff",
        ] {
            assert_eq!(
                t.resolve(&Method::GET, p).err(),
                Some(PathError::Unsafe),
                "{p}"
            );
        }
    }

    #[test]
    fn context_from_headers_and_query() {
        let t = table();
        let m = t.resolve(&Method::POST, "/documents").unwrap().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-file-type", "pdf".parse().unwrap());
        h.insert("x-original-content-length", "2048".parse().unwrap());
        let c = context(m.route, &h, None).unwrap();
        assert_eq!(c, serde_json::json!({"fileType": "pdf", "sizeBytes": 2048}));
        h.insert("x-original-content-length", "lots".parse().unwrap());
        assert!(context(m.route, &h, None)
            .unwrap_err()
            .contains("sizeBytes"));
        h.remove("x-file-type");
        assert!(context(m.route, &h, None).unwrap_err().contains("fileType"));

        let mut r = route("GET", "/x", "Search", RouteResource::Tenant, None);
        r.context.insert(
            "q".into(),
            ValueSource {
                header: None,
                query: Some("q".into()),
                kind: ValueType::String,
                default: None,
            },
        );
        let c = context(&r, &HeaderMap::new(), Some("a=1&q=hello%20world")).unwrap();
        assert_eq!(c["q"], "hello world");
    }

    #[test]
    fn rejects_bad_tables() {
        let bad = |r: RouteSpec| {
            RouteTable::new(&ForwardAuthConfig {
                convention: ProxyConvention::Envoy,
                unmapped: Unmapped::Deny,
                routes: vec![r],
            })
            .unwrap_err()
        };
        assert!(bad(route(
            "GET",
            "/d/{id}",
            "Read",
            RouteResource::Document,
            None
        ))
        .contains("resource_id"));
        assert!(bad(route(
            "GET",
            "/d/{id}",
            "Read",
            RouteResource::Document,
            Some("x")
        ))
        .contains("not a path parameter"));
        assert!(
            bad(route("G T", "/d", "Search", RouteResource::Tenant, None))
                .contains("invalid method")
        );
        assert!(
            bad(route("GET", "d", "Search", RouteResource::Tenant, None)).contains("must start")
        );
    }
}
