//! The indexes migration steps build (`0003-audit-filter-indexes`,
//! `0004-deleted-documents-index`, `0005-audit-filter-columns`), on a real
//! SQLite file and a real
//! DynamoDB Local: a read answers the same before the index is built,
//! while it is there and after it is dropped; records written before the
//! index existed are found through it; nothing crosses tenants.

use std::sync::Arc;

use cedargate::audit::{AuditEvent, Chains, Undo};
use cedargate::authz::Effect;
use cedargate::ids::{DocumentId, TenantId};
use cedargate::migrations;
use cedargate::store::{self, AuditFilter, AuditQuery, Index, Store, StoreUrl};
use chrono::{DateTime, Duration, Utc};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::fixture;

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const ACTIONS: [&str; 4] = ["Read", "Write", "Share", "UpdateTenant"];

/// Records of two tenants with the same users and actions: decisions
/// (allowed and denied) and management records (no decision), some
/// without a user.
fn records(start: DateTime<Utc>, prefix: &str, n: usize) -> Vec<AuditEvent> {
    let mut chain = Chains::new(format!("writer-{prefix}"));
    (0..n)
        .map(|i| {
            let action = ACTIONS[i % 4];
            let details = if action == "UpdateTenant" {
                serde_json::json!({"kind": "management"})
            } else {
                let d = if i % 3 == 0 { "Deny" } else { "Allow" };
                serde_json::json!({"kind": "decision", "decision": d})
            };
            let mut e = AuditEvent::new(
                format!("{prefix}-{i:04}"),
                start + Duration::milliseconds(i64::try_from(i).unwrap() * 250),
                if i % 5 == 4 { "fy" } else { "fx" },
                action,
                "CedarGate::Document::\"d\"",
                details,
            );
            e.user_id = (i % 7 != 6).then(|| USERS[i % 3].to_string());
            chain.stamp(&mut e, &mut Undo::default());
            e
        })
        .collect()
}

fn filters() -> Vec<AuditFilter> {
    let f = |user: Option<&str>, action: Option<&str>, decision| AuditFilter {
        user: user.map(str::to_string),
        action: action.map(str::to_string),
        decision,
    };
    vec![
        f(Some("alice"), None, None),
        f(Some("nobody"), None, None),
        f(None, Some("Share"), None),
        f(None, Some("UpdateTenant"), None),
        f(None, None, Some(Effect::Deny)),
        f(None, None, Some(Effect::Allow)),
        f(Some("bob"), Some("Write"), None),
        f(Some("carol"), None, Some(Effect::Deny)),
        f(None, Some("Read"), Some(Effect::Allow)),
        f(Some("alice"), Some("Read"), Some(Effect::Deny)),
        f(None, Some("UpdateTenant"), Some(Effect::Deny)),
    ]
}

/// Every page of a query, following cursors (pages may be short).
async fn read_all(store: &dyn Store, mut q: AuditQuery) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let page = store.audit_events(&q).await.unwrap();
        assert!(page.events.len() <= q.limit);
        seen.extend(page.events.into_iter().map(|e| e.event_id));
        match page.next {
            Some(n) => q.after = Some(n),
            None => return seen,
        }
    }
    panic!("the cursors never end");
}

/// Each filter, over the whole range and a window, in pages of 7: exactly
/// the matching records of the tenant, newest first, each once.
async fn filters_answer(store: &dyn Store, all: &[AuditEvent], start: DateTime<Utc>, when: &str) {
    let end = start + Duration::hours(1);
    let windows = [
        (start, end),
        (start + Duration::seconds(20), start + Duration::seconds(60)),
    ];
    for filter in filters() {
        for (from, to) in windows {
            for tenant in ["fx", "fy"] {
                let mut expected: Vec<&AuditEvent> = all
                    .iter()
                    .filter(|e| {
                        e.tenant_id == tenant
                            && e.timestamp >= from
                            && e.timestamp <= to
                            && filter.matches(e)
                    })
                    .collect();
                expected
                    .sort_by(|a, b| (b.timestamp, &b.event_id).cmp(&(a.timestamp, &a.event_id)));
                let expected: Vec<String> = expected.iter().map(|e| e.event_id.clone()).collect();
                let mut q = AuditQuery::new(tid(tenant), from, to, 7);
                q.filter = filter.clone();
                let seen = read_all(store, q).await;
                assert_eq!(seen, expected, "{when}: {tenant} {filter:?} {from}..{to}");
            }
        }
    }
}

async fn audit_index_contract(store: Arc<dyn Store>) {
    let start = Utc::now() - Duration::minutes(30);
    let before = records(start, "old", 700);
    store.put_audit(&before).await.unwrap();
    filters_answer(store.as_ref(), &before, start, "before the index").await;

    // The step through the migration runner, then more records.
    let run = migrations::migrate(store.as_ref(), false).await.unwrap();
    assert!(
        run.lines
            .iter()
            .any(|l| l.starts_with("0003-audit-filter-indexes: index")),
        "{run:?}"
    );
    let after = records(start + Duration::minutes(4), "new", 300);
    store.put_audit(&after).await.unwrap();
    let all = [before, after].concat();
    filters_answer(store.as_ref(), &all, start, "with the index").await;
    // Built again: nothing to do, same answers.
    let again = store.build_index(Index::AuditFilters).await.unwrap();
    assert!(
        again.iter().any(|l| l.contains("already there")),
        "{again:?}"
    );

    let back = migrations::rollback(store.as_ref(), "0003-audit-filter-indexes", false)
        .await
        .unwrap();
    assert!(
        back.lines
            .iter()
            .any(|l| l.contains("dropped") || l.contains("deleted")),
        "{back:?}"
    );
    assert!(!store
        .migrations()
        .await
        .unwrap()
        .iter()
        .any(|(id, _)| id == "0003-audit-filter-indexes"));
    filters_answer(store.as_ref(), &all, start, "after the rollback").await;
}

async fn deleted_ids(store: &dyn Store, tenant: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<DocumentId> = None;
    for _ in 0..10_000 {
        let (docs, next) = store
            .deleted_documents(&tid(tenant), after.as_ref(), limit)
            .await
            .unwrap();
        assert!(docs.len() <= limit);
        for d in docs {
            assert_eq!(d.tenant_id.as_str(), tenant);
            assert!(d.deleted_at.is_some());
            seen.push(d.document_id.to_string());
        }
        match next {
            Some(n) => after = Some(n),
            None => return seen,
        }
    }
    panic!("the cursors never end");
}

/// Writes 40 documents to each of t1 and t2, every third one deleted;
/// says which of each tenant's documents are deleted now, in id order.
async fn seed_documents(store: &dyn Store, prefix: &str) -> (Vec<String>, Vec<String>) {
    let base = fixture().documents[0].clone();
    let already = |t: &str| -> Vec<String> {
        fixture()
            .documents
            .iter()
            .filter(|d| d.tenant_id.as_str() == t && d.deleted_at.is_some())
            .map(|d| d.document_id.to_string())
            .collect()
    };
    let mut deleted = (already("t1"), already("t2"));
    for (tenant, out) in [("t1", &mut deleted.0), ("t2", &mut deleted.1)] {
        for i in 0..40 {
            let mut d = base.clone();
            d.tenant_id = tid(tenant);
            d.document_id = DocumentId::parse(format!("{prefix}-{i:03}")).unwrap();
            if i % 3 == 0 {
                d.deleted_at = Some(Utc::now() - Duration::days(i));
                out.push(d.document_id.to_string());
            }
            store.put_document(&d).await.unwrap();
        }
        out.sort();
    }
    deleted
}

async fn deleted_index_contract(store: Arc<dyn Store>) {
    store.import(&fixture()).await.unwrap();
    let (mut t1, mut t2) = seed_documents(store.as_ref(), "a").await;
    for limit in [1, 4, 100] {
        assert_eq!(deleted_ids(store.as_ref(), "t1", limit).await, t1);
        assert_eq!(deleted_ids(store.as_ref(), "t2", limit).await, t2);
    }
    let built = store.build_index(Index::DeletedDocuments).await.unwrap();
    assert!(built.iter().any(|l| l.contains("created")), "{built:?}");
    let (more, more2) = seed_documents(store.as_ref(), "b").await;
    for (all, more) in [(&mut t1, more), (&mut t2, more2)] {
        all.extend(more);
        all.sort();
        all.dedup();
    }
    for limit in [1, 4, 100] {
        assert_eq!(deleted_ids(store.as_ref(), "t1", limit).await, t1);
    }
    // Restored and purged documents leave the index.
    let restore = DocumentId::parse(t1[0].clone()).unwrap();
    let mut d = store
        .get_document(&tid("t1"), &restore)
        .await
        .unwrap()
        .unwrap();
    d.deleted_at = None;
    store.put_document(&d).await.unwrap();
    let purge = DocumentId::parse(t1[1].clone()).unwrap();
    assert!(store
        .delete_document(&tid("t1"), &purge, None)
        .await
        .unwrap());
    t1.drain(..2);
    assert_eq!(deleted_ids(store.as_ref(), "t1", 3).await, t1);
    assert!(deleted_ids(store.as_ref(), "nobody", 3).await.is_empty());
    let dropped = store.drop_index(Index::DeletedDocuments).await.unwrap();
    assert!(
        dropped
            .iter()
            .any(|l| l.contains("dropped") || l.contains("deleted")),
        "{dropped:?}"
    );
    assert_eq!(deleted_ids(store.as_ref(), "t1", 3).await, t1);
    assert_eq!(deleted_ids(store.as_ref(), "t2", 3).await, t2);
}

#[tokio::test]
async fn sqlite_indexes_answer_like_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&StoreUrl::Sqlite(dir.path().join("i.db")))
        .await
        .unwrap();
    deleted_index_contract(store.clone()).await;
    audit_index_contract(store).await;
}

#[tokio::test]
async fn dynamodb_indexes_answer_like_the_table() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let store = store::open(&ddb.url("idx-")).await.unwrap();
    deleted_index_contract(store.clone()).await;
    audit_index_contract(store).await;
}

/// SQLite reads a filter through its index once built (the query plan
/// says so), and reads the tenant's range without it.
#[test]
fn sqlite_filters_use_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
        migrations::migrate(s.as_ref(), false).await.unwrap();
    });
    let c = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        rows.join("; ")
    };
    let range = "SELECT record FROM audit WHERE tenant_id = 'fx' AND ts >= '0' \
                 AND (ts, event_id) < ('9', '')";
    let order = "ORDER BY ts DESC, event_id DESC LIMIT 8";
    // A new store's audit table has one index for its key and its order.
    let p = plan(&format!("{range} {order}"));
    assert!(p.contains("audit_key"), "{p}");
    assert!(!p.contains("TEMP B-TREE"), "sorted by the index: {p}");
    assert_eq!(
        sqlite_indexes(&c),
        [
            "audit_action",
            "audit_by_expiry",
            "audit_denied",
            "audit_key",
            "audit_unfilled",
            "audit_user"
        ],
        "no primary key index, no separate time index"
    );
    for (condition, index) in [
        ("user_id = 'alice'", "audit_user"),
        ("action = 'Read'", "audit_action"),
        ("decision = 'Deny'", "audit_denied"),
    ] {
        let p = plan(&format!("{range} AND {condition} {order}"));
        assert!(p.contains(index), "{condition}: {p}");
        assert!(!p.contains("TEMP B-TREE"), "sorted by the index: {p}");
    }
    let p = plan(
        "SELECT record FROM documents WHERE tenant_id = 't1' AND deleted_at IS NOT NULL \
         AND document_id > '' ORDER BY document_id LIMIT 3",
    );
    assert!(p.contains("documents_deleted"), "{p}");
}

/// The audit table as versions before the filter columns made it, with
/// the expression indexes `0003-audit-filter-indexes` built then, and the
/// steps up to `0004` recorded.
const EARLIER_AUDIT_TABLE: &str = "
CREATE TABLE audit (
    tenant_id  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    ts         TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX audit_by_time ON audit (tenant_id, ts);
CREATE INDEX audit_by_expiry ON audit (expires_at);
CREATE INDEX audit_by_user ON audit
    (tenant_id, json_extract(record, '$.userId'), ts, event_id);
CREATE INDEX audit_by_action ON audit
    (tenant_id, json_extract(record, '$.action'), ts, event_id);
CREATE INDEX audit_denials ON audit (tenant_id, ts, event_id)
    WHERE json_extract(record, '$.details.decision') = 'Deny';
CREATE TABLE migrations (id TEXT PRIMARY KEY, state TEXT NOT NULL, applied_at TEXT NOT NULL);
INSERT INTO migrations VALUES
    ('0001-tables', '{}', '2026-01-01T00:00:00Z'),
    ('0002-tenant-defaults', '{\"added\":[]}', '2026-01-01T00:00:00Z'),
    ('0003-audit-filter-indexes', '{}', '2026-01-01T00:00:00Z'),
    ('0004-deleted-documents-index', '{}', '2026-01-01T00:00:00Z');
";

/// Inserts records as versions before the filter columns do.
fn insert_as_earlier_version(c: &rusqlite::Connection, events: &[AuditEvent]) {
    for e in events {
        c.execute(
            "INSERT INTO audit (tenant_id, event_id, ts, expires_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                e.tenant_id,
                e.event_id,
                e.timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                e.expires_at,
                serde_json::to_string(e).unwrap()
            ],
        )
        .unwrap();
    }
}

fn sqlite_indexes(c: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' ORDER BY name")
        .unwrap();
    let names = stmt.query_map([], |r| r.get(0)).unwrap();
    names.map(Result::unwrap).collect()
}

/// A store of an earlier version: opened, it gets the filter columns;
/// filters answer the same through the expression indexes, then through the
/// column indexes `0005-audit-filter-columns` builds in their place after
/// filling the older rows (rows an earlier version, still running, inserts
/// after that included), then through the expression indexes again after
/// its rollback; applied again, it has nothing left to fill.
#[tokio::test]
async fn sqlite_store_of_an_earlier_version_moves_to_the_filter_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("earlier.db");
    let start = Utc::now() - Duration::minutes(30);
    let old = records(start, "old", 700);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(EARLIER_AUDIT_TABLE).unwrap();
        insert_as_earlier_version(&c, &old);
    }
    let store = store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
    filters_answer(store.as_ref(), &old, start, "opened, expression indexes").await;

    // An earlier version, still running, inserts more; this one too.
    let c = rusqlite::Connection::open(&path).unwrap();
    let late = records(start + Duration::minutes(3), "late", 100);
    insert_as_earlier_version(&c, &late);
    let unfilled: i64 = c
        .query_row("SELECT count(*) FROM audit WHERE action IS NULL", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(unfilled, 800);
    let new = records(start + Duration::minutes(4), "new", 200);
    store.put_audit(&new).await.unwrap();
    let all = [old.clone(), late, new].concat();
    filters_answer(
        store.as_ref(),
        &all,
        start,
        "mixed rows, expression indexes",
    )
    .await;

    let run = migrations::migrate(store.as_ref(), false).await.unwrap();
    assert!(
        run.lines.iter().any(|l| l
            == "0005-audit-filter-columns: filter columns filled in 800 audit record(s)"),
        "{run:?}"
    );
    assert_eq!(
        sqlite_indexes(&c),
        [
            "audit_action",
            "audit_by_expiry",
            "audit_by_time",
            "audit_denied",
            "audit_unfilled",
            "audit_user",
            "sqlite_autoindex_audit_1"
        ]
    );
    filters_answer(store.as_ref(), &all, start, "column indexes").await;
    // The earlier version, still running, inserts more: a filtered read
    // finds them through the column indexes all the same.
    let later = records(start + Duration::minutes(5), "later", 100);
    insert_as_earlier_version(&c, &later);
    let all = [all, later].concat();
    filters_answer(store.as_ref(), &all, start, "rows of an earlier version").await;
    let unfilled: i64 = c
        .query_row("SELECT count(*) FROM audit WHERE action IS NULL", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(unfilled, 0, "the read filled them");

    migrations::rollback(store.as_ref(), "0005-audit-filter-columns", false)
        .await
        .unwrap();
    assert_eq!(
        sqlite_indexes(&c),
        [
            "audit_by_action",
            "audit_by_expiry",
            "audit_by_time",
            "audit_by_user",
            "audit_denials",
            "sqlite_autoindex_audit_1"
        ]
    );
    filters_answer(store.as_ref(), &all, start, "rolled back").await;

    let again = migrations::migrate(store.as_ref(), false).await.unwrap();
    assert!(
        again
            .lines
            .iter()
            .any(|l| l == "0005-audit-filter-columns: filter columns filled in 0 audit record(s)"),
        "{again:?}"
    );
    assert!(sqlite_indexes(&c).contains(&"audit_denied".to_string()));
    filters_answer(store.as_ref(), &all, start, "applied again").await;
}

/// Records and documents written by a version that predates the index
/// attributes are given them by the step, and found through the indexes.
#[tokio::test]
async fn dynamodb_steps_fill_in_older_items() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let store = store::open(&ddb.url("fill-")).await.unwrap();
    store.import(&fixture()).await.unwrap();
    let start = Utc::now() - Duration::minutes(30);
    let events = records(start, "legacy", 200);
    store.put_audit(&events).await.unwrap();
    let (t1, _) = seed_documents(store.as_ref(), "legacy").await;
    // Strip what the older version did not write.
    let config = cedargate::aws::sdk_config(Some("us-east-1"), Some(&ddb.endpoint())).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let mut stripped = 0;
    for (table, attrs) in [
        ("fill-audit", "REMOVE auditUser, auditAction, auditDenied"),
        ("fill-documents", "REMOVE deletedTenant"),
    ] {
        let items = client
            .scan()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        for item in items {
            let keys: std::collections::HashMap<String, AttributeValue> = item
                .into_iter()
                .filter(|(k, _)| ["pk", "sk", "tenantId", "documentId"].contains(&k.as_str()))
                .filter(|(k, _)| table == "fill-audit" || !["pk", "sk"].contains(&k.as_str()))
                .filter(|(k, _)| table == "fill-documents" || ["pk", "sk"].contains(&k.as_str()))
                .collect();
            client
                .update_item()
                .table_name(table)
                .set_key(Some(keys))
                .update_expression(attrs)
                .send()
                .await
                .unwrap();
            stripped += 1;
        }
    }
    assert!(stripped > 200);
    let run = migrations::migrate(store.as_ref(), false).await.unwrap();
    assert!(
        run.lines
            .iter()
            .any(|l| l.contains("0003-audit-filter-indexes: fill-audit: 200 item(s)")),
        "{run:?}"
    );
    filters_answer(store.as_ref(), &events, start, "filled in").await;
    assert_eq!(deleted_ids(store.as_ref(), "t1", 5).await, t1);
}
