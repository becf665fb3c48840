//! The attempts, generated from a seeded generator: every surface, every
//! action, tokens of every attacker against every other tenant, and for
//! each attempt about another tenant its twin about a tenant that does not
//! exist (the two answers must read the same).

use serde_json::{json, Value};

use super::world::*;
use super::{Attempt, Rule, Sent, Server, Surface};
pub use crate::helpers::Rng;

pub const DOC_ACTIONS: [&str; 5] = ["Read", "Update", "Delete", "Share", "Restore"];
pub const TENANT_ACTIONS: [&str; 14] = [
    "CreateDocument",
    "Search",
    "ViewUsage",
    "ListDocuments",
    "ViewAuditLogs",
    "Export",
    "ManageTenant",
    "ListTenants",
    "UpdateTenantName",
    "UpdateTenantSettings",
    "UpdateTenantSubscription",
    "UpdateTenantLimits",
    "UpdateTenantStatus",
    "UpdateTenantBilling",
];
const FILE_TYPES: [&str; 7] = ["pdf", "docx", "txt", "md", "csv", "exe", "PDF"];
/// Sizes around every tenant's remaining storage, and the extremes.
const SIZES: [i64; 9] = [
    0,
    1,
    1 << 30,
    (1 << 30) + 1,
    2_003_179 << 30,
    1 << 50,
    i64::MAX,
    -1,
    i64::MIN,
];

/// A tenant of the world other than `own` (the platform's included).
fn victim(rng: &mut Rng, own: &str) -> &'static str {
    loop {
        let t = *rng.pick(&[
            TENANTS[0], TENANTS[1], TENANTS[2], TENANTS[3], TENANTS[4], TENANTS[5], PLATFORM,
        ]);
        if t != own {
            return t;
        }
    }
}

fn missing(rng: &mut Rng) -> &'static str {
    MISSING[rng.below(MISSING.len())]
}

fn kind(rng: &mut Rng) -> &'static str {
    DOC_KINDS[rng.below(DOC_KINDS.len())]
}

/// What turns an attempt about `victim` into the same attempt about a
/// tenant that does not exist: its id, and its documents' ids.
fn swaps(victim: &str, missing: &str) -> Vec<(String, String)> {
    let mut out = vec![(victim.to_string(), missing.to_string())];
    for kind in DOC_KINDS {
        out.push((doc(victim, kind), format!("{MISSING_DOC_LETTER}-{kind}")));
    }
    out
}

fn context_for(rng: &mut Rng, action: &str) -> Value {
    if action == "CreateDocument" {
        json!({"fileType": rng.pick(&FILE_TYPES), "sizeBytes": rng.pick(&SIZES)})
    } else if action == "UpdateTenantSettings" {
        json!({"dataRetentionDays": 3650, "allowedFileTypes": ["pdf"]})
    } else {
        json!({})
    }
}

fn bearer(a: &Attacker) -> (String, String) {
    ("authorization".into(), format!("Bearer {}", a.token))
}

/// Headers an attacker controls on every request: its canary everywhere.
fn canary_headers(a: &Attacker) -> Vec<(String, String)> {
    vec![
        ("user-agent".into(), format!("attack/{}", a.canary)),
        ("x-request-id".into(), a.canary.clone()),
    ]
}

/// A native decision request about one resource of `victim`.
fn native_item(rng: &mut Rng, victim: &str) -> Value {
    if rng.chance(50) {
        let kind = *rng.pick(&DOC_KINDS);
        let ty = if rng.chance(20) {
            "CedarGate::Document"
        } else {
            "Document"
        };
        json!({"action": rng.pick(&DOC_ACTIONS), "resource": {"type": ty, "id": doc(victim, kind)}, "context": {}})
    } else {
        let action = *rng.pick(&TENANT_ACTIONS);
        json!({"action": action, "resource": {"type": "Tenant", "id": victim}, "context": context_for(rng, action)})
    }
}

pub fn native(rng: &mut Rng, attackers: &[Attacker], n: usize, out: &mut Vec<Attempt>) {
    for i in 0..n {
        let a = rng.pick(attackers);
        let v = victim(rng, a.tenant);
        let body = native_item(rng, v);
        let mut headers = vec![bearer(a)];
        headers.extend(canary_headers(a));
        out.push(Attempt::new(
            Surface::Native,
            Server::Sidecar,
            a,
            format!("native #{i} {} as {}", body, a.user),
            Sent::new("POST", "/v1/authorize", headers, body.to_string()),
            Rule::NoAllow,
            Some(swaps(v, missing(rng))),
        ));
    }
}

pub fn batch(rng: &mut Rng, attackers: &[Attacker], n: usize, out: &mut Vec<Attempt>) {
    for i in 0..n {
        let a = rng.pick(attackers);
        let v = victim(rng, a.tenant);
        let items: Vec<Value> = (0..2 + rng.below(10))
            .map(|_| native_item(rng, v))
            .collect();
        let body = json!({"requests": items});
        let mut headers = vec![bearer(a)];
        headers.extend(canary_headers(a));
        out.push(Attempt::new(
            Surface::Batch,
            Server::Sidecar,
            a,
            format!("batch #{i} about {v} as {}", a.user),
            Sent::new("POST", "/v1/authorize/batch", headers, body.to_string()),
            Rule::NoAllow,
            Some(swaps(v, missing(rng))),
        ));
    }
}

/// The proxy conventions of forward-auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Convention {
    Nginx,
    Traefik,
    Caddy,
    Envoy,
}

pub const CONVENTIONS: [Convention; 4] = [
    Convention::Nginx,
    Convention::Traefik,
    Convention::Caddy,
    Convention::Envoy,
];

impl Convention {
    pub fn name(self) -> &'static str {
        match self {
            Convention::Nginx => "nginx",
            Convention::Traefik => "traefik",
            Convention::Caddy => "caddy",
            Convention::Envoy => "envoy",
        }
    }

    /// How this proxy asks about `method uri`: (method, path, headers).
    fn ask(self, method: &str, uri: &str) -> (String, String, Vec<(String, String)>) {
        let h = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        match self {
            Convention::Nginx => (
                "GET".into(),
                "/v1/forward-auth".into(),
                h(&[("x-original-uri", uri), ("x-original-method", method)]),
            ),
            Convention::Traefik | Convention::Caddy => (
                "GET".into(),
                "/v1/forward-auth".into(),
                h(&[
                    ("x-forwarded-uri", uri),
                    ("x-forwarded-method", method),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "app.test"),
                ]),
            ),
            Convention::Envoy => (method.into(), format!("/v1/forward-auth{uri}"), vec![]),
        }
    }

    /// Headers and path of the other conventions, all pointing at a route
    /// any verified caller may use.
    fn noise(self) -> (Option<String>, Vec<(String, String)>) {
        let mut headers = Vec::new();
        let mut path = None;
        for other in CONVENTIONS {
            if other == self {
                continue;
            }
            match other {
                Convention::Nginx => headers.extend([
                    ("x-original-uri".to_string(), "/search".to_string()),
                    ("x-original-method".to_string(), "GET".to_string()),
                ]),
                Convention::Traefik | Convention::Caddy => {
                    if self != Convention::Traefik && self != Convention::Caddy {
                        headers.extend([
                            ("x-forwarded-uri".to_string(), "/search".to_string()),
                            ("x-forwarded-method".to_string(), "GET".to_string()),
                        ])
                    }
                }
                Convention::Envoy => path = Some("/v1/forward-auth/search".to_string()),
            }
        }
        headers.dedup();
        (path, headers)
    }
}

/// (method, path template) of routes about another tenant's data.
const FOREIGN_ROUTES: [(&str, &str); 11] = [
    ("GET", "/documents/{d}"),
    ("HEAD", "/documents/{d}"),
    ("PUT", "/documents/{d}"),
    ("PATCH", "/documents/{d}"),
    ("DELETE", "/documents/{d}"),
    ("POST", "/documents/{d}/shares"),
    ("POST", "/documents/{d}/restore"),
    ("GET", "/tenants/{t}/usage"),
    ("GET", "/tenants/{t}/audit-logs"),
    ("POST", "/tenants/{t}/export"),
    ("PUT", "/tenants/{t}"),
];

/// Ways to spell a document path that a naive matcher may not see through.
fn path_trick(rng: &mut Rng, d: &str) -> String {
    let first = d.as_bytes()[0];
    match rng.below(10) {
        0 => format!("/documents/{d}/"),
        1 => format!("//documents/{d}"),
        2 => format!("/documents/./{d}"),
        3 => format!("/documents/%{first:02x}{}", &d[1..]),
        4 => format!("/DOCUMENTS/{d}"),
        5 => format!("/documents/{d}?tenant=ten-a&id=common"),
        6 => format!("/documents/{d};id=common"),
        7 => format!("/documents/..%2f{d}"),
        8 => format!("/search/../documents/{d}"),
        _ => format!("/documents/{d}%00"),
    }
}

pub fn forward(rng: &mut Rng, attackers: &[Attacker], n: usize, out: &mut Vec<Attempt>) {
    for i in 0..n {
        let a = rng.pick(attackers);
        let conv = *rng.pick(&CONVENTIONS);
        let server = Server::Forward(conv);
        let v = victim(rng, a.tenant);
        let d = doc(v, kind(rng));
        let (method, template) = *rng.pick(&FOREIGN_ROUTES);
        let clean_uri = template.replace("{d}", &d).replace("{t}", v);
        let mut base = vec![bearer(a)];
        base.extend(canary_headers(a));
        let sent = |method: &str, uri: &str, extra: Vec<(String, String)>| {
            let (m, path, mut headers) = conv.ask(method, uri);
            headers.extend(base.clone());
            headers.extend(extra);
            Sent::new(&m, &path, headers, String::new())
        };
        let swap = Some(swaps(v, missing(rng)));
        let label = |kind: &str, uri: &str| {
            format!(
                "forward-auth/{} #{i} {kind} {method} {uri} as {}",
                conv.name(),
                a.user
            )
        };
        match rng.below(4) {
            // As the proxy sends it.
            0 => out.push(Attempt::new(
                Surface::Forward,
                server,
                a,
                label("clean", &clean_uri),
                sent(method, &clean_uri, vec![]),
                Rule::NoAllow,
                swap,
            )),
            // With the other proxies' headers added by the client: the
            // answer must be the clean request's.
            1 => {
                let (noise_path, noise) = conv.noise();
                let mut noisy = sent(method, &clean_uri, noise);
                if let Some(p) = noise_path {
                    noisy.path = p;
                }
                out.push(
                    Attempt::new(
                        Surface::Forward,
                        server,
                        a,
                        label("noise", &clean_uri),
                        noisy,
                        Rule::NoAllow,
                        None,
                    )
                    .same_as(sent(method, &clean_uri, vec![])),
                );
            }
            // A spelling of the path meant to slip past the route table.
            2 => {
                let uri = path_trick(rng, &d);
                out.push(Attempt::new(
                    Surface::Forward,
                    server,
                    a,
                    label("path-trick", &uri),
                    sent(method, &uri, vec![]),
                    Rule::NoAllow,
                    swap,
                ));
            }
            // The method or the URI left out: never approved as something
            // else. A viewer deleting a public document of its own tenant
            // would pass as a read if the method defaulted to GET.
            _ => {
                if conv == Convention::Envoy {
                    continue;
                }
                let own = doc(a.tenant, "pub");
                let uri = format!("/documents/{own}");
                let (m, path, headers) = conv.ask("DELETE", &uri);
                let drop_uri = rng.chance(50);
                let headers: Vec<(String, String)> = headers
                    .into_iter()
                    .filter(|(k, _)| {
                        if drop_uri {
                            !k.ends_with("-uri")
                        } else {
                            !k.ends_with("-method")
                        }
                    })
                    .chain(base.clone())
                    .collect();
                out.push(Attempt::new(
                    Surface::Forward,
                    server,
                    a,
                    format!(
                        "forward-auth/{} #{i} {} DELETE {uri} as {}",
                        conv.name(),
                        if drop_uri { "no-uri" } else { "no-method" },
                        a.user
                    ),
                    Sent::new(&m, &path, headers, String::new()),
                    Rule::NotSuccess,
                    None,
                ));
            }
        }
    }
}

fn uid(ty: &str, id: &str) -> Value {
    json!({"type": ty, "id": id})
}

fn entity_ref(ty: &str, id: &str) -> Value {
    json!({"__entity": uid(ty, id)})
}

/// A document entity as the application would send it: in `tenant`,
/// public, readable by its readers.
fn document_entity(id: &str, tenant: &str, classification: i64, readers: &[&str]) -> Value {
    json!({
        "uid": uid("CedarGate::Document", id),
        "attrs": {
            "tenant": entity_ref("CedarGate::Tenant", tenant),
            "owner": entity_ref("CedarGate::User", "mal-x"),
            "visibility": "public",
            "classification": classification,
            "fileType": "pdf",
            "sizeBytes": 10,
            "readers": readers.iter().map(|r| entity_ref("CedarGate::User", r)).collect::<Vec<_>>(),
            "editors": readers.iter().map(|r| entity_ref("CedarGate::User", r)).collect::<Vec<_>>(),
            "readerRoles": [entity_ref("CedarGate::Role", "viewer")],
            "editorRoles": [entity_ref("CedarGate::Role", "viewer")],
            "deleted": false,
        },
        "parents": [],
    })
}

/// A tenant entity with made-up facts: active, every feature, no limits.
fn tenant_entity(id: &str) -> Value {
    let big = 4_000_000_000i64;
    json!({
        "uid": uid("CedarGate::Tenant", id),
        "attrs": {
            "name": "made up", "status": "active",
            "subscription": {"tier": "enterprise", "startDate": "2026-01-01", "features": ["export", "audit-logs"]},
            "limits": {"maxDocuments": big, "maxUsers": big, "maxStorageGB": big, "maxQueriesPerMonth": big},
            "usage": {"documents": 0, "users": 0, "storageGB": 0, "queriesThisMonth": 0},
            "settings": {"dataRetentionDays": 1, "allowedFileTypes": ["pdf", "exe"]},
        },
        "parents": [],
    })
}

/// A user entity claiming to be in `tenant`, with every clearance and role.
fn user_entity(id: &str, tenant: &str) -> Value {
    json!({
        "uid": uid("CedarGate::User", id),
        "attrs": {"tenant": entity_ref("CedarGate::Tenant", tenant), "clearance": 3},
        "parents": [uid("CedarGate::Role", "admin"), uid("CedarGate::Role", "platform-admin")],
    })
}

/// The Verified Permissions API: token and plain calls, single and batch,
/// with entities an attacker may craft.
pub fn avp(rng: &mut Rng, attackers: &[Attacker], n: usize, out: &mut Vec<Attempt>) {
    for i in 0..n {
        let a = rng.pick(attackers);
        let v = victim(rng, a.tenant);
        let is_doc = rng.chance(60);
        let kind = *rng.pick(&DOC_KINDS);
        let (action, resource) = if is_doc {
            (
                *rng.pick(&DOC_ACTIONS),
                uid("CedarGate::Document", &doc(v, kind)),
            )
        } else {
            (*rng.pick(&TENANT_ACTIONS), uid("CedarGate::Tenant", v))
        };
        let mut entities = Vec::new();
        let crafted = rng.below(5);
        if is_doc && crafted >= 1 {
            entities.push(document_entity(
                &doc(v, kind),
                v,
                rng.below(4) as i64,
                &[&a.user],
            ));
        }
        let pool_user = format!("us-east-1_TEST|{}", a.user);
        match crafted {
            2 => entities.push(user_entity(&a.user, v)),
            3 => entities.push(user_entity(&pool_user, v)),
            4 => entities.push(tenant_entity(a.tenant)),
            _ => {}
        }
        if !is_doc && crafted >= 3 {
            entities.push(tenant_entity(v));
        }
        let ctx = context_for(rng, action);
        let to_ids = |r: &Value| json!({"entityType": r["type"], "entityId": r["id"]});
        let act = json!({"actionType": "CedarGate::Action", "actionId": action});
        let ents = json!({"cedarJson": Value::Array(entities).to_string()});
        let context = json!({"cedarJson": ctx.to_string()});
        let plain = rng.chance(35);
        let batch = rng.chance(30);
        let (target, body) = match (plain, batch) {
            (false, false) => (
                "IsAuthorizedWithToken",
                json!({"policyStoreId": "cedargate", "identityToken": a.token, "action": act,
                       "resource": to_ids(&resource), "context": context, "entities": ents}),
            ),
            (false, true) => (
                "BatchIsAuthorizedWithToken",
                json!({"policyStoreId": "cedargate", "identityToken": a.token, "entities": ents,
                       "requests": [{"action": act, "resource": to_ids(&resource), "context": context},
                                    {"action": {"actionType": "CedarGate::Action", "actionId": "Read"}, "resource": to_ids(&resource)}]}),
            ),
            (true, _) => {
                // A plain call names its principal: the attacker itself.
                let principal = json!({"entityType": "CedarGate::User", "entityId": a.user});
                if batch {
                    (
                        "BatchIsAuthorized",
                        json!({"policyStoreId": "cedargate", "entities": ents,
                               "requests": [{"principal": principal, "action": act, "resource": to_ids(&resource), "context": context}]}),
                    )
                } else {
                    (
                        "IsAuthorized",
                        json!({"policyStoreId": "cedargate", "principal": principal, "action": act,
                               "resource": to_ids(&resource), "context": context, "entities": ents}),
                    )
                }
            }
        };
        let mut headers = vec![
            (
                "x-amz-target".to_string(),
                format!("VerifiedPermissions.{target}"),
            ),
            (
                "content-type".to_string(),
                "application/x-amz-json-1.0".to_string(),
            ),
        ];
        headers.extend(canary_headers(a));
        out.push(Attempt::new(
            Surface::Avp,
            Server::Sidecar,
            a,
            format!(
                "avp #{i} {target} {action} on {resource} crafted={crafted} as {}",
                a.user
            ),
            Sent::new("POST", "/", headers, body.to_string()),
            Rule::NoAllow,
            Some(swaps(v, missing(rng))),
        ));
    }
}

/// A whole tenant record, as a client would PUT or POST it.
pub fn tenant_body(id: &str, name: &str) -> Value {
    json!({
        "tenantId": id, "name": name, "status": "active",
        "subscription": {"tier": "enterprise", "startDate": "2026-01-01", "features": ["export", "audit-logs", "sso"]},
        "limits": {"maxDocuments": 4_000_000_000u32, "maxUsers": 4_000_000_000u32, "maxStorageGB": 4_000_000_000u32, "maxQueriesPerMonth": 4_000_000_000u32},
        "settings": {"dataRetentionDays": 3650, "allowedFileTypes": ["pdf", "txt"]},
    })
}

/// Every management endpoint, about another tenant.
pub fn admin(rng: &mut Rng, attackers: &[Attacker], n: usize, out: &mut Vec<Attempt>) {
    for i in 0..n {
        let a = rng.pick(attackers);
        let v = victim(rng, a.tenant);
        let d = doc(v, kind(rng));
        let name = format!("Renamed by {}", a.canary);
        let share = json!({"userId": a.user, "permission": "edit"}).to_string();
        let doc_body =
            json!({"visibility": "public", "fileType": "pdf", "sizeBytes": 1, "ownerId": a.user})
                .to_string();
        let policy = json!({"definition": {"static": {"statement": format!(
            "@message(\"{}\") permit (principal, action, resource);", a.canary
        )}}})
        .to_string();
        let check = json!({
            "principal": {"userId": a.user, "roles": ["admin"], "clearance": 3},
            "action": "Read",
            "documentId": d,
        })
        .to_string();
        let (method, path, body): (&str, String, String) = match rng.below(21) {
            0 => ("GET", format!("/v1/tenants/{v}"), String::new()),
            1 => (
                "PUT",
                format!("/v1/tenants/{v}"),
                tenant_body(v, &name).to_string(),
            ),
            2 => ("DELETE", format!("/v1/tenants/{v}"), String::new()),
            3 => ("GET", format!("/v1/tenants/{v}/usage"), String::new()),
            4 => (
                "GET",
                format!("/v1/tenants/{v}/audit-logs?limit=5"),
                String::new(),
            ),
            5 => ("POST", format!("/v1/tenants/{v}/export"), String::new()),
            6 => (
                "GET",
                format!("/v1/tenants/{v}/documents/{d}"),
                String::new(),
            ),
            7 => ("PUT", format!("/v1/tenants/{v}/documents/{d}"), doc_body),
            8 => (
                "DELETE",
                format!("/v1/tenants/{v}/documents/{d}"),
                String::new(),
            ),
            9 => (
                "POST",
                format!("/v1/tenants/{v}/documents/{d}/restore"),
                String::new(),
            ),
            10 => (
                "POST",
                format!("/v1/tenants/{v}/documents/{d}/shares"),
                share,
            ),
            11 => (
                "DELETE",
                format!("/v1/tenants/{v}/documents/{d}/shares/user:vie-a"),
                String::new(),
            ),
            12 => (
                "POST",
                "/v1/tenants".into(),
                tenant_body(v, &name).to_string(),
            ),
            13 => (
                "GET",
                format!("/v1/tenants/{v}/documents?limit=5&deleted=include"),
                String::new(),
            ),
            14 => (
                "GET",
                format!("/v1/tenants/{v}/documents?deleted=only"),
                String::new(),
            ),
            15 => ("GET", format!("/v1/tenants/{v}/policies"), String::new()),
            16 => (
                "GET",
                format!("/v1/tenants/{v}/policies/everything"),
                String::new(),
            ),
            17 => (
                "PUT",
                format!("/v1/tenants/{v}/policies/everything"),
                policy,
            ),
            18 => (
                "DELETE",
                format!("/v1/tenants/{v}/policies/reach-next"),
                String::new(),
            ),
            19 => ("POST", format!("/v1/tenants/{v}/access-check"), check),
            _ => ("GET", "/v1/tenants?limit=500".into(), String::new()),
        };
        let mut headers = vec![
            bearer(a),
            ("if-match".to_string(), "\"0123456789abcdef\"".to_string()),
        ];
        headers.extend(canary_headers(a));
        let swap = (!path.ends_with("limit=500")).then(|| swaps(v, missing(rng)));
        out.push(Attempt::new(
            Surface::Admin,
            Server::Admin,
            a,
            format!("admin #{i} {method} {path} as {}", a.user),
            Sent::new(method, &path, headers, body),
            Rule::NoAllow,
            swap,
        ));
    }
}

/// Stripe webhook events an attacker would like delivered — its own
/// tenant's or another's subscription made enterprise, ended, paid — signed
/// every way it can without the endpoint's secret. None may succeed; the
/// stored records are checked at the end.
pub fn webhook(rng: &mut Rng, attackers: &[Attacker], n: usize, out: &mut Vec<Attempt>) {
    use hmac::Mac;
    let now = chrono::Utc::now().timestamp();
    for i in 0..n {
        let a = &attackers[rng.below(attackers.len())];
        let v = if rng.chance(25) {
            a.tenant
        } else {
            victim(rng, a.tenant)
        };
        let object = match rng.below(4) {
            0 => json!({"id": "sub_x", "customer": format!("cus_{v}"), "status": "active",
                "items": {"data": [{"price": {"id": "price_enterprise"}}]},
                "metadata": {"tenant_id": v}}),
            1 => json!({"id": "sub_x", "customer": format!("cus_{v}"), "status": "canceled",
                "metadata": {"tenant_id": v}}),
            2 => {
                json!({"id": "in_x", "customer": {"id": format!("cus_{v}")}, "subscription": "sub_x"})
            }
            _ => json!({"id": "sub_x", "customer": format!("cus_{v}"), "status": "unpaid",
                "items": {"data": [{"price": {"id": "price_enterprise"}}]}}),
        };
        let kind = match rng.below(4) {
            0 => "customer.subscription.updated",
            1 => "customer.subscription.deleted",
            2 => "invoice.paid",
            _ => "customer.subscription.created",
        };
        let body = json!({"id": format!("evt_attack_{i}"), "object": "event", "type": kind,
            "created": now, "data": {"object": object}})
        .to_string();
        let sign = |secret: &str, t: i64| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{t}.{body}").as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        let guessed = format!("whsec_{}", a.canary);
        let (label, signature) = match rng.below(8) {
            0 => ("unsigned", None),
            1 => ("empty", Some(String::new())),
            2 => (
                "guessed-secret",
                Some(format!("t={now},v1={}", sign(&guessed, now))),
            ),
            3 => (
                "token-as-secret",
                Some(format!("t={now},v1={}", sign(&a.token, now))),
            ),
            4 => (
                "v0-only",
                Some(format!("t={now},v0={}", sign(&guessed, now))),
            ),
            5 => (
                "uppercase-zero",
                Some(format!("t={now},v1={}", "0".repeat(64))),
            ),
            6 => ("no-timestamp", Some(format!("v1={}", sign(&guessed, now)))),
            _ => (
                "empty-secret",
                Some(format!("t={now},v1={}", sign("", now))),
            ),
        };
        let mut headers = vec![
            bearer(a),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        headers.extend(canary_headers(a));
        if let Some(sig) = signature {
            headers.push(("stripe-signature".to_string(), sig));
        }
        let swap = (v != a.tenant).then(|| swaps(v, missing(rng)));
        out.push(Attempt::new(
            Surface::Admin,
            Server::Admin,
            a,
            format!("webhook #{i} {kind} about {v} {label} as {}", a.user),
            Sent::new("POST", "/v1/billing/stripe/webhook", headers, body),
            Rule::NotSuccess,
            swap,
        ));
    }
}

/// Tokens an attacker can make without the signing key, on every surface.
pub fn tokens(
    keys_other: &cedargate::identity::devkey::DevKey,
    attackers: &[Attacker],
    out: &mut Vec<Attempt>,
) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = chrono::Utc::now().timestamp();
    for a in attackers.iter().filter(|a| a.group == "admin") {
        let parts: Vec<&str> = a.token.split('.').collect();
        let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut c = claims.clone();
            edit(&mut c);
            c
        };
        // The attacker's own signature over edited claims.
        let resign = |c: &Value| format!("{}.{}.{}", parts[0], b64.encode(c.to_string()), parts[2]);
        let unsigned = |alg: &str, c: &Value| {
            let mut h = header.clone();
            h["alg"] = json!(alg);
            format!(
                "{}.{}.",
                b64.encode(h.to_string()),
                b64.encode(c.to_string())
            )
        };
        let hs256 = |c: &Value| {
            use hmac::Mac;
            let mut h = header.clone();
            h["alg"] = json!("HS256");
            let signing = format!(
                "{}.{}",
                b64.encode(h.to_string()),
                b64.encode(c.to_string())
            );
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(
                keys_other.jwks().to_string().as_bytes(),
            )
            .unwrap();
            mac.update(signing.as_bytes());
            format!("{signing}.{}", b64.encode(mac.finalize().into_bytes()))
        };
        let other_key = |c: &Value| keys_other.mint(c).unwrap();
        for v in [
            TENANTS[(TENANTS.iter().position(|t| *t == a.tenant).unwrap() + 1) % 6],
            PLATFORM,
        ] {
            let into = |t: &str| with(&|c: &mut Value| c["custom:tenant_id"] = json!(t));
            let platform = |t: &str| {
                with(&|c: &mut Value| {
                    c["custom:tenant_id"] = json!(t);
                    c["cognito:groups"] = json!(["platform-admin", "admin"]);
                })
            };
            // (label, token about `v`, the same token about a missing tenant)
            let tricks: Vec<(&str, String, String)> = vec![
                ("resigned-tenant", resign(&into(v)), resign(&into("ten-x"))),
                (
                    "resigned-platform",
                    resign(&platform(v)),
                    resign(&platform("ten-x")),
                ),
                (
                    "alg-none",
                    unsigned("none", &into(v)),
                    unsigned("none", &into("ten-x")),
                ),
                (
                    "alg-none-upper",
                    unsigned("NONE", &into(v)),
                    unsigned("NONE", &into("ten-x")),
                ),
                ("hs256-public-key", hs256(&into(v)), hs256(&into("ten-x"))),
                (
                    "unknown-key",
                    other_key(&into(v)),
                    other_key(&into("ten-x")),
                ),
                (
                    "tenant-array",
                    other_key(&with(&|c| c["custom:tenant_id"] = json!([v]))),
                    other_key(&with(&|c| c["custom:tenant_id"] = json!(["ten-x"]))),
                ),
                (
                    "expired",
                    other_key(&with(&|c| {
                        c["custom:tenant_id"] = json!(v);
                        c["exp"] = json!(now - 3600);
                    })),
                    other_key(&with(&|c| {
                        c["custom:tenant_id"] = json!("ten-x");
                        c["exp"] = json!(now - 3600);
                    })),
                ),
            ];
            let mut all = tricks;
            all.push((
                "garbage",
                format!("{}.{}", a.token, v),
                format!("{}.ten-x", a.token),
            ));
            for (label, bad, twin) in all {
                for surface in 0..5 {
                    let auth = ("authorization".to_string(), format!("Bearer {bad}"));
                    let twin_auth = ("authorization".to_string(), format!("Bearer {twin}"));
                    let (server, sent, twin_sent) = match surface {
                        0 => {
                            let body = json!({"action": "Search", "resource": {"type": "Tenant", "id": v}}).to_string();
                            let twin_body = body.replace(v, "ten-x");
                            (
                                Server::Sidecar,
                                Sent::new("POST", "/v1/authorize", vec![auth], body),
                                Sent::new("POST", "/v1/authorize", vec![twin_auth], twin_body),
                            )
                        }
                        1 => (
                            Server::Forward(Convention::Envoy),
                            Sent::new(
                                "GET",
                                &format!("/v1/forward-auth/tenants/{v}/usage"),
                                vec![auth],
                                String::new(),
                            ),
                            Sent::new(
                                "GET",
                                "/v1/forward-auth/tenants/ten-x/usage",
                                vec![twin_auth],
                                String::new(),
                            ),
                        ),
                        2 => {
                            let body = |t: &str, tok: &str| {
                                json!({"policyStoreId": "cedargate", "identityToken": tok,
                                "action": {"actionType": "CedarGate::Action", "actionId": "ViewUsage"},
                                "resource": {"entityType": "CedarGate::Tenant", "entityId": t}}).to_string()
                            };
                            let h = vec![(
                                "x-amz-target".to_string(),
                                "VerifiedPermissions.IsAuthorizedWithToken".to_string(),
                            )];
                            (
                                Server::Sidecar,
                                Sent::new("POST", "/", h.clone(), body(v, &bad)),
                                Sent::new("POST", "/", h, body("ten-x", &twin)),
                            )
                        }
                        3 => (
                            Server::Admin,
                            Sent::new(
                                "GET",
                                &format!("/v1/tenants/{v}"),
                                vec![auth],
                                String::new(),
                            ),
                            Sent::new("GET", "/v1/tenants/ten-x", vec![twin_auth], String::new()),
                        ),
                        _ => (
                            Server::Admin,
                            Sent::new(
                                "GET",
                                &format!("/v1/tenants/{v}/usage"),
                                vec![auth],
                                String::new(),
                            ),
                            Sent::new(
                                "GET",
                                "/v1/tenants/ten-x/usage",
                                vec![twin_auth],
                                String::new(),
                            ),
                        ),
                    };
                    let mut at = Attempt::new(
                        Surface::Token,
                        server,
                        a,
                        format!("token {label} about {v} on surface {surface} by {}", a.user),
                        sent,
                        Rule::NoAllow,
                        None,
                    );
                    at.twin = Some(twin_sent);
                    at.swaps = vec![(v.to_string(), "ten-x".to_string())];
                    out.push(at);
                }
            }
        }
    }
}
