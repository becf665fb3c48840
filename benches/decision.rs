//! The decision path, measured two ways in one run:
//! - `bare_is_authorized/*`: `Authorizer::is_authorized` on a prebuilt
//!   request and prebuilt entities (the floor: Cedar alone), over the whole
//!   policy set and over the slice of it that can apply to the action (what
//!   the engine evaluates);
//! - `engine_decide_warm/*`: the sidecar's whole in-process path (policy
//!   snapshot, cache lookups, entity and context building, evaluation,
//!   decision id, metrics) with a warm cache and the decision cache off;
//! - `engine_decide_remembered/*`: the same with the decision cache on and
//!   the decision already in it.
//!
//! - `plan_warm/*`, `plan_cold/*`: search plans (remembered, and made
//!   from scratch).
//! - `evaluate/*`: one Cedar evaluation as the engine makes it
//!   (`authz::evaluate`), with the shipped policies and with 1,000 more
//!   scoped to other roles, with and without the principal index.
//!
//! - `audit_record/*`: a decision's audit record as the durable path makes
//!   it: built on the request path, then stamped into its writer's chain
//!   and serialized into a spool frame's bytes, and dropped; with typed
//!   details (what the sidecar does) and with the same details as a JSON
//!   tree (what it did before; identical bytes). The JSON case converts
//!   the typed details (`serde_json::to_value`), so it pays for the typed
//!   build too: the difference is the tree, its key sort and its drop,
//!   all on one thread (in the server the tree is freed on the appender's
//!   thread, which costs more).
//!
//! `scripts/bench-ratio.py` prints the ratio of the two from criterion's
//! estimates.

use cedar_policy::{Authorizer, Context, Entities, Request};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;

use cedargate::app::App;
use cedargate::audit::{
    decision_event, AuditEvent, Chains, DecisionDetails, DecisionFacts, RequestMeta, Undo,
};
use cedargate::authz::entities::{
    document_entity, document_uid, tenant_entity, user_entity, user_uid, Principal,
};
use cedargate::authz::{AuthzRequest, ResourceRef};
use cedargate::config::Settings;
use cedargate::ids::{DocumentId, PolicyName, RoleName, TenantId, UserId};
use cedargate::model::Level;
use cedargate::policy::tenant::{compile_all, Definition, TenantPolicy};
use cedargate::store::{self, StoreUrl};

fn principal() -> Principal {
    Principal {
        id: UserId::parse("dave").unwrap(),
        tenant: TenantId::parse("acme").unwrap(),
        roles: vec![RoleName::parse("editor").unwrap()],
        clearance: Level::new(1).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::Sqlite(dir.path().join("bench.db"));
    let data = cedargate::demo::data().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = |decision_capacity: usize, residual_capacity: usize| {
        let mut settings =
            Settings::trusted(url.clone(), &root.join("policies"), &root.join("schemas"));
        settings.cache.decision_capacity = decision_capacity;
        settings.cache.residual_capacity = residual_capacity;
        rt.block_on(App::build(settings)).unwrap()
    };
    rt.block_on(async {
        let s = store::open(&url).await.unwrap();
        s.import(&data).await.unwrap();
    });
    // Every request evaluated by Cedar; decided from residual policies;
    // remembered.
    let app = build(0, 0);
    let engine = app.state.engine.clone();
    let residual = build(0, 4_096).state.engine.clone();
    let remembering = build(16_384, 0).state.engine.clone();
    let snapshot = app.policies.load_full();

    // The same question both ways: dave (editor) reads q3-report, shared
    // with the editor role.
    let p = principal();
    let read = AuthzRequest {
        principal: p.clone(),
        action: "Read".into(),
        resource: ResourceRef::Document(DocumentId::parse("q3-report").unwrap()),
        context: serde_json::Value::Null,
    };
    let create = AuthzRequest {
        principal: p.clone(),
        action: "CreateDocument".into(),
        resource: ResourceRef::Tenant(p.tenant.clone()),
        context: json!({"fileType": "pdf", "sizeBytes": 1024}),
    };
    let tenant = data
        .tenants
        .iter()
        .find(|t| t.tenant_id.as_str() == "acme")
        .unwrap();
    let doc = data
        .documents
        .iter()
        .find(|d| d.document_id.as_str() == "q3-report")
        .unwrap();
    let action = &snapshot.actions["Read"];
    let request = Request::new(
        user_uid(&p.id),
        action.uid.clone(),
        document_uid(&doc.document_id),
        Context::empty(),
        None,
    )
    .unwrap();
    let entities = Entities::from_entities(
        [
            user_entity(&p),
            tenant_entity(tenant),
            document_entity(doc),
            action.entity.clone(),
        ],
        None,
    )
    .unwrap();
    let authorizer = Authorizer::new();
    let bare = authorizer.is_authorized(&request, &snapshot.policies, &entities);
    assert_eq!(bare.decision(), cedar_policy::Decision::Allow);

    // Warm the caches and check the paths agree.
    for r in [&read, &create] {
        for e in [&engine, &residual, &remembering] {
            for _ in 0..20 {
                let d = rt.block_on(e.decide(r)).unwrap();
                assert_eq!(d.decision, cedargate::authz::Effect::Allow, "{d:?}");
            }
        }
    }
    assert!(residual.metrics().residuals.decided.get() > 0);
    assert_eq!(engine.metrics().residuals.decided.get(), 0);

    let mut g = c.benchmark_group("decision");
    g.bench_function("bare_is_authorized/full_set", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&request), &snapshot.policies, &entities))
    });
    g.bench_function("bare_is_authorized/action_slice", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&request), &action.policies, &entities))
    });
    g.bench_function("engine_decide_warm/read_document", |b| {
        b.iter(|| rt.block_on(engine.decide(black_box(&read))).unwrap())
    });
    g.bench_function("engine_decide_warm/create_document", |b| {
        b.iter(|| rt.block_on(engine.decide(black_box(&create))).unwrap())
    });
    g.bench_function("engine_decide_residual/read_document", |b| {
        b.iter(|| rt.block_on(residual.decide(black_box(&read))).unwrap())
    });
    g.bench_function("engine_decide_remembered/read_document", |b| {
        b.iter(|| rt.block_on(remembering.decide(black_box(&read))).unwrap())
    });

    // A decision's audit record, made the way the request path and the
    // appender make it, both ways; the same bytes either way.
    let decided = rt.block_on(engine.decide(&read)).unwrap();
    let meta = RequestMeta {
        ip_address: Some("10.0.3.7".into()),
        user_agent: Some("search-api/1.0".into()),
        request_id: Some("req-42".into()),
    };
    let facts = || DecisionFacts {
        source: "authorize",
        latency: std::time::Duration::from_micros(41),
        meta: &meta,
        context_keys: &[],
        extra: None,
    };
    let mut chains = Chains::new("sidecar-bench");
    let mut frame = Vec::with_capacity(4096);
    let as_json = |e: AuditEvent<DecisionDetails>| AuditEvent {
        details: serde_json::to_value(&e.details).unwrap(),
        event_id: e.event_id,
        timestamp: e.timestamp,
        tenant_id: e.tenant_id,
        user_id: e.user_id,
        action: e.action,
        resource: e.resource,
        ip_address: e.ip_address,
        user_agent: e.user_agent,
        success: e.success,
        error_message: e.error_message,
        expires_at: e.expires_at,
        writer_id: e.writer_id,
        seq: e.seq,
        prev_hash: e.prev_hash,
        hash: e.hash,
    };
    let (mut typed, mut json_tree) = (Vec::new(), Vec::new());
    for (out, typed_details) in [(&mut typed, true), (&mut json_tree, false)] {
        let mut c = Chains::new("sidecar-bench");
        let mut e = decision_event(&read, &decided, facts());
        e.timestamp = chrono::DateTime::UNIX_EPOCH;
        if typed_details {
            c.stamp_json(&mut e, &mut Undo::default(), out);
        } else {
            c.stamp_json(&mut as_json(e), &mut Undo::default(), out);
        }
    }
    assert_eq!(typed, json_tree);
    g.bench_function("audit_record/typed_details", |b| {
        b.iter(|| {
            frame.clear();
            let mut e = decision_event(black_box(&read), &decided, facts());
            chains.stamp_json(&mut e, &mut Undo::default(), &mut frame);
            e
        })
    });
    g.bench_function("audit_record/json_details", |b| {
        b.iter(|| {
            frame.clear();
            let mut e = as_json(decision_event(black_box(&read), &decided, facts()));
            chains.stamp_json(&mut e, &mut Undo::default(), &mut frame);
            e
        })
    });

    // Search plans for `Read` on documents: warm (the same principal again,
    // so the plan is remembered) and cold (a fresh planner: partial
    // evaluation, translation, the Kendra, OpenSearch and SQL renderings),
    // for dave and for a principal with 50 roles.
    let null = serde_json::Value::Null;
    let mut many = p.clone();
    many.roles = (0..50)
        .map(|i| RoleName::parse(format!("team-{i:02}")).unwrap())
        .collect();
    for (who, name) in [(&p, "read"), (&many, "read_50_roles")] {
        let plan = rt
            .block_on(app.state.planner.plan(&engine, who, "Read", &null))
            .unwrap();
        let sizes: Vec<String> = [
            ("kendra", plan.kendra.as_ref().map(|f| f.to_string().len())),
            (
                "opensearch",
                plan.opensearch.as_ref().map(|f| f.to_string().len()),
            ),
            (
                "sql",
                plan.sql
                    .as_ref()
                    .map(|f| serde_json::to_string(f).unwrap_or_default().len()),
            ),
        ]
        .iter()
        .map(|(f, n)| format!("{f} {} bytes", (*n).unwrap_or(0)))
        .collect();
        eprintln!("plan {name}: filters {}", sizes.join(", "));
        g.bench_function(format!("plan_warm/{name}"), |b| {
            b.iter(|| {
                rt.block_on(
                    app.state
                        .planner
                        .plan(&engine, black_box(who), "Read", &null),
                )
                .unwrap()
            })
        });
        g.bench_function(format!("plan_cold/{name}"), |b| {
            b.iter(|| {
                let fresh = cedargate::search::Planner::new(Default::default());
                rt.block_on(fresh.plan(&engine, black_box(who), "Read", &null))
                    .unwrap()
            })
        });
    }

    // The shipped set plus 1,000 policies for other roles (the shape that
    // made a decision 41× slower before the principal index).
    let many_dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root.join("policies")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(entry.path(), many_dir.path().join(entry.file_name())).unwrap();
        }
    }
    let generated: String = (0..1_000)
        .map(|i| {
            format!(
                "@id(\"gen.r{i}\")\npermit (principal in CedarGate::Role::\"r{i}\", action == CedarGate::Action::\"Read\", resource is CedarGate::Document)\nwhen {{ resource.classification <= principal.clearance && resource.visibility == \"public\" }};\n"
            )
        })
        .collect();
    std::fs::write(many_dir.path().join("generated.cedar"), generated).unwrap();
    let many_snapshot = cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: many_dir.path().to_path_buf(),
        schema_dir: root.join("schemas"),
    })
    .unwrap();
    let indexed = &many_snapshot.actions["Read"];
    assert!(indexed.index.is_some());
    let mut unindexed = indexed.clone();
    unindexed.index = None;
    let base =
        cedargate::authz::base_entities(action, [tenant_entity(tenant), document_entity(doc)])
            .unwrap();
    // 1,000 tenants with 20 policies each (20,000 tenant policies) beside
    // the shipped set: a tenant's own roles, over the document actions and
    // search. A decision evaluates the global slice and its tenant's slice
    // for the action; the other 19,980 are never looked at.
    let tenants: Vec<TenantId> = (0..1_000)
        .map(|k| TenantId::parse(format!("tp{k:04}")).unwrap())
        .chain([p.tenant.clone()])
        .collect();
    let mixed = ["Read", "Update", "Share", "Delete", "Search"];
    let records = |t: &TenantId, actions: &[&str]| -> Vec<TenantPolicy> {
        (0..20)
            .map(|j| {
                let action = actions[j % actions.len()];
                let resource = if action == "Search" {
                    "CedarGate::Tenant"
                } else {
                    "CedarGate::Document"
                };
                let when = if action == "Search" {
                    "true".to_string()
                } else {
                    format!("resource.classification <= {} && resource.visibility != \"private\"", j % 4)
                };
                TenantPolicy {
                    tenant_id: t.clone(),
                    policy_id: PolicyName::parse(format!("custom-{j}")).unwrap(),
                    definition: Definition::Static {
                        statement: format!(
                            "permit (principal in CedarGate::Role::\"custom-{j}\", action == CedarGate::Action::\"{action}\", resource is {resource}) when {{ {when} }};"
                        ),
                    },
                    description: None,
                    created_at: chrono::Utc::now(),
                    updated_at: chrono::Utc::now(),
                    updated_by: None,
                }
            })
            .collect()
    };
    let started = std::time::Instant::now();
    let all: Vec<_> = tenants
        .iter()
        .map(|t| compile_all(&snapshot, &records(t, &mixed)))
        .collect();
    eprintln!(
        "compiled {} tenant policies of {} tenants in {:?}",
        all.iter().map(|c| c.all.num_of_policies()).sum::<usize>(),
        tenants.len(),
        started.elapsed()
    );
    let own_mixed = compile_all(&snapshot, &records(&p.tenant, &mixed));
    let own_read = compile_all(&snapshot, &records(&p.tenant, &["Read"]));
    let cases = [
        ("evaluate/read_22_policies", &*snapshot, action, None),
        (
            "evaluate/read_1022_policies_indexed",
            &many_snapshot,
            indexed,
            None,
        ),
        (
            "evaluate/read_1022_policies_unindexed",
            &many_snapshot,
            &unindexed,
            None,
        ),
        (
            "evaluate/read_22_plus_20_tenant_mixed",
            &*snapshot,
            action,
            own_mixed.slice("Read"),
        ),
        (
            "evaluate/read_22_plus_20_tenant_all_read",
            &*snapshot,
            action,
            own_read.slice("Read"),
        ),
    ];
    for (name, snap, a, own) in cases {
        let ev = cedargate::authz::evaluate(
            &authorizer,
            snap,
            a,
            &p,
            document_uid(&doc.document_id),
            Context::empty(),
            &base,
            own,
        )
        .unwrap();
        assert_eq!(ev.effect, cedargate::authz::Effect::Allow, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| {
                cedargate::authz::evaluate(
                    &authorizer,
                    snap,
                    a,
                    black_box(&p),
                    document_uid(&doc.document_id),
                    Context::empty(),
                    &base,
                    own,
                )
                .unwrap()
            })
        });
    }
    g.bench_function("tenant_policies/compile_20", |b| {
        let r = records(&p.tenant, &mixed);
        b.iter(|| compile_all(&snapshot, black_box(&r)))
    });
    drop(all);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
