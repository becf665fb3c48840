//! One contract for every store backend, run against a real SQLite file and
//! a real DynamoDB Local.

use std::collections::HashSet;
use std::sync::Arc;

use cedargate::ids::{DocumentId, TenantId};
use cedargate::model::Visibility;
use cedargate::store::{self, Change, Store, StoreError, StoreUrl};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::fixture;

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn did(s: &str) -> DocumentId {
    DocumentId::parse(s).unwrap()
}

async fn contract(store: Arc<dyn Store>) {
    // Tables exist (open ran migrate); migrate again is harmless.
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(store.get_tenant(&tid("t1")).await.unwrap().is_none());
    assert!(store
        .get_document(&tid("t1"), &did("d-priv"))
        .await
        .unwrap()
        .is_none());

    // A document of an unknown tenant is refused.
    let data = fixture();
    let orphan = data.documents[0].clone();
    assert!(matches!(
        store.put_document(&orphan).await,
        Err(StoreError::Invalid(_))
    ));

    // An import that fails its checks writes nothing.
    let mut bad = data.clone();
    bad.documents.push(cedargate::model::Document {
        tenant_id: tid("nobody"),
        ..data.documents[0].clone()
    });
    assert!(matches!(
        store.import(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.get_tenant(&tid("t1")).await.unwrap().is_none());

    let cursor = store.change_cursor().await.unwrap();
    let summary = store.import(&data).await.unwrap();
    assert_eq!((summary.tenants, summary.documents), (7, 8));
    for t in &data.tenants {
        assert_eq!(
            store.get_tenant(&t.tenant_id).await.unwrap().as_ref(),
            Some(t)
        );
    }
    for d in &data.documents {
        let got = store
            .get_document(&d.tenant_id, &d.document_id)
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(d), "{}", d.document_id);
    }
    // Keys are scoped by tenant: t1's document is not t2's.
    assert!(store
        .get_document(&tid("t2"), &did("d-priv"))
        .await
        .unwrap()
        .is_none());
    let mut twin = data.documents[0].clone();
    twin.tenant_id = tid("t2");
    twin.owner_id = cedargate::ids::UserId::parse("mallory").unwrap();
    store.put_document(&twin).await.unwrap();
    let t1 = store
        .get_document(&tid("t1"), &did("d-priv"))
        .await
        .unwrap()
        .unwrap();
    let t2 = store
        .get_document(&tid("t2"), &did("d-priv"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t1.owner_id.as_str(), "alice");
    assert_eq!(t2.owner_id.as_str(), "mallory");

    // Updates replace.
    let mut doc = t1.clone();
    doc.visibility = Visibility::Public;
    doc.deleted_at = Some(chrono::Utc::now());
    store.put_document(&doc).await.unwrap();
    let got = store
        .get_document(&tid("t1"), &did("d-priv"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.visibility, Visibility::Public);
    assert!(got.deleted_at.is_some());
    let mut tenant = data.tenants[0].clone();
    tenant.usage.documents += 1;
    store.put_tenant(&tenant).await.unwrap();
    assert_eq!(store.get_tenant(&tid("t1")).await.unwrap().unwrap(), tenant);

    // Every write is in the change log after the cursor.
    let (changes, next) = store.changes_since(&cursor).await.unwrap();
    let kinds: HashSet<&Change> = changes.iter().map(|(_, c)| c).collect();
    assert!(kinds.contains(&Change::Tenant {
        tenant_id: tid("t1")
    }));
    assert!(kinds.contains(&Change::Document {
        tenant_id: tid("t2"),
        document_id: did("d-priv")
    }));
    assert!(kinds.contains(&Change::Document {
        tenant_id: tid("canc"),
        document_id: did("c-doc")
    }));
    let ids: HashSet<&String> = changes.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), changes.len(), "change ids are unique");
    // From the new cursor on, nothing new until the next write.
    let (again, next) = store.changes_since(&next).await.unwrap();
    assert!(
        again.iter().all(|(id, _)| ids.contains(id)),
        "only changes already seen"
    );
    store.put_tenant(&data.tenants[1]).await.unwrap();
    let (latest, _) = store.changes_since(&next).await.unwrap();
    assert!(latest.iter().any(|(id, c)| !ids.contains(id)
        && *c
            == Change::Tenant {
                tenant_id: tid("t2")
            }));
}

/// Conditional tenant writes: create only if absent, update only from the
/// version read; listing pages through every tenant once.
async fn tenant_versions_contract(store: Arc<dyn Store>) {
    use cedargate::store::{tenant_version, StoreError};
    let t1 = store.get_tenant(&tid("t1")).await.unwrap().unwrap();
    let v1 = tenant_version(&t1);
    let err = store.put_tenant_if(&t1, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let mut changed = t1.clone();
    changed.name = "Renamed".into();
    store.put_tenant_if(&changed, Some(&v1)).await.unwrap();
    // A second writer that read the old version loses.
    let mut other = t1.clone();
    other.name = "Other".into();
    let err = store.put_tenant_if(&other, Some(&v1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let now = store.get_tenant(&tid("t1")).await.unwrap().unwrap();
    assert_eq!(now.name, "Renamed");
    // Usage is the service's: counted atomically, kept by updates, not part
    // of the version.
    let delta = cedargate::store::UsageDelta {
        documents: 2,
        storage_bytes: 1_500_000_000,
        queries: 3,
        month: "2026-11".into(),
    };
    store.add_usage(&tid("t1"), &delta).await.unwrap();
    store.add_usage(&tid("t1"), &delta).await.unwrap();
    let counted = store.get_tenant(&tid("t1")).await.unwrap().unwrap();
    assert_eq!(tenant_version(&counted), tenant_version(&now));
    assert_eq!(counted.usage.documents, now.usage.documents + 4);
    assert_eq!(
        counted.usage.storage_bytes,
        Some(u64::from(now.usage.storage_gb) * 1_000_000_000 + 3_000_000_000)
    );
    assert_eq!(counted.usage.month.as_deref(), Some("2026-11"));
    let mut stale = now.clone();
    stale.name = "Renamed again".into();
    store
        .put_tenant_if(&stale, Some(&tenant_version(&now)))
        .await
        .unwrap();
    let kept = store.get_tenant(&tid("t1")).await.unwrap().unwrap();
    assert_eq!(kept.name, "Renamed again");
    assert_eq!(kept.usage, counted.usage);
    let now = kept;
    store
        .put_tenant_if(&t1, Some(&tenant_version(&now)))
        .await
        .unwrap();
    let mut fresh = t1.clone();
    fresh.tenant_id = tid("brand-new");
    let err = store.put_tenant_if(&fresh, Some(&v1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    store.put_tenant_if(&fresh, None).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = store.list_tenants(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        after = page.last().map(|t| t.tenant_id.clone());
        seen.extend(page.into_iter().map(|t| t.tenant_id.as_str().to_string()));
        if !more {
            break;
        }
    }
    // Storage samples: one per tenant and day, the day's last one kept,
    // months and tenants apart, decision counts of the month untouched.
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    store
        .add_decisions(
            &tid("t1"),
            "2026-11",
            &[("Read".into(), cedargate::authz::Effect::Allow, 4)],
        )
        .await
        .unwrap();
    store
        .put_storage_sample(&tid("t1"), day(3), 5)
        .await
        .unwrap();
    store
        .put_storage_sample(&tid("t1"), day(3), 7)
        .await
        .unwrap();
    store
        .put_storage_sample(&tid("t1"), day(30), 9)
        .await
        .unwrap();
    store
        .put_storage_sample(&tid("t1"), day(1), 1)
        .await
        .unwrap();
    let december = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    store
        .put_storage_sample(&tid("t1"), december, 11)
        .await
        .unwrap();
    store
        .put_storage_sample(&tid("t2"), day(3), 13)
        .await
        .unwrap();
    assert_eq!(
        store.storage_samples(&tid("t1"), "2026-11").await.unwrap(),
        vec![(1, 1), (3, 7), (30, 9)]
    );
    assert_eq!(
        store.storage_samples(&tid("t1"), "2026-12").await.unwrap(),
        vec![(1, 11)]
    );
    assert_eq!(
        store.storage_samples(&tid("t2"), "2026-11").await.unwrap(),
        vec![(3, 13)]
    );
    assert!(store
        .storage_samples(&tid("t1"), "2026-10")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.decisions_in(&tid("t1"), "2026-11").await.unwrap(),
        vec![("Read".to_string(), cedargate::authz::Effect::Allow, 4)]
    );

    seen.sort();
    let mut all: Vec<String> = store
        .raw_tenants()
        .await
        .unwrap()
        .iter()
        .map(|r| r["tenantId"].as_str().unwrap().to_string())
        .collect();
    all.sort();
    assert_eq!(seen, all);
    assert!(seen.contains(&"brand-new".to_string()));
}

/// Audit records: stored once however often written, per tenant, by time,
/// newest first, chains intact.
async fn audit_contract(store: Arc<dyn Store>) {
    use cedargate::audit::{verify, AuditEvent, Chains, Undo};
    use cedargate::store::{AuditCursor, AuditQuery};
    let start = chrono::Utc::now() - chrono::Duration::minutes(10);
    let mut chain = Chains::new("writer-1");
    let mut events = Vec::new();
    for i in 0..40 {
        let mut e = AuditEvent::new(
            format!("ev-{i:03}"),
            start + chrono::Duration::seconds(i),
            if i % 4 == 3 { "t2" } else { "t1" },
            "Read",
            "Document::\"d-priv\"",
            serde_json::json!({"decision": "Allow", "i": i}),
        );
        e.user_id = Some("alice".into());
        chain.stamp(&mut e, &mut Undo::default());
        events.push(e);
    }
    store.put_audit(&events).await.unwrap();
    store.put_audit(&events[..10]).await.unwrap(); // written again after a "crash"
    let end = start + chrono::Duration::minutes(1);
    let query = |t: &str, from, to, limit| AuditQuery::new(tid(t), from, to, limit);
    let t1 = store
        .audit_events(&query("t1", start, end, 1000))
        .await
        .unwrap();
    assert!(t1.next.is_none());
    let t1 = t1.events;
    assert_eq!(t1.len(), 30);
    assert!(t1.iter().all(|e| e.tenant_id == "t1"));
    assert!(
        t1.windows(2).all(|w| w[0].timestamp >= w[1].timestamp),
        "newest first"
    );
    assert_eq!(t1[0].event_id, "ev-038");
    let mut q = query("t1", start, end, 5);
    let page = store.audit_events(&q).await.unwrap();
    let ids: Vec<&str> = page.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["ev-038", "ev-037", "ev-036", "ev-034", "ev-033"]);
    // The cursor goes out as text and comes back.
    let cursor = page.next.expect("more pages").encode();
    q.after = Some(AuditCursor::decode(&cursor).unwrap());
    let page = store.audit_events(&q).await.unwrap();
    let ids: Vec<&str> = page.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["ev-032", "ev-030", "ev-029", "ev-028", "ev-026"]);
    assert!(AuditCursor::decode("zz").is_err());
    assert!(AuditCursor::decode(&hex::encode("no-hash")).is_err());
    // Paging through with small pages meets every record once, in order.
    let seen = paged_ids(store.as_ref(), query("t1", start, end, 7)).await;
    let expected: Vec<String> = t1.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(seen, expected);
    let (lo, hi) = (
        start + chrono::Duration::seconds(10),
        start + chrono::Duration::seconds(19),
    );
    // Seconds 10..=19 hold ten records, three of them t2's.
    assert_eq!(
        store
            .all_audit_events(&query("t1", lo, hi, 2))
            .await
            .unwrap()
            .len(),
        7
    );
    // Records of one instant, paged across the boundary: each once, by
    // event id, the range's end inclusive.
    let instant = start + chrono::Duration::minutes(5);
    let mut same = Vec::new();
    for i in 0..6 {
        let mut e = AuditEvent::new(
            format!("same-{i}"),
            instant,
            "t3",
            "Read",
            "Document::\"d\"",
            serde_json::json!({}),
        );
        chain.stamp(&mut e, &mut Undo::default());
        same.push(e);
    }
    store.put_audit(&same).await.unwrap();
    let seen = paged_ids(store.as_ref(), query("t3", start, instant, 4)).await;
    assert_eq!(
        seen,
        ["same-5", "same-4", "same-3", "same-2", "same-1", "same-0"]
    );
    // Each tenant's records form the writer's intact chain for that tenant.
    let t2 = store
        .all_audit_events(&query("t2", start, end, 3))
        .await
        .unwrap();
    assert_eq!(t2.len(), 10);
    assert!(verify(&t1).is_empty(), "{:?}", verify(&t1));
    assert!(verify(&t2).is_empty(), "{:?}", verify(&t2));
    assert_eq!(t2.iter().map(|e| e.seq).max(), Some(9));
    let all: Vec<AuditEvent> = [t1, t2].concat();
    assert_eq!(all.len(), 40);
    assert_eq!(
        all.iter().find(|e| e.event_id == "ev-005").unwrap(),
        &events[5]
    );
}

#[tokio::test]
async fn sqlite_passes_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&StoreUrl::Sqlite(dir.path().join("c.db")))
        .await
        .unwrap();
    contract(store.clone()).await;
    tenant_versions_contract(store.clone()).await;
    tenant_policies_contract(store.clone()).await;
    audit_contract(store).await;
}

#[tokio::test]
async fn dynamodb_passes_the_store_contract() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let store = store::open(&ddb.url("contract-")).await.unwrap();
    contract(store.clone()).await;
    tenant_versions_contract(store.clone()).await;
    tenant_policies_contract(store.clone()).await;
    audit_contract(store).await;
}

/// Tenant policies: in id order per tenant, conditional writes and
/// deletes by version, a change-log entry for the tenant with each, and no
/// tenant sees another's.
async fn tenant_policies_contract(store: Arc<dyn Store>) {
    use cedargate::ids::PolicyName;
    use cedargate::policy::tenant::{Definition, TenantPolicy};
    store.import(&fixture()).await.unwrap();
    let policy = |tenant: &str, id: &str, text: &str| TenantPolicy {
        tenant_id: tid(tenant),
        policy_id: PolicyName::parse(id).unwrap(),
        definition: Definition::Static {
            statement: text.into(),
        },
        description: Some("d".into()),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        updated_by: Some("ada".into()),
    };
    assert!(store.tenant_policies(&tid("t1")).await.unwrap().is_empty());
    let cursor = store.change_cursor().await.unwrap();
    let b = policy("t1", "b", "permit (principal, action, resource);");
    let a = policy("t1", "a", "forbid (principal, action, resource);");
    store.put_tenant_policy_if(&b, None).await.unwrap();
    store.put_tenant_policy_if(&a, None).await.unwrap();
    store
        .put_tenant_policy_if(
            &policy("t2", "a", "permit (principal, action, resource);"),
            None,
        )
        .await
        .unwrap();
    // Created only if there is none.
    assert!(matches!(
        store.put_tenant_policy_if(&a, None).await,
        Err(StoreError::Conflict(_))
    ));
    let got = store.tenant_policies(&tid("t1")).await.unwrap();
    assert_eq!(got, vec![a.clone(), b.clone()]);
    assert_eq!(store.tenant_policies(&tid("t2")).await.unwrap().len(), 1);
    assert!(store
        .tenant_policies(&tid("nope"))
        .await
        .unwrap()
        .is_empty());
    // Replaced only from the version read.
    let mut b2 = b.clone();
    b2.description = Some("changed".into());
    assert!(matches!(
        store.put_tenant_policy_if(&b2, Some("stale")).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .put_tenant_policy_if(&b2, Some(&b.version()))
        .await
        .unwrap();
    assert!(matches!(
        store.put_tenant_policy_if(&b2, Some(&b.version())).await,
        Err(StoreError::Conflict(_))
    ));
    // Deleted only at the version read; gone is `false`.
    let name = PolicyName::parse("b").unwrap();
    assert!(matches!(
        store
            .delete_tenant_policy_if(&tid("t1"), &name, &b.version())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .delete_tenant_policy_if(&tid("t1"), &name, &b2.version())
        .await
        .unwrap());
    assert!(!store
        .delete_tenant_policy_if(&tid("t1"), &name, &b2.version())
        .await
        .unwrap());
    assert_eq!(store.tenant_policies(&tid("t1")).await.unwrap(), vec![a]);
    // Every write told the change log about its tenant.
    let (changes, _) = store.changes_since(&cursor).await.unwrap();
    let tenants: HashSet<Change> = changes.into_iter().map(|(_, c)| c).collect();
    assert!(tenants.contains(&Change::Tenant {
        tenant_id: tid("t1")
    }));
    assert!(tenants.contains(&Change::Tenant {
        tenant_id: tid("t2")
    }));
}

/// The migration steps on a store holding a tenant written by an older
/// version (no `usage`, no `settings`): dry run, run, rerun, rollback.
async fn migration_contract(store: Arc<dyn Store>) {
    use cedargate::migrations;

    let tenant = fixture().tenants[0].clone();
    store.put_tenant(&tenant).await.unwrap();
    let mut old = serde_json::to_value(&tenant).unwrap();
    let obj = old.as_object_mut().unwrap();
    obj.remove("usage");
    obj.remove("settings");
    store.put_raw_tenant(&old).await.unwrap();
    assert!(matches!(
        store.get_tenant(&tid("t1")).await,
        Err(StoreError::Corrupt(_))
    ));

    let dry = migrations::migrate(store.as_ref(), true).await.unwrap();
    assert!(
        dry.lines
            .iter()
            .any(|l| l.contains("tenant t1: add usage, settings")),
        "{dry:?}"
    );
    assert!(
        store.get_tenant(&tid("t1")).await.is_err(),
        "a dry run writes nothing"
    );
    assert!(store.migrations().await.unwrap().is_empty());

    let run = migrations::migrate(store.as_ref(), false).await.unwrap();
    assert!(
        run.lines.iter().any(|l| l.contains("1 tenant(s) changed")),
        "{run:?}"
    );
    let fixed = store.get_tenant(&tid("t1")).await.unwrap().unwrap();
    assert_eq!(fixed.usage.documents, 0);
    assert_eq!(fixed.settings.data_retention_days, 365);
    let ids: Vec<String> = store
        .migrations()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        [
            "0001-tables",
            "0002-tenant-defaults",
            "0003-audit-filter-indexes",
            "0004-deleted-documents-index",
            "0005-audit-filter-columns"
        ]
    );

    let again = migrations::migrate(store.as_ref(), false).await.unwrap();
    assert!(
        again.lines.iter().all(|l| l.contains("already applied")),
        "{again:?}"
    );

    let back = migrations::rollback(store.as_ref(), "0002-tenant-defaults", false)
        .await
        .unwrap();
    assert!(
        back.lines
            .iter()
            .any(|l| l.contains("tenant t1: remove usage, settings")),
        "{back:?}"
    );
    assert!(store.get_tenant(&tid("t1")).await.is_err());
    assert_eq!(store.migrations().await.unwrap().len(), 4);
    assert!(
        migrations::rollback(store.as_ref(), "0002-tenant-defaults", false)
            .await
            .is_err()
    );

    // Forward again; a value changed after the step is not rolled back.
    migrations::migrate(store.as_ref(), false).await.unwrap();
    let mut t = store.get_tenant(&tid("t1")).await.unwrap().unwrap();
    t.settings.data_retention_days = 30;
    store.put_tenant(&t).await.unwrap();
    migrations::rollback(store.as_ref(), "0002-tenant-defaults", false)
        .await
        .unwrap();
    let raw = store.raw_tenants().await.unwrap();
    let t1 = raw.iter().find(|r| r["tenantId"] == "t1").unwrap();
    assert!(t1.get("usage").is_none());
    assert_eq!(t1["settings"]["dataRetentionDays"], 30);
}

#[tokio::test]
async fn sqlite_migrations_apply_record_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&StoreUrl::Sqlite(dir.path().join("m.db")))
        .await
        .unwrap();
    migration_contract(store).await;
}

#[tokio::test]
async fn dynamodb_migrations_apply_record_and_roll_back() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let store = store::open(&ddb.url("migrate-")).await.unwrap();
    migration_contract(store).await;
}

/// The event ids of every page of `q`, following the cursors.
async fn paged_ids(store: &dyn Store, mut q: cedargate::store::AuditQuery) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = store.audit_events(&q).await.unwrap();
        seen.extend(page.events.into_iter().map(|e| e.event_id));
        match page.next {
            Some(n) => q.after = Some(n),
            None => return seen,
        }
    }
}
