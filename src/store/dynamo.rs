//! The DynamoDB backend (`aws-sdk-dynamodb`). Table layout and reasoning:
//! `docs/dynamodb.md`. Every tenant-scoped key starts with the tenant id;
//! reads are GetItem and Query, never Scan. A write and its change-log entry
//! go in one transaction.

mod indexes;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Put, PutRequest, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use indexes::{add_audit_keys, audit_shard, document_from_item, document_item};

use super::{
    audit_expiry, audit_sort_key, page_of, sortable_time, tenant_version, AuditCursor, AuditPage,
    AuditQuery, Change, ChangeCursor, DynamoUrl, ImportSummary, Index, Store, StoreError,
    UsageDelta,
};
use crate::audit::AuditEvent;
use crate::authz::Effect;
use crate::ids::{DocumentId, PolicyName, TenantId};
use crate::model::{DataSet, Document, Tenant};
use crate::policy::tenant::TenantPolicy;

/// How long change-log entries are kept (TTL).
const CHANGE_RETENTION_SECS: i64 = 2 * 24 * 3600;
/// Followers re-read this far behind their cursor, so a writer whose clock
/// lags a little is not missed (invalidations are idempotent).
const CHANGE_OVERLAP_MICROS: i64 = 5_000_000;
/// DynamoDB's limit of items per TransactWriteItems call.
const TRANSACT_MAX: usize = 100;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tenants: String,
    documents: String,
    changes: String,
    audit: String,
    migrations: String,
    /// Tenants' own policies: `tenantId`, `policyId`, the record and `rev`.
    policies: String,
    /// Decision counts: `tenantId`, `month`, an `n#<action>#<decision>`
    /// number per kind of decision.
    usage: String,
    /// Which indexes reads may use ([`indexes`]).
    built: indexes::BuiltCache,
}

fn err<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let text = DisplayErrorContext(&e).to_string();
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(text)
        }
        _ => StoreError::Backend(text.into()),
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn to_item<T: serde::Serialize>(v: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The attribute holding a tenant item's version ([`tenant_version`]).
const REV: &str = "rev";

fn tenant_item(t: &Tenant) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item = to_item(t)?;
    item.insert(REV.into(), s(&tenant_version(t)));
    Ok(item)
}

fn tenant_from_item(mut item: HashMap<String, AttributeValue>) -> Result<Tenant, StoreError> {
    item.remove(REV);
    from_item(item)
}

fn policy_item(p: &TenantPolicy) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item = to_item(p)?;
    item.insert(REV.into(), s(&p.version()));
    Ok(item)
}

fn from_item<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn day_of(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

impl DynamoStore {
    pub async fn connect(url: &DynamoUrl) -> Result<Self, StoreError> {
        let config = crate::aws::sdk_config(url.region.as_deref(), url.endpoint.as_deref()).await;
        let p = &url.prefix;
        Ok(DynamoStore {
            client: Client::new(&config),
            tenants: format!("{p}tenants"),
            documents: format!("{p}documents"),
            changes: format!("{p}changes"),
            audit: format!("{p}audit"),
            migrations: format!("{p}migrations"),
            policies: format!("{p}policies"),
            usage: format!("{p}usage"),
            built: Default::default(),
        })
    }

    fn change_put(&self, change: &Change) -> Result<TransactWriteItem, StoreError> {
        let micros = chrono::Utc::now().timestamp_micros();
        let mut item = to_item(change)?;
        item.insert("bucket".into(), s(&day_of(micros)));
        item.insert(
            "seq".into(),
            s(&format!("{micros:020}#{}", uuid::Uuid::now_v7())),
        );
        item.insert(
            "expiresAt".into(),
            AttributeValue::N((micros / 1_000_000 + CHANGE_RETENTION_SECS).to_string()),
        );
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.changes)
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )
            .build())
    }

    fn put(
        &self,
        table: &str,
        item: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, StoreError> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )
            .build())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    /// A conditional put of a tenant item and its change-log entry, in one
    /// transaction. `Ok(false)` when the condition did not hold.
    async fn conditional_tenant_put(
        &self,
        put: aws_sdk_dynamodb::types::builders::PutBuilder,
        tenant: &TenantId,
    ) -> Result<bool, StoreError> {
        let put = TransactWriteItem::builder()
            .put(
                put.table_name(&self.tenants)
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )
            .build();
        let change = self.change_put(&Change::Tenant {
            tenant_id: tenant.clone(),
        })?;
        self.transact_if(vec![put, change]).await
    }

    /// A transaction whose conditions may fail: `Ok(false)` when one did.
    async fn transact_if(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_transaction_canceled_exception()
                        && s.to_string().contains("ConditionalCheckFailed")
                }) =>
            {
                Ok(false)
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn table_exists(&self, name: &str) -> Result<bool, StoreError> {
        match self.client.describe_table().table_name(name).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Creates a table (pay per request) if missing, waits until it is
    /// active, and turns on TTL and point-in-time recovery where the
    /// endpoint supports them.
    async fn ensure_table(
        &self,
        name: &str,
        hash: &str,
        range: Option<&str>,
        ttl: Option<&str>,
    ) -> Result<bool, StoreError> {
        let created = if self.table_exists(name).await? {
            false
        } else {
            let mut req = self
                .client
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest);
            for (attr, kind) in [(Some(hash), KeyType::Hash), (range, KeyType::Range)] {
                let Some(attr) = attr else { continue };
                req = req
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(attr)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|e| StoreError::Invalid(e.to_string()))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(attr)
                            .key_type(kind)
                            .build()
                            .map_err(|e| StoreError::Invalid(e.to_string()))?,
                    );
            }
            match req.send().await {
                Ok(_) => true,
                // Created meanwhile by another migrate.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    false
                }
                Err(e) => return Err(err(e)),
            }
        };
        for _ in 0..100 {
            let desc = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(err)?;
            let active = desc
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active);
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(attr) = ttl {
            let spec = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attr)
                .build()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            if let Err(e) = self
                .client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
            {
                // Already enabled is an error for UpdateTimeToLive.
                tracing::debug!(table = name, error = %DisplayErrorContext(&e), "TTL not updated");
            }
        }
        let pitr = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if let Err(e) = self
            .client
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(pitr)
            .send()
            .await
        {
            tracing::debug!(table = name, error = %DisplayErrorContext(&e), "point-in-time recovery not enabled");
        }
        Ok(created)
    }

    /// Every item of a table (maintenance only: migrations).
    async fn scan_all(
        &self,
        table: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            out.extend(resp.items().iter().cloned());
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn query_changes(
        &self,
        bucket: &str,
        after: &str,
    ) -> Result<Vec<(String, Change)>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.changes)
                .key_condition_expression("#b = :b AND #s > :s")
                .expression_attribute_names("#b", "bucket")
                .expression_attribute_names("#s", "seq")
                .expression_attribute_values(":b", s(bucket))
                .expression_attribute_values(":s", s(after))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            for item in resp.items().iter().cloned() {
                let seq = item
                    .get("seq")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                if let Ok(change) = from_item::<Change>(item) {
                    out.push((seq, change));
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

/// Cursor text: `<micros>` of the newest change seen.
fn cursor_micros(c: &ChangeCursor) -> i64 {
    c.0.parse().unwrap_or(0)
}

#[async_trait]
impl Store for DynamoStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.ensure_table(&self.tenants, "tenantId", None, None)
            .await?;
        self.ensure_table(&self.documents, "tenantId", Some("documentId"), None)
            .await?;
        self.ensure_table(&self.changes, "bucket", Some("seq"), Some("expiresAt"))
            .await?;
        self.ensure_table(&self.audit, "pk", Some("sk"), Some("expiresAt"))
            .await?;
        self.ensure_table(&self.migrations, "id", None, None)
            .await?;
        self.ensure_table(&self.usage, "tenantId", Some("month"), None)
            .await?;
        self.ensure_table(&self.policies, "tenantId", Some("policyId"), None)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.tenants)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.tenants)
            .key("tenantId", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        resp.item.map(tenant_from_item).transpose()
    }

    async fn get_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
    ) -> Result<Option<Document>, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.documents)
            .key("tenantId", s(tenant.as_str()))
            .key("documentId", s(id.as_str()))
            .send()
            .await
            .map_err(err)?;
        resp.item.map(document_from_item).transpose()
    }

    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.transact(vec![
            self.put(&self.tenants, tenant_item(tenant)?)?,
            self.change_put(&Change::Tenant {
                tenant_id: tenant.tenant_id.clone(),
            })?,
        ])
        .await
    }

    /// The item carries its version in `rev` (every write path sets it);
    /// the put is conditional on it.
    async fn put_tenant_if(
        &self,
        tenant: &Tenant,
        expected: Option<&str>,
    ) -> Result<(), StoreError> {
        let conflict = || {
            StoreError::Conflict(format!(
                "tenant {} {}",
                tenant.tenant_id,
                if expected.is_some() {
                    "has changed or does not exist"
                } else {
                    "exists"
                }
            ))
        };
        // An update keeps the stored usage (the service counts it): the put
        // is conditional on the version and on the usage it carries over.
        for _ in 0..10 {
            let mut t = tenant.clone();
            let mut put = Put::builder().table_name(&self.tenants);
            match expected {
                None => {
                    put = put.condition_expression("attribute_not_exists(tenantId)");
                }
                Some(v) => {
                    let current = self
                        .client
                        .get_item()
                        .table_name(&self.tenants)
                        .key("tenantId", s(tenant.tenant_id.as_str()))
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(err)?
                        .item
                        .ok_or_else(conflict)?;
                    if current
                        .get(REV)
                        .and_then(|a| a.as_s().ok())
                        .map(String::as_str)
                        != Some(v)
                    {
                        return Err(conflict());
                    }
                    let usage = current.get("usage").cloned();
                    t.usage = tenant_from_item(current)?.usage;
                    put = match usage {
                        Some(u) => put
                            .condition_expression("rev = :rev AND #u = :usage")
                            .expression_attribute_names("#u", "usage")
                            .expression_attribute_values(":usage", u),
                        None => put
                            .condition_expression("rev = :rev AND attribute_not_exists(#u)")
                            .expression_attribute_names("#u", "usage"),
                    }
                    .expression_attribute_values(":rev", s(v));
                }
            }
            if self
                .conditional_tenant_put(put.set_item(Some(tenant_item(&t)?)), &tenant.tenant_id)
                .await?
            {
                return Ok(());
            }
            // A create lost to another; an update may only have lost to a
            // usage count, which the next round reads again.
            if expected.is_none() {
                return Err(conflict());
            }
        }
        Err(StoreError::Unavailable(format!(
            "tenant {} kept changing",
            tenant.tenant_id
        )))
    }

    /// A read-modify-write of the tenant item conditional on the `usage`
    /// it read (retried on a concurrent change), with its change-log entry.
    /// `rev` does not cover `usage`, so it stays as it is.
    async fn add_usage(&self, tenant: &TenantId, delta: &UsageDelta) -> Result<(), StoreError> {
        for _ in 0..10 {
            let resp = self
                .client
                .get_item()
                .table_name(&self.tenants)
                .key("tenantId", s(tenant.as_str()))
                .consistent_read(true)
                .send()
                .await
                .map_err(err)?;
            let Some(item) = resp.item else {
                return Ok(());
            };
            let old_usage = item.get("usage").cloned();
            let mut t = tenant_from_item(item)?;
            delta.apply(&mut t.usage);
            let mut put = Put::builder()
                .table_name(&self.tenants)
                .set_item(Some(tenant_item(&t)?));
            put = match old_usage {
                Some(u) => put
                    .condition_expression("#u = :old")
                    .expression_attribute_names("#u", "usage")
                    .expression_attribute_values(":old", u),
                None => put
                    .condition_expression("attribute_exists(tenantId) AND attribute_not_exists(#u)")
                    .expression_attribute_names("#u", "usage"),
            };
            if self.conditional_tenant_put(put, tenant).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "tenant {tenant} kept changing while its usage was counted"
        )))
    }

    /// One Query on the tenant's partition.
    async fn documents_of(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<(Vec<Document>, bool), StoreError> {
        let start = after.map(|d| {
            HashMap::from([
                ("tenantId".to_string(), s(tenant.as_str())),
                ("documentId".to_string(), s(d.as_str())),
            ])
        });
        let resp = self
            .client
            .query()
            .table_name(&self.documents)
            .key_condition_expression("tenantId = :t")
            .expression_attribute_values(":t", s(tenant.as_str()))
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(err)?;
        let docs = resp
            .items
            .unwrap_or_default()
            .into_iter()
            .map(document_from_item)
            .collect::<Result<Vec<Document>, _>>()?;
        let more = resp.last_evaluated_key.is_some_and(|k| !k.is_empty());
        Ok((docs, more))
    }

    /// One UpdateItem adding each count (`ADD` creates what is missing).
    async fn add_decisions(
        &self,
        tenant: &TenantId,
        month: &str,
        counts: &[(String, Effect, u64)],
    ) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.usage)
            .key("tenantId", s(tenant.as_str()))
            .key("month", s(month));
        let mut adds = Vec::with_capacity(counts.len());
        for (i, (action, decision, n)) in counts.iter().enumerate() {
            adds.push(format!("#a{i} :v{i}"));
            update = update
                .expression_attribute_names(
                    format!("#a{i}"),
                    format!("{COUNT_PREFIX}{action}#{}", decision.as_str()),
                )
                .expression_attribute_values(format!(":v{i}"), AttributeValue::N(n.to_string()));
        }
        update
            .update_expression(format!("ADD {}", adds.join(", ")))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    /// On the month's usage item, as `s#<DD>` (set, not added: the day's
    /// last sample stands).
    async fn put_storage_sample(
        &self,
        tenant: &TenantId,
        day: chrono::NaiveDate,
        bytes: u64,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.usage)
            .key("tenantId", s(tenant.as_str()))
            .key("month", s(&day.format("%Y-%m").to_string()))
            .update_expression("SET #d = :b")
            .expression_attribute_names("#d", format!("{SAMPLE_PREFIX}{}", day.format("%d")))
            .expression_attribute_values(":b", AttributeValue::N(bytes.to_string()))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn storage_samples(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let item = self.usage_item(tenant, month).await?;
        let mut out = Vec::new();
        for (name, value) in item {
            let Some(day) = name.strip_prefix(SAMPLE_PREFIX) else {
                continue;
            };
            let parsed = day
                .parse::<u32>()
                .ok()
                .zip(value.as_n().ok().and_then(|n| n.parse::<u64>().ok()));
            let sample =
                parsed.ok_or_else(|| StoreError::Corrupt(format!("usage attribute {name}")))?;
            out.push(sample);
        }
        out.sort_unstable();
        Ok(out)
    }

    async fn decisions_in(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Vec<(String, Effect, u64)>, StoreError> {
        let item = self.usage_item(tenant, month).await?;
        let mut out = Vec::new();
        for (name, value) in item {
            let Some(rest) = name.strip_prefix(COUNT_PREFIX) else {
                continue;
            };
            let (action, decision) = rest
                .rsplit_once('#')
                .ok_or_else(|| StoreError::Corrupt(format!("usage attribute {name}")))?;
            let decision = match decision {
                "Allow" => Effect::Allow,
                "Deny" => Effect::Deny,
                _ => return Err(StoreError::Corrupt(format!("usage attribute {name}"))),
            };
            let n = value
                .as_n()
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("usage attribute {name}")))?;
            out.push((action.to_string(), decision, n));
        }
        out.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
        Ok(out)
    }

    /// One page of a Scan: the tenants table is small (one item per
    /// tenant) and only platform administrators list it.
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<(Vec<Tenant>, bool), StoreError> {
        let start = after.map(|t| HashMap::from([("tenantId".to_string(), s(t.as_str()))]));
        let resp = self
            .client
            .scan()
            .table_name(&self.tenants)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(err)?;
        let tenants = resp
            .items
            .unwrap_or_default()
            .into_iter()
            .map(tenant_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let more = resp.last_evaluated_key.is_some_and(|k| !k.is_empty());
        Ok((tenants, more))
    }

    async fn tenant_policies(&self, tenant: &TenantId) -> Result<Vec<TenantPolicy>, StoreError> {
        // In sort-key (policy id) order, every page.
        let items = self
            .client
            .query()
            .table_name(&self.policies)
            .key_condition_expression("tenantId = :t")
            .expression_attribute_values(":t", s(tenant.as_str()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(err)?;
        items
            .into_iter()
            .map(|mut item| {
                item.remove(REV);
                from_item::<TenantPolicy>(item)
            })
            .collect()
    }

    async fn put_tenant_policy_if(
        &self,
        policy: &TenantPolicy,
        expected: Option<&str>,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.policies)
            .set_item(Some(policy_item(policy)?));
        let put = match expected {
            None => put.condition_expression("attribute_not_exists(policyId)"),
            Some(v) => put
                .condition_expression("#r = :v")
                .expression_attribute_names("#r", REV)
                .expression_attribute_values(":v", s(v)),
        };
        let put = TransactWriteItem::builder()
            .put(
                put.build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )
            .build();
        let change = self.change_put(&Change::Tenant {
            tenant_id: policy.tenant_id.clone(),
        })?;
        if self.transact_if(vec![put, change]).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(match expected {
                Some(_) => format!("policy {} has changed or does not exist", policy.policy_id),
                None => format!("policy {} exists", policy.policy_id),
            }))
        }
    }

    async fn delete_tenant_policy_if(
        &self,
        tenant: &TenantId,
        policy: &PolicyName,
        expected: &str,
    ) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.policies)
            .key("tenantId", s(tenant.as_str()))
            .key("policyId", s(policy.as_str()))
            .condition_expression("#r = :v")
            .expression_attribute_names("#r", REV)
            .expression_attribute_values(":v", s(expected))
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let delete = TransactWriteItem::builder().delete(delete).build();
        let change = self.change_put(&Change::Tenant {
            tenant_id: tenant.clone(),
        })?;
        if self.transact_if(vec![delete, change]).await? {
            return Ok(true);
        }
        // Which condition failed: gone, or changed.
        let still = self
            .client
            .get_item()
            .table_name(&self.policies)
            .key("tenantId", s(tenant.as_str()))
            .key("policyId", s(policy.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?
            .item
            .is_some();
        if still {
            Err(StoreError::Conflict(format!("policy {policy} has changed")))
        } else {
            Ok(false)
        }
    }

    async fn put_document(&self, document: &Document) -> Result<(), StoreError> {
        if self.get_tenant(&document.tenant_id).await?.is_none() {
            return Err(StoreError::Invalid(format!(
                "unknown tenant {}",
                document.tenant_id
            )));
        }
        self.transact(vec![
            self.put(&self.documents, document_item(document)?)?,
            self.change_put(&Change::Document {
                tenant_id: document.tenant_id.clone(),
                document_id: document.document_id.clone(),
            })?,
        ])
        .await
    }

    /// The put is conditional on every attribute of `expected` (and on no
    /// other attribute being there), so any change since the read fails it.
    async fn put_document_if(
        &self,
        document: &Document,
        expected: &Document,
    ) -> Result<(), StoreError> {
        let old = to_item(expected)?;
        let mut put = Put::builder()
            .table_name(&self.documents)
            .set_item(Some(document_item(document)?));
        let mut conditions = Vec::new();
        for (i, (name, value)) in old.into_iter().enumerate() {
            conditions.push(format!("#a{i} = :v{i}"));
            put = put
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value);
        }
        let put = TransactWriteItem::builder()
            .put(
                put.condition_expression(conditions.join(" AND "))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )
            .build();
        let change = self.change_put(&Change::Document {
            tenant_id: document.tenant_id.clone(),
            document_id: document.document_id.clone(),
        })?;
        if self.transact_if(vec![put, change]).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "document {} changed since it was read",
                expected.document_id
            )))
        }
    }

    async fn delete_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
        if_deleted_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let mut delete = Delete::builder()
            .table_name(&self.documents)
            .key("tenantId", s(tenant.as_str()))
            .key("documentId", s(id.as_str()));
        delete = match if_deleted_at {
            // The attribute as serde wrote it when the document was put.
            Some(at) => {
                let at = serde_json::to_value(at)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                delete
                    .condition_expression("#d = :at")
                    .expression_attribute_names("#d", "deletedAt")
                    .expression_attribute_values(":at", s(&at))
            }
            None => delete.condition_expression("attribute_exists(documentId)"),
        };
        let delete = TransactWriteItem::builder()
            .delete(
                delete
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )
            .build();
        let change = self.change_put(&Change::Document {
            tenant_id: tenant.clone(),
            document_id: id.clone(),
        })?;
        self.transact_if(vec![delete, change]).await
    }

    async fn expire_audit(&self, _now: DateTime<Utc>) -> Result<u64, StoreError> {
        // The audit table's TTL attribute (`expiresAt`) lets DynamoDB delete
        // expired records itself.
        Ok(0)
    }

    /// Checked completely first; then written in transactions of up to 100
    /// items (DynamoDB's limit), tenants before their documents. A failure
    /// part-way leaves a prefix written; importing the same file again
    /// converges (every write is an idempotent put).
    async fn import(&self, data: &DataSet) -> Result<ImportSummary, StoreError> {
        let in_file: HashSet<&TenantId> = data.tenants.iter().map(|t| &t.tenant_id).collect();
        let unknown: BTreeSet<&TenantId> = data
            .documents
            .iter()
            .map(|d| &d.tenant_id)
            .chain(data.policies.iter().map(|p| &p.tenant_id))
            .filter(|t| !in_file.contains(t))
            .collect();
        let mut known = HashSet::new();
        for t in unknown {
            if self.get_tenant(t).await?.is_some() {
                known.insert(t.clone());
            }
        }
        data.check(|t| known.contains(t))
            .map_err(StoreError::Invalid)?;
        // Records go out in transactions of a record and its change-log
        // entry each, eight transactions in flight, taken from a shared
        // queue and built as they are sent (memory: the data set, not its
        // items). The import is idempotent, so the order they land in does
        // not matter.
        enum Record<'a> {
            Tenant(&'a Tenant),
            Document(&'a Document),
            Policy(&'a TenantPolicy),
        }
        let records = data
            .tenants
            .iter()
            .map(Record::Tenant)
            .chain(data.documents.iter().map(Record::Document))
            .chain(data.policies.iter().map(Record::Policy));
        let queue = parking_lot::Mutex::new(records);
        let lane = || async {
            loop {
                let batch: Vec<_> = queue.lock().by_ref().take(TRANSACT_MAX / 2).collect();
                if batch.is_empty() {
                    return Ok::<(), StoreError>(());
                }
                let mut items = Vec::with_capacity(2 * batch.len());
                for record in batch {
                    match record {
                        Record::Tenant(t) => {
                            items.push(self.put(&self.tenants, tenant_item(t)?)?);
                            items.push(self.change_put(&Change::Tenant {
                                tenant_id: t.tenant_id.clone(),
                            })?);
                        }
                        Record::Policy(p) => {
                            items.push(self.put(&self.policies, policy_item(p)?)?);
                            items.push(self.change_put(&Change::Tenant {
                                tenant_id: p.tenant_id.clone(),
                            })?);
                        }
                        Record::Document(d) => {
                            items.push(self.put(&self.documents, document_item(d)?)?);
                            items.push(self.change_put(&Change::Document {
                                tenant_id: d.tenant_id.clone(),
                                document_id: d.document_id.clone(),
                            })?);
                        }
                    }
                }
                self.transact(items).await?;
            }
        };
        tokio::try_join!(
            lane(),
            lane(),
            lane(),
            lane(),
            lane(),
            lane(),
            lane(),
            lane()
        )?;
        Ok(ImportSummary {
            tenants: data.tenants.len(),
            documents: data.documents.len(),
        })
    }

    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        Ok(ChangeCursor(
            chrono::Utc::now().timestamp_micros().to_string(),
        ))
    }

    async fn changes_since(
        &self,
        cursor: &ChangeCursor,
    ) -> Result<(Vec<(String, Change)>, ChangeCursor), StoreError> {
        let from = cursor_micros(cursor) - CHANGE_OVERLAP_MICROS;
        let now = chrono::Utc::now().timestamp_micros();
        let mut buckets = vec![day_of(from)];
        if day_of(now) != buckets[0] {
            buckets.push(day_of(now));
        }
        let mut seen = Vec::new();
        for b in &buckets {
            seen.extend(self.query_changes(b, &format!("{from:020}")).await?);
        }
        let newest = seen
            .iter()
            .filter_map(|(seq, _)| seq.split('#').next()?.parse::<i64>().ok())
            .max()
            .unwrap_or(cursor_micros(cursor))
            .max(cursor_micros(cursor));
        Ok((seen, ChangeCursor(newest.to_string())))
    }

    async fn migrations(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        // A handful of items: the table holds one per migration step (and
        // the index markers, which are the store's own).
        let mut out: Vec<(String, serde_json::Value)> = self
            .scan_all(&self.migrations)
            .await?
            .into_iter()
            .filter(|item| {
                item.get("id")
                    .and_then(|v| v.as_s().ok())
                    .is_none_or(|id| !id.starts_with(indexes::MARKER_PREFIX))
            })
            .map(|item| {
                let id = item
                    .get("id")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let state = item
                    .get("state")
                    .and_then(|v| v.as_s().ok())
                    .map(|s| serde_json::from_str(s).unwrap_or(serde_json::Value::Null))
                    .unwrap_or(serde_json::Value::Null);
                (id, state)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn record_migration(
        &self,
        id: &str,
        state: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        match state {
            Some(state) => {
                self.client
                    .put_item()
                    .table_name(&self.migrations)
                    .item("id", s(id))
                    .item("state", s(&state.to_string()))
                    .item("appliedAt", s(&chrono::Utc::now().to_rfc3339()))
                    .send()
                    .await
                    .map_err(err)?;
            }
            None => {
                self.client
                    .delete_item()
                    .table_name(&self.migrations)
                    .key("id", s(id))
                    .send()
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// A Scan: maintenance only (migrations), never on a request path.
    async fn raw_tenants(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        self.scan_all(&self.tenants)
            .await?
            .into_iter()
            .map(|mut item| {
                item.remove(REV);
                from_item::<serde_json::Value>(item)
            })
            .collect()
    }

    async fn put_raw_tenant(&self, record: &serde_json::Value) -> Result<(), StoreError> {
        let id = super::raw_tenant_id(record)?;
        // Written as given; its version is that of the tenant it reads as.
        let mut item = to_item(record)?;
        if let Ok(t) = serde_json::from_value::<Tenant>(record.clone()) {
            item.insert(REV.into(), s(&tenant_version(&t)));
        }
        self.transact(vec![
            self.put(&self.tenants, item)?,
            self.change_put(&Change::Tenant { tenant_id: id })?,
        ])
        .await
    }

    /// BatchWriteItem, 25 items at a time and up to
    /// [`AUDIT_WRITE_CONCURRENCY`] calls at once, retrying unprocessed items
    /// with backoff. Keys are derived from the record, so a retry or a second
    /// drain overwrites rather than duplicates.
    async fn put_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut batches = Vec::new();
        for chunk in events.chunks(BATCH_WRITE_MAX) {
            let mut requests = Vec::with_capacity(chunk.len());
            for e in chunk {
                let mut item = to_item(e)?;
                item.insert("pk".into(), s(&audit_pk(&e.tenant_id, &e.event_id)));
                item.insert("sk".into(), s(&audit_sort_key(e)));
                item.insert(
                    "expiresAt".into(),
                    AttributeValue::N(audit_expiry(e).to_string()),
                );
                add_audit_keys(e, &mut item);
                requests.push(
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .map_err(|e| StoreError::Invalid(e.to_string()))?,
                        )
                        .build(),
                );
            }
            batches.push(requests);
        }
        let mut running = tokio::task::JoinSet::new();
        let mut result = Ok(());
        for requests in batches {
            if running.len() >= AUDIT_WRITE_CONCURRENCY {
                if let Some(done) = running.join_next().await {
                    result = result.and(flatten(done));
                }
            }
            running.spawn(batch_write(
                self.client.clone(),
                self.audit.clone(),
                requests,
            ));
        }
        while let Some(done) = running.join_next().await {
            result = result.and(flatten(done));
        }
        result
    }

    /// Each shard read to its end, merged.
    async fn all_audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let lo = sortable_time(q.from);
        let hi = format!("{}#\u{10FFFF}", sortable_time(q.to));
        let mut all: Vec<(String, AuditEvent)> = Vec::new();
        for shard in 0..AUDIT_SHARDS {
            let mut start = None;
            loop {
                let resp = self
                    .client
                    .query()
                    .table_name(&self.audit)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":pk", s(&format!("{}#{shard}", q.tenant)))
                    .expression_attribute_values(":lo", s(&lo))
                    .expression_attribute_values(":hi", s(&hi))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(err)?;
                for mut item in resp.items().iter().cloned() {
                    let Some(AttributeValue::S(sk)) = item.remove("sk") else {
                        return Err(StoreError::Corrupt("audit item without sk".into()));
                    };
                    let e = from_item::<AuditEvent>(item)?;
                    if q.filter.matches(&e) {
                        all.push((sk, e));
                    }
                }
                match resp.last_evaluated_key() {
                    Some(k) if !k.is_empty() => start = Some(k.clone()),
                    _ => break,
                }
            }
        }
        all.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(all.into_iter().map(|(_, e)| e).collect())
    }

    /// One Query per shard, each newest first, merged. A filter reads the
    /// index of its most selective condition (user, action, denials) once
    /// built; what the key does not answer is a FilterExpression.
    async fn audit_events(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let indexed = !q.filter.is_empty() && self.built().await.audit_filters;
        match self.audit_page(q, indexed).await {
            Err(e) if indexed => {
                // Dropped since the markers were read: read the table.
                tracing::warn!(error = %e, "audit index read failed; reading the table");
                self.forget_built();
                self.audit_page(q, false).await
            }
            page => page,
        }
    }

    async fn build_index(&self, index: Index) -> Result<Vec<String>, StoreError> {
        match index {
            Index::AuditFilterColumns => Ok(vec![ON_ATTRIBUTES.into()]),
            _ => self.build(index).await,
        }
    }

    async fn drop_index(&self, index: Index) -> Result<Vec<String>, StoreError> {
        match index {
            Index::AuditFilterColumns => Ok(vec![ON_ATTRIBUTES.into()]),
            _ => self.drop(index).await,
        }
    }

    async fn deleted_documents(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<DocumentId>), StoreError> {
        if self.built().await.deleted_documents {
            match self.deleted_page(tenant, after, limit, true).await {
                Err(e) => {
                    tracing::warn!(error = %e, "deleted-documents index read failed; reading the table");
                    self.forget_built();
                }
                page => return page,
            }
        }
        self.deleted_page(tenant, after, limit, false).await
    }
}

/// What `0005-audit-filter-columns` does here.
const ON_ATTRIBUTES: &str = "nothing to do: the audit filter indexes are on attributes already";

/// Which records an audit read goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Table,
    User,
    Action,
    Denials,
}

impl DynamoStore {
    /// A tenant's usage item of a month (decision counts and storage
    /// samples); empty when there is none.
    async fn usage_item(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.usage)
            .key("tenantId", s(tenant.as_str()))
            .key("month", s(month))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?
            .item
            .unwrap_or_default())
    }
}

impl DynamoStore {
    async fn audit_page(&self, q: &AuditQuery, indexed: bool) -> Result<AuditPage, StoreError> {
        let f = &q.filter;
        let via = match (indexed, &f.user, &f.action, f.decision) {
            (false, ..) => Via::Table,
            (true, Some(_), ..) => Via::User,
            (true, None, Some(_), _) => Via::Action,
            (true, None, None, Some(Effect::Deny)) => Via::Denials,
            (true, ..) => Via::Table,
        };
        let (index, key_attr) = match via {
            Via::Table => (None, "pk"),
            Via::User => (Some(indexes::AUDIT_BY_USER), indexes::USER_KEY),
            Via::Action => (Some(indexes::AUDIT_BY_ACTION), indexes::ACTION_KEY),
            Via::Denials => (Some(indexes::AUDIT_DENIALS), indexes::DENIED_KEY),
        };
        // The conditions the key does not answer.
        let mut conditions = Vec::new();
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        if let (Some(u), false) = (&f.user, via == Via::User) {
            conditions.push("#user = :user");
            names.insert("#user".to_string(), "userId".to_string());
            values.insert(":user".to_string(), s(u));
        }
        if let (Some(a), false) = (&f.action, via == Via::Action) {
            conditions.push("#act = :act");
            names.insert("#act".to_string(), "action".to_string());
            values.insert(":act".to_string(), s(a));
        }
        if let (Some(d), false) = (f.decision, via == Via::Denials) {
            conditions.push("#details.#dec = :dec");
            names.insert("#details".to_string(), "details".to_string());
            names.insert("#dec".to_string(), "decision".to_string());
            values.insert(":dec".to_string(), s(d.as_str()));
        }
        let filtered = !conditions.is_empty();
        let lo = sortable_time(q.from);
        let top = format!("{}#\u{10FFFF}", sortable_time(q.to));
        let hi = match &q.after {
            Some(cur) if cur.key() < top.as_str() => cur.key().to_string(),
            _ => top,
        };
        let want = q.limit.saturating_add(1);
        let mut all: Vec<(String, AuditEvent)> = Vec::new();
        // Per shard that stopped before its end, the last key it read:
        // below the highest of them, not every shard has been read.
        let mut boundary: Option<String> = None;
        for shard in 0..AUDIT_SHARDS {
            let tenant = &q.tenant;
            let key = match via {
                Via::Table | Via::Denials => format!("{tenant}#{shard}"),
                Via::User => format!("{tenant}#{shard}#{}", f.user.as_deref().unwrap_or("")),
                Via::Action => format!("{tenant}#{shard}#{}", f.action.as_deref().unwrap_or("")),
            };
            let mut start = None;
            let mut got = 0usize;
            loop {
                let mut query = self
                    .client
                    .query()
                    .table_name(&self.audit)
                    .set_index_name(index.map(str::to_string))
                    .key_condition_expression("#k = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_names("#k", key_attr)
                    .expression_attribute_values(":pk", s(&key))
                    .expression_attribute_values(":lo", s(&lo))
                    .expression_attribute_values(":hi", s(&hi))
                    .scan_index_forward(false)
                    .set_exclusive_start_key(start);
                query = if filtered {
                    // Limit counts the items read, not those that match:
                    // one call of up to 1,000 per shard and page.
                    let mut query = query
                        .filter_expression(conditions.join(" AND "))
                        .limit(1000);
                    for (k, v) in &names {
                        query = query.expression_attribute_names(k, v);
                    }
                    for (k, v) in &values {
                        query = query.expression_attribute_values(k, v.clone());
                    }
                    query
                } else {
                    query.limit(i32::try_from(want.min(1000)).unwrap_or(1000))
                };
                let resp = query.send().await.map_err(err)?;
                for mut item in resp.items().iter().cloned() {
                    let sk = match item.remove("sk") {
                        Some(AttributeValue::S(sk)) => sk,
                        _ => return Err(StoreError::Corrupt("audit item without sk".into())),
                    };
                    // BETWEEN is inclusive: the cursor's own record is skipped.
                    if q.after.as_ref().is_some_and(|c| sk.as_str() >= c.key()) {
                        continue;
                    }
                    all.push((sk, from_item::<AuditEvent>(item)?));
                    got += 1;
                }
                let last = resp.last_evaluated_key().filter(|k| !k.is_empty()).cloned();
                match last {
                    Some(k) if got < want && !filtered => start = Some(k),
                    Some(k) => {
                        if let Some(AttributeValue::S(sk)) = k.get("sk") {
                            if boundary.as_ref().is_none_or(|b| sk > b) {
                                boundary = Some(sk.clone());
                            }
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
        if let Some(b) = &boundary {
            all.retain(|(sk, _)| sk >= b);
        }
        all.sort_by(|a, b| b.0.cmp(&a.0));
        all.truncate(want);
        let mut page = page_of(all.into_iter().map(|(_, e)| e).collect(), q.limit);
        if page.next.is_none() {
            page.next = boundary.map(AuditCursor::from_key);
        }
        Ok(page)
    }

    /// One page of a tenant's deleted documents: through the sparse index,
    /// or (before it is built) the tenant's documents with a filter.
    async fn deleted_page(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
        indexed: bool,
    ) -> Result<(Vec<Document>, Option<DocumentId>), StoreError> {
        let start = after.map(|d| {
            let mut key = HashMap::from([
                ("tenantId".to_string(), s(tenant.as_str())),
                ("documentId".to_string(), s(d.as_str())),
            ]);
            if indexed {
                key.insert(indexes::DELETED_KEY.to_string(), s(tenant.as_str()));
            }
            key
        });
        let query = self
            .client
            .query()
            .table_name(&self.documents)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .set_exclusive_start_key(start)
            .expression_attribute_values(":t", s(tenant.as_str()));
        let query = if indexed {
            query
                .index_name(indexes::DELETED_DOCUMENTS)
                .key_condition_expression("#k = :t")
                .expression_attribute_names("#k", indexes::DELETED_KEY)
        } else {
            query
                .key_condition_expression("tenantId = :t")
                .filter_expression("attribute_type(#d, :str)")
                .expression_attribute_names("#d", "deletedAt")
                .expression_attribute_values(":str", s("S"))
        };
        let resp = query.send().await.map_err(err)?;
        let docs = resp
            .items
            .unwrap_or_default()
            .into_iter()
            .map(document_from_item)
            .collect::<Result<Vec<Document>, _>>()?;
        let next = match resp.last_evaluated_key {
            Some(k) if !k.is_empty() => match k.get("documentId") {
                Some(AttributeValue::S(id)) => Some(
                    DocumentId::parse(id.as_str())
                        .map_err(|e| StoreError::Corrupt(format!("document id: {e}")))?,
                ),
                _ => return Err(StoreError::Corrupt("page key without documentId".into())),
            },
            _ => None,
        };
        Ok((docs, next))
    }
}

/// BatchWriteItem calls one `put_audit` makes at once.
const AUDIT_WRITE_CONCURRENCY: usize = 8;

fn flatten(r: Result<Result<(), StoreError>, tokio::task::JoinError>) -> Result<(), StoreError> {
    r.unwrap_or_else(|e| Err(StoreError::Unavailable(format!("audit write task: {e}"))))
}

/// One BatchWriteItem of up to 25 puts, unprocessed items retried with
/// backoff.
async fn batch_write(
    client: Client,
    table: String,
    requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    let mut pending = HashMap::from([(table, requests)]);
    let mut delay = Duration::from_millis(25);
    for attempt in 0.. {
        let resp = client
            .batch_write_item()
            .set_request_items(Some(pending))
            .send()
            .await
            .map_err(err)?;
        match resp.unprocessed_items {
            Some(left) if left.values().any(|v| !v.is_empty()) => {
                if attempt >= 8 {
                    return Err(StoreError::Unavailable(
                        "audit writes still throttled after retries".into(),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                pending = left;
            }
            _ => break,
        }
    }
    Ok(())
}

/// What the decision-count attributes of a usage item start with.
const COUNT_PREFIX: &str = "n#";

/// Storage samples on a month's usage item: `s#<DD>` = bytes that day.
const SAMPLE_PREFIX: &str = "s#";

/// Audit partitions per tenant: one busy tenant's writes spread over this
/// many partitions (docs/dynamodb.md).
pub const AUDIT_SHARDS: u32 = 8;
/// DynamoDB's limit of items per BatchWriteItem call.
const BATCH_WRITE_MAX: usize = 25;

/// `tenant#shard`, the shard chosen from the event id so that writing the
/// same record again hits the same key.
fn audit_pk(tenant: &str, event_id: &str) -> String {
    format!("{tenant}#{}", audit_shard(event_id))
}
