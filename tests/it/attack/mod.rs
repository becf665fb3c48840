//! The attacker's suite. Eighteen users of six tenants, holding valid
//! tokens, go after every other tenant on every surface at once: the native
//! API (single and batch), forward-auth behind each proxy convention (with
//! other proxies' headers and path spellings added), the Verified
//! Permissions API (token and plain calls, crafted entities), every
//! management endpoint, and tokens they can make without the key. Over
//! more than 10,000 generated attempts it asserts:
//!
//! - no request about another tenant's data is allowed, and a request that
//!   leaves out the original method or URI is never approved;
//! - no answer carries another tenant's name, numbers, user or document ids
//!   unless the attacker's tenant named them first;
//! - the answer about another tenant is byte for byte the answer about a
//!   tenant that does not exist (decision ids aside; `data_age_ms` within
//!   the time between the two requests), and a forward-auth request reads
//!   the same whatever other proxies' headers the client adds;
//! - no answer is a 5xx;
//! - a tenant administrator cannot change their subscription, limits or
//!   status (nor can anyone through the Stripe webhook without its signing
//!   secret), and nothing in another tenant's audit log was written by an
//!   outsider.

mod gen;
mod judge;
mod world;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use cedargate::config::{IdentityConfig, Settings};
use cedargate::identity::devkey::DevKey;
use cedargate::ids::TenantId;
use cedargate::store::{self, AuditQuery, StoreUrl};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::helpers::*;
use cedargate::sidecar::client::Reply;
use gen::{Convention, Rng, CONVENTIONS};
use judge::Violation;
use world::*;

/// Stripe webhooks on the management server: a secret no attacker has, and
/// a price that would make any tenant enterprise.
fn webhook_config() -> cedargate::billing::stripe::StripeConfig {
    cedargate::billing::stripe::StripeConfig {
        webhook_secrets: vec![WEBHOOK_SECRET.into()],
        prices: vec![cedargate::billing::stripe::PricePlan {
            price: "price_enterprise".into(),
            tier: cedargate::model::Tier::Enterprise,
            features: [
                "export".to_string(),
                "audit-logs".to_string(),
                "sso".to_string(),
            ]
            .into(),
            limits: cedargate::model::Limits {
                max_documents: 4_000_000_000,
                max_users: 4_000_000_000,
                max_storage_gb: 4_000_000_000,
                max_queries_per_month: 4_000_000_000,
            },
        }],
        ..Default::default()
    }
}

/// Which server an attempt goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    Sidecar,
    Forward(Convention),
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Surface {
    Native,
    Batch,
    Forward,
    Avp,
    Admin,
    Token,
    Escalation,
}

/// What must not happen to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Not allowed (a 2xx that is not a Deny).
    NoAllow,
    /// Not a 2xx at all.
    NotSuccess,
}

/// One request as sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Sent {
    pub fn new(method: &str, path: &str, headers: Vec<(String, String)>, body: String) -> Self {
        Sent {
            method: method.into(),
            path: path.into(),
            headers,
            body,
        }
    }

    /// The same request with `swaps` applied (never to the token).
    fn swapped(&self, swaps: &[(String, String)]) -> Sent {
        let apply = |s: &str| {
            swaps
                .iter()
                .fold(s.to_string(), |acc, (from, to)| acc.replace(from, to))
        };
        Sent {
            method: self.method.clone(),
            path: apply(&self.path),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| {
                    let keep = k == "authorization" || k.contains("token");
                    (k.clone(), if keep { v.clone() } else { apply(v) })
                })
                .collect(),
            body: swap_json_body(&self.body, &apply),
        }
    }

    /// Everything the attacker wrote, for the "named it first" rule.
    fn text(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.path);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&self.body);
        s
    }
}

/// Swaps ids in a body, leaving token fields alone.
fn swap_json_body(body: &str, apply: &dyn Fn(&str) -> String) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            let tokens: Vec<(String, Value)> = ["identityToken", "accessToken"]
                .iter()
                .filter_map(|k| v.get(*k).map(|t| (k.to_string(), t.clone())))
                .collect();
            let mut out: Value = serde_json::from_str(&apply(&v.to_string())).unwrap_or(v.clone());
            for (k, t) in tokens {
                out[k] = t;
            }
            v = out;
            v.to_string()
        }
        Err(_) => apply(body),
    }
}

/// One attempt, and the request whose answer it must read like.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub surface: Surface,
    pub server: Server,
    pub tenant: &'static str,
    pub label: String,
    pub sent: Sent,
    pub rule: Rule,
    /// Sent right after `sent`; its answer, with `swaps` undone, must be
    /// the same.
    pub twin: Option<Sent>,
    pub swaps: Vec<(String, String)>,
}

impl Attempt {
    pub fn new(
        surface: Surface,
        server: Server,
        a: &Attacker,
        label: String,
        sent: Sent,
        rule: Rule,
        swaps: Option<Vec<(String, String)>>,
    ) -> Self {
        let swaps = swaps.unwrap_or_default();
        let twin = (!swaps.is_empty())
            .then(|| sent.swapped(&swaps))
            .filter(|t| t.path != sent.path || t.body != sent.body || t.headers != sent.headers);
        Attempt {
            surface,
            server,
            tenant: a.tenant,
            label,
            sent,
            rule,
            swaps: if twin.is_some() { swaps } else { Vec::new() },
            twin,
        }
    }

    /// A twin with no swaps: `clean` is how the proxy itself sends it.
    pub fn same_as(mut self, clean: Sent) -> Self {
        self.twin = Some(clean);
        self.swaps = Vec::new();
        self
    }
}

/// The running servers: the main sidecar, one per forward-auth convention,
/// the management API; all on one store.
struct Servers {
    sidecar: TestApp,
    forward: Vec<(Convention, TestApp)>,
    admin: TestApp,
    store: StoreUrl,
    _keys_dir: tempfile::TempDir,
    _store_dir: tempfile::TempDir,
}

impl Servers {
    fn addr(&self, s: Server) -> SocketAddr {
        match s {
            Server::Sidecar => self.sidecar.addr,
            Server::Admin => self.admin.addr,
            Server::Forward(c) => self
                .forward
                .iter()
                .find(|(conv, _)| *conv == c)
                .map(|(_, app)| app.addr)
                .expect("a sidecar per convention"),
        }
    }
}

/// Sets the forward-auth convention the sidecar trusts.
fn set_convention(s: &mut Settings, c: Convention) {
    s.forward_auth.convention = match c {
        Convention::Nginx => cedargate::sidecar::forward::ProxyConvention::Nginx,
        Convention::Traefik => cedargate::sidecar::forward::ProxyConvention::Traefik,
        Convention::Caddy => cedargate::sidecar::forward::ProxyConvention::Caddy,
        Convention::Envoy => cedargate::sidecar::forward::ProxyConvention::Envoy,
    };
}

async fn start(keys: &Keys) -> Servers {
    let keys_dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(keys_dir.path(), &keys.dev);
    let store_dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::Sqlite(store_dir.path().join("attack.db"));
    store::open(&url)
        .await
        .unwrap()
        .import(&data())
        .await
        .unwrap();
    let jwt = {
        let mut j = cedargate::identity::JwtConfig::new(
            cedargate::identity::JwksSource::File(jwks.clone()),
            ISSUER,
            vec![AUDIENCE.to_string()],
        );
        j.allow_dev_keys = true;
        j
    };
    let common = move |s: &mut Settings| {
        s.identity = IdentityConfig::Jwt(jwt.clone());
        // Foreign tenants, once read, would stay cached for the whole run,
        // while "not found" is read again at once: any answer that depends
        // on having read the other tenant shows in `data_age_ms`.
        s.cache.ttl = std::time::Duration::from_secs(3600);
        s.cache.negative_ttl = std::time::Duration::from_millis(1);
        s.audit.shutdown_timeout = std::time::Duration::from_secs(60);
    };
    let sidecar_router = || Arc::new(cedargate::sidecar::SidecarRoutes);
    let sidecar = spawn_in(
        url.clone(),
        // The Git store of the Verified Permissions API takes the sidecar's
        // token settings.
        |s| common.clone()(s),
        sidecar_router(),
    )
    .await;
    let mut forward = Vec::new();
    for c in CONVENTIONS {
        let app = spawn_in(
            url.clone(),
            |s| {
                common.clone()(s);
                set_convention(s, c);
            },
            sidecar_router(),
        )
        .await;
        forward.push((c, app));
    }
    let retention = cedargate::retention::RetentionConfig::new("unused-archives".into());
    let admin = spawn_in(
        url.clone(),
        |s| {
            common.clone()(s);
            s.audit.role = "admin".into();
        },
        Arc::new(
            cedargate::admin::AdminRoutes::new(retention, cedargate::clock::system())
                .with_stripe(webhook_config()),
        ),
    )
    .await;
    Servers {
        sidecar,
        forward,
        admin,
        store: url,
        _keys_dir: keys_dir,
        _store_dir: store_dir,
    }
}

/// The answers of one attempt (and its twin), with the time between them.
pub struct Answered {
    pub reply: Reply,
    pub twin: Option<Reply>,
    pub between_ms: u64,
}

/// A keep-alive connection per server, per worker.
#[derive(Default)]
struct Conns(
    HashMap<
        SocketAddr,
        hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    >,
);

impl Conns {
    async fn send(&mut self, addr: SocketAddr, sent: &Sent) -> Result<Reply, String> {
        use http_body_util::BodyExt;
        for _ in 0..3 {
            let ready = match self.0.get_mut(&addr) {
                Some(s) => s.ready().await.is_ok(),
                None => false,
            };
            if !ready {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                self.0.insert(addr, sender);
            }
            let Some(sender) = self.0.get_mut(&addr) else {
                continue;
            };
            let mut req = hyper::Request::builder()
                .method(sent.method.as_str())
                .uri(sent.path.as_str())
                .header("host", addr.to_string());
            if !sent.headers.iter().any(|(k, _)| k == "content-type") {
                req = req.header("content-type", "application/json");
            }
            for (k, v) in &sent.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    sent.body.clone(),
                )))
                .map_err(|e| e.to_string())?;
            match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    return Ok(Reply {
                        status,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
                Err(_) => {
                    self.0.remove(&addr);
                }
            }
        }
        Err(format!("{} {}: no answer", sent.method, sent.path))
    }
}

/// Runs every attempt on a few concurrent workers.
async fn run(
    servers: &Servers,
    attempts: Vec<Attempt>,
    known: &Arc<HashMap<String, HashSet<String>>>,
) -> Vec<Violation> {
    let queue = Arc::new(Mutex::new(VecDeque::from(attempts)));
    let found = Arc::new(Mutex::new(Vec::new()));
    let addrs: HashMap<Server, SocketAddr> = [Server::Sidecar, Server::Admin]
        .into_iter()
        .chain(CONVENTIONS.map(Server::Forward))
        .map(|s| (s, servers.addr(s)))
        .collect();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (queue, found, addrs, known) =
            (queue.clone(), found.clone(), addrs.clone(), known.clone());
        workers.spawn(async move {
            let mut conns = Conns::default();
            loop {
                let Some(at) = queue.lock().pop_front() else {
                    return;
                };
                let addr = addrs[&at.server];
                let started = std::time::Instant::now();
                let reply = conns.send(addr, &at.sent).await;
                let twin = match &at.twin {
                    Some(t) => Some(conns.send(addr, t).await),
                    None => None,
                };
                let between_ms = started.elapsed().as_millis() as u64;
                let verdict = match (reply, twin) {
                    (Ok(reply), None) => judge::judge(
                        &at,
                        &Answered {
                            reply,
                            twin: None,
                            between_ms,
                        },
                        &known,
                    ),
                    (Ok(reply), Some(Ok(t))) => judge::judge(
                        &at,
                        &Answered {
                            reply,
                            twin: Some(t),
                            between_ms,
                        },
                        &known,
                    ),
                    (Err(e), _) | (_, Some(Err(e))) => {
                        vec![Violation::new("transport", &at.label, e)]
                    }
                };
                found.lock().extend(verdict);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let out = std::mem::take(&mut *found.lock());
    out
}

/// The platform administrator's view of a tenant: its record and ETag.
async fn tenant_as_root(servers: &Servers, root: &str, id: &str) -> (Value, String) {
    let auth = format!("Bearer {root}");
    let r = servers
        .admin
        .send_with(
            hyper::Method::GET,
            &format!("/v1/tenants/{id}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(
        r.status, 200,
        "platform administrator reads {id}: {}",
        r.body
    );
    (r.json(), r.headers["etag"].to_str().unwrap().to_string())
}

/// What only the platform may change on a tenant (usage: nobody, through
/// this API).
const PRIVILEGED: [&str; 10] = [
    "subscription.tier",
    "subscription.features",
    "subscription.startDate",
    "limits.maxDocuments",
    "limits.maxUsers",
    "limits.maxStorageGB",
    "limits.maxQueriesPerMonth",
    "status",
    "usage.documents",
    "usage.queriesThisMonth",
];

/// Changes `field` of a tenant record to something else.
fn edit(field: &str, t: &mut Value) {
    let other = |v: &Value, a: &str, b: &str| json!(if v == a { b } else { a });
    match field.split_once('.') {
        None if field == "status" => t["status"] = other(&t["status"], "active", "trial"),
        None => t[field] = json!(format!("x {}", t[field].as_str().unwrap_or_default())),
        Some(("subscription", "tier")) => {
            t["subscription"]["tier"] = other(&t["subscription"]["tier"], "enterprise", "basic")
        }
        Some(("subscription", "features")) => {
            t["subscription"]["features"] = json!(["export", "audit-logs", "sso", "api-access"])
        }
        Some(("subscription", "startDate")) => t["subscription"]["startDate"] = json!("2020-01-01"),
        Some(("limits", name)) => t["limits"][name] = json!(4_000_000_000u32),
        Some((section, name)) => t[section][name] = json!(0),
    }
}

/// Tenant administrators (and their editors and viewers) try to change what
/// only the platform may: each privileged field, one at a time.
async fn escalate(
    servers: &Servers,
    attackers: &[Attacker],
    root: &str,
) -> (usize, Vec<Violation>) {
    let mut found = Vec::new();
    let mut n = 0;
    let mut conns = Conns::default();
    for a in attackers {
        let edits: &[&str] = if a.group == "admin" {
            &PRIVILEGED
        } else {
            &["name"]
        };
        for field in edits {
            n += 1;
            let (mut record, etag) = tenant_as_root(servers, root, a.tenant).await;
            edit(field, &mut record);
            let headers = vec![
                ("authorization".to_string(), format!("Bearer {}", a.token)),
                ("if-match".to_string(), etag),
                ("user-agent".to_string(), a.canary.clone()),
            ];
            let sent = Sent::new(
                "PUT",
                &format!("/v1/tenants/{}", a.tenant),
                headers,
                record.to_string(),
            );
            let label = format!("{} changes {field} of {}", a.user, a.tenant);
            match conns.send(servers.admin.addr, &sent).await {
                // Usage is the service's: a PUT may succeed, but keeps it.
                Ok(r) if r.status.is_success() && field.starts_with("usage.") => {
                    let (section, name) = field.split_once('.').unwrap();
                    if r.json()[section][name] != record[section][name] {
                        continue;
                    }
                    found.push(Violation::new(
                        "escalation",
                        &label,
                        format!("{} {}", r.status, r.body),
                    ))
                }
                Ok(r) if r.status.is_success() => found.push(Violation::new(
                    "escalation",
                    &label,
                    format!("{} {}", r.status, r.body),
                )),
                Ok(r) if r.status.is_server_error() => found.push(Violation::new(
                    "server-error",
                    &label,
                    format!("{} {}", r.status, r.body),
                )),
                Ok(_) => {}
                Err(e) => found.push(Violation::new("transport", &label, e)),
            }
        }
    }
    (n, found)
}

/// After the run: nothing an outsider chose is in another tenant's log,
/// and no tenant's subscription, limits or status changed.
async fn check_store(url: &StoreUrl) -> Vec<Violation> {
    let store = store::open(url).await.unwrap();
    let mut found = Vec::new();
    let original = data();
    for t in &original.tenants {
        let now = store.get_tenant(&t.tenant_id).await.unwrap().unwrap();
        if now.subscription != t.subscription
            || now.limits != t.limits
            || now.status != t.status
            || now.usage.documents != t.usage.documents
        {
            found.push(Violation::new(
                "escalation",
                &format!("stored record of {}", t.tenant_id),
                format!("{:?} {:?} {:?}", now.subscription, now.limits, now.status),
            ));
        }
    }
    // No tenant's own policies changed, and none appeared anywhere.
    for t in TENANTS.iter().chain([&PLATFORM]).chain(MISSING.iter()) {
        let id = TenantId::parse(*t).unwrap();
        let mut want: Vec<_> = original
            .policies
            .iter()
            .filter(|p| p.tenant_id == id)
            .cloned()
            .collect();
        want.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
        let now = store.tenant_policies(&id).await.unwrap();
        if now != want {
            found.push(Violation::new(
                "escalation",
                &format!("policies of {t}"),
                format!("{now:?}"),
            ));
        }
    }
    let partitions = TENANTS.iter().chain([&PLATFORM]).chain(MISSING.iter());
    for p in partitions {
        let mut q = AuditQuery::new(
            TenantId::parse(*p).unwrap(),
            chrono::DateTime::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::days(1),
            1000,
        );
        loop {
            let page = store.audit_events(&q).await.unwrap();
            for e in &page.events {
                let text = serde_json::to_string(e).unwrap();
                let outsider = e
                    .user_id
                    .as_deref()
                    .filter(|u| *u != ROOT)
                    .and_then(tenant_of_user)
                    .filter(|t| t != p);
                let foreign_canary = (0..26u8)
                    .map(|i| (b'a' + i) as char)
                    .filter(|l| *l != letter(p))
                    .find(|l| text.contains(&format!("canary-{l}-")));
                if outsider.is_some() || foreign_canary.is_some() {
                    found.push(Violation::new(
                        "audit-injection",
                        &format!("audit log of {p}"),
                        format!("{} by {:?}: {}", e.action, e.user_id, e.details),
                    ));
                }
            }
            match page.next {
                Some(n) => q.after = Some(n),
                None => break,
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_run_finds_no_cross_tenant_leak() {
    let keys = Keys {
        dev: DevKey::generate(),
    };
    let servers = start(&keys).await;
    let attackers = attackers(&keys);
    let root = root_token(&keys);

    let mut rng = Rng::new(0x5EED_CEDA_2026);
    let mut attempts = Vec::new();
    gen::native(&mut rng, &attackers, 2600, &mut attempts);
    gen::batch(&mut rng, &attackers, 400, &mut attempts);
    gen::forward(&mut rng, &attackers, 3300, &mut attempts);
    gen::avp(&mut rng, &attackers, 1800, &mut attempts);
    gen::admin(&mut rng, &attackers, 1800, &mut attempts);
    gen::webhook(&mut rng, &attackers, 600, &mut attempts);
    gen::tokens(&DevKey::generate(), &attackers, &mut attempts);

    // What each tenant's attackers named themselves, anywhere.
    let mut known: HashMap<String, HashSet<String>> = HashMap::new();
    for at in &attempts {
        let text = at.sent.text() + &at.twin.as_ref().map(Sent::text).unwrap_or_default();
        let entry = known.entry(at.tenant.to_string()).or_default();
        for (_, s) in foreign_secrets(at.tenant) {
            if text.contains(&s) {
                entry.insert(s);
            }
        }
    }
    let known = Arc::new(known);

    let mut per_surface: HashMap<Surface, usize> = HashMap::new();
    for at in &attempts {
        *per_surface.entry(at.surface).or_default() += 1;
    }
    let requests: usize = attempts
        .iter()
        .map(|a| 1 + usize::from(a.twin.is_some()))
        .sum();
    let mut violations = run(&servers, attempts, &known).await;
    let (escalations, found) = escalate(&servers, &attackers, &root).await;
    violations.extend(found);
    per_surface.insert(Surface::Escalation, escalations);

    // The carve-out still works: the platform administrator manages any
    // tenant, and learns which do not exist.
    let auth = format!("Bearer {root}");
    let r = servers
        .admin
        .send_with(
            hyper::Method::GET,
            "/v1/tenants/ten-b/usage",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = servers
        .admin
        .send_with(
            hyper::Method::GET,
            "/v1/tenants/ten-x",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    let url = servers.store.clone();
    servers.sidecar.shutdown().await;
    for (_, app) in servers.forward {
        app.shutdown().await;
    }
    servers.admin.shutdown().await;
    violations.extend(check_store(&url).await);

    let total: usize = per_surface.values().sum();
    let mut surfaces: Vec<_> = per_surface.into_iter().collect();
    surfaces.sort();
    let summary = judge::summary(&surfaces, total, requests, &violations);
    println!("{summary}");
    // ATTACK_REPORT=<file> writes every violation, one per line.
    if let Some(path) = std::env::var_os("ATTACK_REPORT") {
        let lines: Vec<String> = violations
            .iter()
            .map(|v| format!("{}\t{}\t{}", v.class, v.label, v.detail.replace('\n', " ")))
            .collect();
        std::fs::write(path, lines.join("\n")).unwrap();
    }
    assert!(total >= 10_000, "{summary}");
    assert!(violations.is_empty(), "{summary}");
}
