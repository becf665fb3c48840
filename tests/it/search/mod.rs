//! Search plans against the decisions, equality not subset: over a
//! generated corpus (24 tenants, over 5,000 documents: every visibility,
//! classification, shares to users and roles, soft-deleted ones) and over
//! 1,000 generated principals (roles, clearances, tenant statuses, a
//! missing tenant), the documents each plan's filters select — the SQL
//! filter run in real SQLite over the whole corpus, the Kendra and
//! OpenSearch filters by interpreters written from the services' documented
//! semantics (`interp.rs`) — are exactly those the engine behind
//! `/v1/authorize` allows to `Read`. A selection across tenants is reported
//! on its own. A sample also goes through the HTTP API.

mod api;
mod interp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use cedargate::app::App;
use cedargate::authz::entities::{document_entity, Principal};
use cedargate::authz::Effect;
use cedargate::config::Settings;
use cedargate::ids::{RoleName, TenantId, UserId};
use cedargate::model::{DataSet, Level};
use cedargate::search::fields::{Fields, Kind, SearchConfig};
use cedargate::search::{Plan, PlanKind};
use cedargate::store::{self, StoreUrl};
use serde_json::{json, Value};

use crate::helpers::*;

const TENANTS: usize = 24;
const DOCS_PER_TENANT: usize = 215;
const USERS: usize = 12;
const ROLES: [&str; 6] = [
    "admin",
    "editor",
    "viewer",
    "auditor",
    "contractor",
    "legal",
];
const STATUSES: [&str; 5] = ["active", "active", "trial", "suspended", "cancelled"];

fn tenant_id(i: usize) -> String {
    format!("st{i:02}")
}

/// The corpus, in the import format. Document ids repeat across tenants
/// (`d0000` is in every tenant), as do user ids.
fn corpus(rng: &mut Rng) -> DataSet {
    let mut tenants = Vec::new();
    let mut documents = Vec::new();
    for t in 0..TENANTS {
        let id = tenant_id(t);
        let tier = ["basic", "pro", "enterprise"][t % 3];
        tenants.push(json!({
            "tenantId": id, "createdAt": "2026-01-01T00:00:00Z", "name": format!("Tenant {t}"),
            "status": STATUSES[t % STATUSES.len()],
            "subscription": {"tier": tier, "startDate": "2026-01-01", "features": ["export"]},
            "limits": {"maxDocuments": 100000, "maxUsers": 100, "maxStorageGB": 100, "maxQueriesPerMonth": 100000},
            "usage": {"documents": 0, "users": 0, "storageGB": 0, "queriesThisMonth": 0},
            "settings": {"dataRetentionDays": 365, "allowedFileTypes": ["pdf"]},
        }));
        for d in 0..DOCS_PER_TENANT {
            let shares: Vec<Value> = (0..rng.below(5))
                .map(|_| {
                    let permission = if rng.chance(40) { "edit" } else { "read" };
                    if rng.chance(50) {
                        json!({"userId": format!("u{}", rng.below(USERS)), "permission": permission})
                    } else {
                        json!({"role": rng.pick(&ROLES), "permission": permission})
                    }
                })
                .collect();
            let mut doc = json!({
                "tenantId": id, "documentId": format!("d{d:04}"),
                "ownerId": format!("u{}", rng.below(USERS)),
                "visibility": rng.pick(&["private", "shared", "shared", "public"]),
                "classification": rng.below(4), "fileType": "pdf", "sizeBytes": 10,
                "sharedWith": shares,
            });
            if rng.chance(10) {
                doc["deletedAt"] = json!("2026-03-01T00:00:00Z");
            }
            documents.push(doc);
        }
    }
    serde_json::from_value(json!({"tenants": tenants, "documents": documents})).unwrap()
}

fn principals(rng: &mut Rng, n: usize) -> Vec<Principal> {
    (0..n)
        .map(|_| {
            let tenant = if rng.chance(4) {
                "st99".to_string()
            } else {
                tenant_id(rng.below(TENANTS))
            };
            let mut roles: BTreeSet<&str> = (0..rng.below(4)).map(|_| *rng.pick(&ROLES)).collect();
            if rng.chance(3) {
                roles.insert("platform-admin");
            }
            Principal {
                id: UserId::parse(format!("u{}", rng.below(USERS + 2))).unwrap(),
                tenant: TenantId::parse(tenant).unwrap(),
                roles: roles
                    .into_iter()
                    .map(|r| RoleName::parse(r).unwrap())
                    .collect(),
                clearance: Level::new(rng.below(4) as u8).unwrap(),
            }
        })
        .collect()
}

/// The corpus as a search index holds it: Kendra attributes, OpenSearch
/// fields, and SQL tables in SQLite.
struct Index {
    keys: Vec<(String, String)>,
    kendra: Vec<interp::KendraDoc>,
    opensearch: Vec<serde_json::Map<String, Value>>,
    sql: rusqlite::Connection,
}

fn index(data: &DataSet, fields: &Fields, config: &SearchConfig) -> Index {
    let tenant_field = config.field(&config.tenant_attribute);
    let sql = rusqlite::Connection::open_in_memory().unwrap();
    sql.execute_batch(&fields.sql_ddl(&config.sql, &tenant_field))
        .unwrap();
    let mut idx = Index {
        keys: Vec::new(),
        kendra: Vec::new(),
        opensearch: Vec::new(),
        sql,
    };
    let tx = idx.sql.transaction().unwrap();
    for d in &data.documents {
        let entity = document_entity(d);
        let values = fields.values(&entity);
        let attrs = fields.kendra_attributes(&entity);
        idx.kendra.push(
            attrs
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["Key"].as_str().unwrap().to_string(), a["Value"].clone()))
                .collect(),
        );
        idx.opensearch.push(values.clone().into_iter().collect());
        let mut cols = vec![config.sql.id_column.clone()];
        let mut params: Vec<rusqlite::types::Value> =
            vec![d.document_id.as_str().to_string().into()];
        for f in fields.0.values() {
            let v = &values[&f.name];
            match f.kind {
                Kind::StringList => {
                    for item in v.as_array().unwrap() {
                        tx.execute(
                            &format!(
                                "INSERT INTO \"{}\" VALUES (?, ?, ?, ?)",
                                config.sql.values_table
                            ),
                            rusqlite::params![
                                d.tenant_id.as_str(),
                                d.document_id.as_str(),
                                f.name,
                                item.as_str().unwrap()
                            ],
                        )
                        .unwrap();
                    }
                    continue;
                }
                Kind::Bool => params.push(i64::from(v.as_bool().unwrap()).into()),
                Kind::Long => params.push(v.as_i64().unwrap().into()),
                Kind::String => params.push(v.as_str().unwrap().to_string().into()),
            }
            cols.push(f.name.clone());
        }
        let sql = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            config.sql.table,
            cols.iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
            vec!["?"; cols.len()].join(", ")
        );
        tx.execute(&sql, rusqlite::params_from_iter(params))
            .unwrap();
        idx.keys.push((
            d.tenant_id.as_str().to_string(),
            d.document_id.as_str().to_string(),
        ));
    }
    tx.commit().unwrap();
    idx
}

fn sql_select(idx: &Index, config: &SearchConfig, filter: &Value) -> BTreeSet<(String, String)> {
    let tenant_field = config.field(&config.tenant_attribute);
    let query = format!(
        "SELECT \"{tenant_field}\", \"{}\" FROM \"{}\" WHERE {}",
        config.sql.id_column,
        config.sql.table,
        filter["where"].as_str().unwrap()
    );
    let params: Vec<rusqlite::types::Value> = filter["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p {
            Value::Number(n) => n.as_i64().unwrap().into(),
            Value::String(s) => s.clone().into(),
            other => panic!("parameter {other}"),
        })
        .collect();
    let mut stmt = idx.sql.prepare(&query).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// What one oracle run found.
#[derive(Default)]
struct Outcome {
    failures: BTreeMap<&'static str, Vec<String>>,
    conditional: usize,
    denied: usize,
    allowed: usize,
}

impl Outcome {
    fn fail(&mut self, class: &'static str, what: String) {
        self.failures.entry(class).or_default().push(what);
    }

    fn report(&self) -> String {
        let mut s = format!(
            "plans: {} conditional, {} always denied; {} allowed reads\n",
            self.conditional, self.denied, self.allowed
        );
        for (class, list) in &self.failures {
            s.push_str(&format!("{class}: {}\n", list.len()));
            for f in list.iter().take(3) {
                s.push_str(&format!("  - {f}\n"));
            }
        }
        s
    }
}

/// The oracle: for every principal, the plan's selections in every format
/// equal the engine's allowed reads.
async fn oracle(app: &App, data: &DataSet, idx: &Index, principals: &[Principal]) -> Outcome {
    let engine = &app.state.engine;
    let config = app.state.planner.config().clone();
    let mut by_tenant: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (t, _)) in idx.keys.iter().enumerate() {
        by_tenant.entry(t.as_str()).or_default().push(i);
    }
    let mut out = Outcome::default();
    let mut kendra_filters = BTreeSet::new();
    for (n, p) in principals.iter().enumerate() {
        let who = format!(
            "#{n} {}@{} {:?} clearance {}",
            p.id,
            p.tenant,
            p.roles,
            p.clearance.get()
        );
        let mut allowed = BTreeSet::new();
        for &i in by_tenant.get(p.tenant.as_str()).into_iter().flatten() {
            let (_, id) = &idx.keys[i];
            let d = engine
                .decide(&request(p, "Read", doc(id), Value::Null))
                .await
                .unwrap();
            if d.decision == Effect::Allow {
                allowed.insert(idx.keys[i].clone());
            }
        }
        out.allowed += allowed.len();
        let plan: std::sync::Arc<Plan> = match app
            .state
            .planner
            .plan(engine, p, "Read", &Value::Null)
            .await
        {
            Ok(plan) => plan,
            Err(e) => {
                out.fail("no plan", format!("{who}: {e}"));
                continue;
            }
        };
        if plan.kind == PlanKind::AlwaysDenied {
            out.denied += 1;
            if !allowed.is_empty() {
                out.fail(
                    "always denied, but reads are allowed",
                    format!("{who}: {allowed:?}"),
                );
            }
            continue;
        }
        out.conditional += 1;
        // SQL over the whole corpus.
        let sql = serde_json::to_value(plan.sql.as_ref().unwrap()).unwrap();
        let by_sql = sql_select(idx, &config, &sql);
        // Kendra and OpenSearch over the principal's tenant and two others.
        let mut candidates: Vec<usize> = by_tenant
            .get(p.tenant.as_str())
            .cloned()
            .unwrap_or_default();
        for other in [(n * 7) % TENANTS, (n * 11 + 5) % TENANTS] {
            candidates.extend(
                by_tenant
                    .get(tenant_id(other).as_str())
                    .into_iter()
                    .flatten(),
            );
        }
        let kendra = plan.kendra.as_ref().unwrap_or_else(|e| {
            panic!(
                "{who}: {e}: {}",
                serde_json::to_string(&plan.condition).unwrap()
            )
        });
        kendra_filters.insert(kendra.to_string());
        let opensearch = plan.opensearch.as_ref().unwrap();
        let mut by_kendra = BTreeSet::new();
        let mut by_opensearch = BTreeSet::new();
        for &i in &candidates {
            if interp::kendra(kendra, &idx.kendra[i]) {
                by_kendra.insert(idx.keys[i].clone());
            }
            if interp::opensearch(opensearch, &idx.opensearch[i]) {
                by_opensearch.insert(idx.keys[i].clone());
            }
        }
        for (format, selected) in [
            ("sql", &by_sql),
            ("kendra", &by_kendra),
            ("opensearch", &by_opensearch),
        ] {
            let foreign: Vec<_> = selected
                .iter()
                .filter(|(t, _)| t != p.tenant.as_str())
                .collect();
            if !foreign.is_empty() {
                out.fail(
                    "selects another tenant's documents",
                    format!("{who} {format}: {foreign:?}"),
                );
            }
            if selected != &allowed {
                let extra: Vec<_> = selected.difference(&allowed).collect();
                let missing: Vec<_> = allowed.difference(selected).collect();
                out.fail(
                    "differs from the decisions",
                    format!("{who} {format}: selects {extra:?} not allowed, misses {missing:?}; condition {}", serde_json::to_string(&plan.condition).unwrap()),
                );
            }
        }
    }
    let _ = data;
    // The test command checks them against Kendra's service model
    // (scripts/kendra_filters.py).
    if let Some(path) = std::env::var_os("CEDARGATE_KENDRA_FILTERS") {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for k in &kendra_filters {
            writeln!(f, "{k}").unwrap();
        }
    }
    out
}

async fn app_over(url: &StoreUrl, policies: &Path, spool: &Path) -> App {
    let mut settings = Settings::trusted(url.clone(), policies, &repo_dir("schemas"));
    settings.audit.mode = cedargate::audit::writer::AuditMode::Off;
    settings.audit.spool_dir = spool.to_path_buf();
    settings.cache.decision_capacity = 0;
    // The oracle is Cedar's full evaluation, not the residuals plans share.
    settings.cache.residual_capacity = 0;
    App::build(settings).await.unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    url: StoreUrl,
    data: DataSet,
    principals: Vec<Principal>,
}

async fn world(principal_count: usize) -> World {
    let mut rng = Rng::new(0x005E_A2C4_2026);
    let data = corpus(&mut rng);
    let principals = principals(&mut rng, principal_count);
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::Sqlite(dir.path().join("search.db"));
    store::open(&url)
        .await
        .unwrap()
        .import(&data)
        .await
        .unwrap();
    World {
        _dir: dir,
        url,
        data,
        principals,
    }
}

fn index_for(app: &App, data: &DataSet) -> Index {
    let config = app.state.planner.config().clone();
    let snapshot = app.state.engine.policies().load_full();
    let fields = Fields::new(&config, &snapshot.types, "CedarGate::Document");
    index(data, &fields, &config)
}

/// Document decisions made from residual policies are Cedar's, field for
/// field: over generated principals (one in three with no tenant record),
/// every document action, every document of the principal's tenant and
/// documents of other tenants, an engine that decides from residuals from
/// the first request gives what an engine that evaluates every request
/// gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residual_decisions_are_the_full_evaluations() {
    let w = world(240).await;
    let spool = tempfile::tempdir().unwrap();
    let full = app_over(&w.url, &repo_dir("policies"), spool.path()).await;
    let mut settings =
        Settings::trusted(w.url.clone(), &repo_dir("policies"), &repo_dir("schemas"));
    settings.audit.mode = cedargate::audit::writer::AuditMode::Off;
    settings.audit.spool_dir = spool.path().to_path_buf();
    settings.cache.decision_capacity = 0;
    settings.cache.residual_after = 1;
    let fast = App::build(settings).await.unwrap();
    let idx = index_for(&full, &w.data);
    let mut by_tenant: HashMap<&str, Vec<&str>> = HashMap::new();
    for (t, id) in &idx.keys {
        by_tenant.entry(t.as_str()).or_default().push(id.as_str());
    }
    let actions = ["Read", "Update", "Delete", "Share", "Restore"];
    let (mut compared, mut allowed) = (0usize, 0usize);
    for (n, p) in w.principals.iter().enumerate() {
        let action = actions[n % actions.len()];
        let own = by_tenant
            .get(p.tenant.as_str())
            .cloned()
            .unwrap_or_default();
        // Ids of another tenant's documents (ids repeat across tenants).
        let other = by_tenant
            .get(tenant_id((n + 1) % TENANTS).as_str())
            .cloned()
            .unwrap_or_default();
        for id in own.iter().chain(other.iter().take(20)) {
            let r = request(p, action, doc(id), Value::Null);
            let a = full.state.engine.decide(&r).await.unwrap();
            let b = fast.state.engine.decide(&r).await.unwrap();
            let view = |d: &cedargate::authz::Decision| {
                (
                    d.decision,
                    d.determining_policies.clone(),
                    d.reason,
                    d.errors.clone(),
                    d.message.clone(),
                )
            };
            assert_eq!(view(&a), view(&b), "{action} {id} by {p:?}");
            compared += 1;
            allowed += usize::from(a.decision == Effect::Allow);
        }
    }
    let decided = fast.state.engine.metrics().residuals.decided.get() as usize;
    let unusable = fast.state.engine.metrics().residuals.unusable.get();
    println!("{compared} decisions compared, {allowed} allowed, {decided} from residuals, {unusable} keys left to Cedar");
    // Not vacuous: most decisions came from residuals, both answers occur.
    assert!(compared > 30_000, "{compared}");
    assert!(decided * 10 > compared * 6, "{decided} of {compared}");
    assert!(allowed > 2_000 && allowed < compared - 2_000, "{allowed}");
    assert_eq!(full.state.engine.metrics().residuals.decided.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_select_exactly_what_the_decisions_allow() {
    let w = world(1_000).await;
    assert!(w.data.documents.len() >= 5_000 && w.data.tenants.len() >= 20);
    let spool = tempfile::tempdir().unwrap();
    let app = app_over(&w.url, &repo_dir("policies"), spool.path()).await;
    let idx = index_for(&app, &w.data);
    let out = oracle(&app, &w.data, &idx, &w.principals).await;
    let report = out.report();
    println!("{report}");
    assert!(out.failures.is_empty(), "{report}");
    // Not vacuous: both kinds of plan, and reads allowed and refused.
    assert!(out.conditional > 300 && out.denied > 50, "{report}");
    assert!(out.allowed > 10_000, "{report}");
}
