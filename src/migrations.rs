//! Versioned migration steps, recorded in the store as they are applied.
//! Each step is idempotent and resumable (a run stopped part-way and run
//! again finishes the job), can be dry-run, and can be rolled back.
//!
//! 1. `0001-tables`: the tables (DynamoDB: also TTL and point-in-time
//!    recovery). Rolling it back only forgets it: tables are never dropped.
//! 2. `0002-tenant-defaults`: tenants stored without the seed's `usage` or
//!    `settings` get the defaults. Its record lists what it added, so a
//!    rollback removes exactly that (unless the value changed since).
//! 3. `0003-audit-filter-indexes`: a tenant's audit records by user, by
//!    action and its denials (sparse), so the audit-log filters read what
//!    they return. SQLite: indexes on the audit table's filter columns,
//!    the older rows given them first (earlier versions built expression
//!    indexes on the records' JSON here); DynamoDB: three global secondary
//!    indexes, the older records given their keys.
//!    Rollback drops the indexes; filtered reads go back to reading the
//!    range.
//! 4. `0004-deleted-documents-index`: a sparse index of soft-deleted
//!    documents, so retention reads the deleted documents only. Rollback
//!    drops it.
//! 5. `0005-audit-filter-columns`: SQLite: the audit filter indexes on
//!    columns the drain fills from each record, in place of the expression
//!    indexes over its JSON that `0003` built before (every insert parsed
//!    the record for them); the rows written before the columns get them
//!    first. Rollback puts the expression indexes back. DynamoDB: nothing
//!    to do (its indexes are on attributes).

use serde_json::{json, Value};

use crate::store::{raw_tenant_id, Index, Store, StoreError};

pub const STEPS: &[(&str, &str)] = &[
    (
        "0001-tables",
        "create the tables (and TTL, point-in-time recovery)",
    ),
    (
        "0002-tenant-defaults",
        "give tenants without usage or settings the seed's defaults",
    ),
    (
        "0003-audit-filter-indexes",
        "index audit records by user, by action and denials",
    ),
    (
        "0004-deleted-documents-index",
        "index soft-deleted documents (sparse)",
    ),
    (
        "0005-audit-filter-columns",
        "index audit records' filter fields as columns, not JSON expressions",
    ),
];

/// The index a step builds, if it is an index step.
fn index_of(step: &str) -> Option<Index> {
    match step {
        "0003-audit-filter-indexes" => Some(Index::AuditFilters),
        "0004-deleted-documents-index" => Some(Index::DeletedDocuments),
        "0005-audit-filter-columns" => Some(Index::AuditFilterColumns),
        _ => None,
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
}

impl Report {
    fn say(&mut self, line: String) {
        self.lines.push(line);
    }
}

fn default_usage() -> Value {
    json!({"documents": 0, "users": 0, "storageGB": 0, "queriesThisMonth": 0})
}

fn default_settings() -> Value {
    json!({"dataRetentionDays": 365, "allowedFileTypes": []})
}

fn defaults() -> [(&'static str, Value); 2] {
    [("usage", default_usage()), ("settings", default_settings())]
}

/// Applies every step not yet recorded, in order.
pub async fn migrate(store: &dyn Store, dry_run: bool) -> Result<Report, StoreError> {
    let mut report = Report::default();
    if dry_run {
        report.say("dry run: nothing is written".into());
    } else {
        store.migrate().await?;
    }
    let applied: Vec<String> = match store.migrations().await {
        Ok(m) => m.into_iter().map(|(id, _)| id).collect(),
        // Dry run against a store without tables: nothing applied yet.
        Err(_) if dry_run => Vec::new(),
        Err(e) => return Err(e),
    };
    for (id, what) in STEPS {
        if applied.iter().any(|a| a == id) {
            report.say(format!("{id}: already applied"));
            continue;
        }
        match *id {
            "0001-tables" => {
                report.say(format!("{id}: {what}"));
                if !dry_run {
                    store.record_migration(id, Some(&json!({}))).await?;
                }
            }
            "0002-tenant-defaults" => tenant_defaults(store, id, dry_run, &mut report).await?,
            step => {
                let Some(index) = index_of(step) else {
                    continue;
                };
                report.say(format!("{id}: {what}"));
                if !dry_run {
                    for line in store.build_index(index).await? {
                        report.say(format!("{id}: {line}"));
                    }
                    store.record_migration(id, Some(&json!({}))).await?;
                }
            }
        }
    }
    Ok(report)
}

async fn tenant_defaults(
    store: &dyn Store,
    id: &str,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), StoreError> {
    let tenants = match store.raw_tenants().await {
        Ok(t) => t,
        Err(_) if dry_run => Vec::new(),
        Err(e) => return Err(e),
    };
    // What earlier, interrupted runs added is kept in the record as they go.
    let mut added: Vec<Value> = Vec::new();
    let mut changed = 0;
    for mut record in tenants {
        let tenant = raw_tenant_id(&record)?;
        let Some(obj) = record.as_object_mut() else {
            continue;
        };
        let missing: Vec<&str> = defaults()
            .iter()
            .filter(|(field, _)| !obj.contains_key(*field))
            .map(|(field, _)| *field)
            .collect();
        if missing.is_empty() {
            continue;
        }
        changed += 1;
        report.say(format!("{id}: tenant {tenant}: add {}", missing.join(", ")));
        if dry_run {
            continue;
        }
        for (field, value) in defaults() {
            if missing.contains(&field) {
                obj.insert(field.to_string(), value);
            }
        }
        store.put_raw_tenant(&record).await?;
        added.push(json!({"tenantId": tenant.as_str(), "fields": missing}));
        // Progress is recorded under a separate id until the step is done.
        store
            .record_migration(&format!("{id}.partial"), Some(&json!({"added": added})))
            .await?;
    }
    report.say(format!(
        "{id}: {changed} tenant(s) {}",
        if dry_run { "to change" } else { "changed" }
    ));
    if !dry_run {
        let mut all = partial(store, id).await?;
        all.extend(added);
        store
            .record_migration(id, Some(&json!({"added": all})))
            .await?;
        store
            .record_migration(&format!("{id}.partial"), None)
            .await?;
    }
    Ok(())
}

/// What an interrupted run of `id` had added.
async fn partial(store: &dyn Store, id: &str) -> Result<Vec<Value>, StoreError> {
    let key = format!("{id}.partial");
    Ok(store
        .migrations()
        .await?
        .into_iter()
        .find(|(m, _)| *m == key)
        .and_then(|(_, state)| state.get("added").and_then(Value::as_array).cloned())
        .unwrap_or_default())
}

/// Rolls back one applied step.
pub async fn rollback(store: &dyn Store, id: &str, dry_run: bool) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let Some((_, state)) = store.migrations().await?.into_iter().find(|(m, _)| m == id) else {
        return Err(StoreError::Invalid(format!(
            "migration {id} is not applied"
        )));
    };
    if id == "0002-tenant-defaults" {
        let added = state
            .get("added")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut tenants = store.raw_tenants().await?;
        for entry in added {
            let tenant = entry
                .get("tenantId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let fields: Vec<String> = entry
                .get("fields")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let Some(record) = tenants
                .iter_mut()
                .find(|r| r.get("tenantId").and_then(Value::as_str) == Some(tenant))
            else {
                continue;
            };
            let Some(obj) = record.as_object_mut() else {
                continue;
            };
            let mut removed = Vec::new();
            for (field, default) in defaults() {
                // Only what the step added and nobody changed since.
                if fields.iter().any(|f| f == field) && obj.get(field) == Some(&default) {
                    obj.remove(field);
                    removed.push(field);
                }
            }
            if removed.is_empty() {
                continue;
            }
            report.say(format!(
                "{id}: tenant {tenant}: remove {}",
                removed.join(", ")
            ));
            if !dry_run {
                store.put_raw_tenant(record).await?;
            }
        }
    }
    if let Some(index) = index_of(id) {
        if dry_run && index == Index::AuditFilterColumns {
            report.say(format!(
                "{id}: would put the expression indexes back in place of the column ones"
            ));
        } else if dry_run {
            report.say(format!("{id}: would drop its indexes"));
        } else {
            for line in store.drop_index(index).await? {
                report.say(format!("{id}: {line}"));
            }
        }
    }
    if dry_run {
        report.say(format!("dry run: {id} stays recorded"));
    } else {
        store.record_migration(id, None).await?;
        report.say(format!("{id}: rolled back"));
    }
    Ok(report)
}
