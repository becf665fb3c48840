//! The global secondary indexes migration steps build (docs/dynamodb.md,
//! "Indexes"), the attributes that key them, and whether they can be read.
//!
//! Every write carries the index attributes whether or not the index exists
//! yet, so building one only has to fill in what was written before. Reads
//! use an index only once its step wrote its marker (the index active and
//! filled); until then, and after a rollback, they read the table as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};

use super::{err, from_item, s, to_item, DynamoStore, AUDIT_SHARDS};
use crate::audit::AuditEvent;
use crate::model::Document;
use crate::store::{Index, StoreError};

pub(super) const AUDIT_BY_USER: &str = "auditByUser";
pub(super) const AUDIT_BY_ACTION: &str = "auditByAction";
pub(super) const AUDIT_DENIALS: &str = "auditDenials";
pub(super) const DELETED_DOCUMENTS: &str = "deletedDocuments";

/// `tenant#shard#user`: a user's records, spread like the table's.
pub(super) const USER_KEY: &str = "auditUser";
/// `tenant#shard#action`.
pub(super) const ACTION_KEY: &str = "auditAction";
/// `tenant#shard`, on denials only (sparse).
pub(super) const DENIED_KEY: &str = "auditDenied";
/// The tenant id, on soft-deleted documents only (sparse). A separate
/// attribute: `deletedAt` is stored as NULL on live documents, which an
/// index key cannot be.
pub(super) const DELETED_KEY: &str = "deletedTenant";

/// How long a read trusts what it last learnt of the markers.
const BUILT_TTL: Duration = Duration::from_secs(30);

struct Gsi {
    name: &'static str,
    hash: &'static str,
    range: &'static str,
}

fn gsis(index: Index) -> &'static [Gsi] {
    match index {
        Index::AuditFilters | Index::AuditFilterColumns => &[
            Gsi {
                name: AUDIT_BY_USER,
                hash: USER_KEY,
                range: "sk",
            },
            Gsi {
                name: AUDIT_BY_ACTION,
                hash: ACTION_KEY,
                range: "sk",
            },
            Gsi {
                name: AUDIT_DENIALS,
                hash: DENIED_KEY,
                range: "sk",
            },
        ],
        Index::DeletedDocuments => &[Gsi {
            name: DELETED_DOCUMENTS,
            hash: DELETED_KEY,
            range: "documentId",
        }],
    }
}

/// What the migrations-table items of index markers start with.
pub(super) const MARKER_PREFIX: &str = "index:";

/// The migrations-table item an index's build writes when it is done.
fn marker(index: Index) -> &'static str {
    match index {
        Index::AuditFilters | Index::AuditFilterColumns => "index:audit-filters",
        Index::DeletedDocuments => "index:deleted-documents",
    }
}

/// Which indexes reads may use.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Built {
    pub audit_filters: bool,
    pub deleted_documents: bool,
}

/// What a store last learnt of the markers, and when.
pub(super) type BuiltCache = Arc<parking_lot::Mutex<Option<(Instant, Built)>>>;

/// The shard of a record: its event id's hash, as in the table's key.
pub(super) fn audit_shard(event_id: &str) -> u32 {
    crc32fast::hash(event_id.as_bytes()) % AUDIT_SHARDS
}

/// Adds the audit indexes' key attributes to a record's item.
pub(super) fn add_audit_keys(e: &AuditEvent, item: &mut HashMap<String, AttributeValue>) {
    let (tenant, shard) = (&e.tenant_id, audit_shard(&e.event_id));
    if let Some(user) = &e.user_id {
        item.insert(USER_KEY.into(), s(&format!("{tenant}#{shard}#{user}")));
    }
    item.insert(
        ACTION_KEY.into(),
        s(&format!("{tenant}#{shard}#{}", e.action)),
    );
    if e.details["decision"].as_str() == Some("Deny") {
        item.insert(DENIED_KEY.into(), s(&format!("{tenant}#{shard}")));
    }
}

/// A document's item, with the deleted-documents key when it is deleted.
pub(super) fn document_item(d: &Document) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item = to_item(d)?;
    if d.deleted_at.is_some() {
        item.insert(DELETED_KEY.into(), s(d.tenant_id.as_str()));
    }
    Ok(item)
}

/// A document read back (without the index attribute).
pub(super) fn document_from_item(
    mut item: HashMap<String, AttributeValue>,
) -> Result<Document, StoreError> {
    item.remove(DELETED_KEY);
    from_item(item)
}

impl DynamoStore {
    /// Which indexes are built, from the markers (re-read every
    /// [`BUILT_TTL`]). A failed read counts as none: the reads without
    /// indexes are always right, only slower.
    pub(super) async fn built(&self) -> Built {
        if let Some((at, built)) = *self.built.lock() {
            if at.elapsed() < BUILT_TTL {
                return built;
            }
        }
        let built = match self.markers().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read index markers; reading without indexes");
                Built::default()
            }
        };
        *self.built.lock() = Some((Instant::now(), built));
        built
    }

    /// Forgets what was learnt of the markers (an index read failed, or
    /// this process changed them).
    pub(super) fn forget_built(&self) {
        *self.built.lock() = None;
    }

    async fn markers(&self) -> Result<Built, StoreError> {
        let mut built = Built::default();
        for index in [Index::AuditFilters, Index::DeletedDocuments] {
            let found = self
                .client
                .get_item()
                .table_name(&self.migrations)
                .key("id", s(marker(index)))
                .consistent_read(true)
                .send()
                .await
                .map_err(err)?
                .item
                .is_some();
            match index {
                Index::AuditFilters | Index::AuditFilterColumns => built.audit_filters = found,
                Index::DeletedDocuments => built.deleted_documents = found,
            }
        }
        Ok(built)
    }

    fn table_of(&self, index: Index) -> &str {
        match index {
            Index::AuditFilters | Index::AuditFilterColumns => &self.audit,
            Index::DeletedDocuments => &self.documents,
        }
    }

    /// The status of a table's index, `None` when it has none by that name.
    async fn gsi_status(&self, table: &str, name: &str) -> Result<Option<IndexStatus>, StoreError> {
        let desc = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(err)?;
        Ok(desc
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .find(|g| g.index_name() == Some(name))
            .map(|g| g.index_status().cloned().unwrap_or(IndexStatus::Active)))
    }

    /// Waits until the index is active (`true`) or gone (`false`).
    async fn settle(&self, table: &str, name: &str, until_gone: bool) -> Result<(), StoreError> {
        // Real DynamoDB fills a new index from the table: minutes for a big
        // table. The step can be run again if this gives up.
        for _ in 0..36_000 {
            match self.gsi_status(table, name).await? {
                None if until_gone => return Ok(()),
                Some(IndexStatus::Active) if !until_gone => return Ok(()),
                None => {
                    return Err(StoreError::Unavailable(format!(
                        "index {name} disappeared while it was being created"
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Err(StoreError::Unavailable(format!(
            "index {name} did not settle; run the step again"
        )))
    }

    async fn create_gsi(&self, table: &str, g: &Gsi) -> Result<bool, StoreError> {
        if self.gsi_status(table, g.name).await?.is_some() {
            self.settle(table, g.name, false).await?;
            return Ok(false);
        }
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Invalid(e.to_string());
        let mut definitions = Vec::new();
        let mut schema = Vec::new();
        for (attr, kind) in [(g.hash, KeyType::Hash), (g.range, KeyType::Range)] {
            definitions.push(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(invalid)?,
            );
            schema.push(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(kind)
                    .build()
                    .map_err(invalid)?,
            );
        }
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(g.name)
            .set_key_schema(Some(schema))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(invalid)?;
        let sent = self
            .client
            .update_table()
            .table_name(table)
            .set_attribute_definitions(Some(definitions))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            )
            .send()
            .await;
        match sent {
            Ok(_) => {}
            // Another run is creating it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(err(e)),
        }
        self.settle(table, g.name, false).await?;
        Ok(true)
    }

    async fn delete_gsi(&self, table: &str, g: &Gsi) -> Result<bool, StoreError> {
        if self.gsi_status(table, g.name).await?.is_none() {
            return Ok(false);
        }
        let delete = aws_sdk_dynamodb::types::DeleteGlobalSecondaryIndexAction::builder()
            .index_name(g.name)
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.client
            .update_table()
            .table_name(table)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().delete(delete).build(),
            )
            .send()
            .await
            .map_err(err)?;
        self.settle(table, g.name, true).await?;
        Ok(true)
    }

    /// Gives the items written before the index attributes existed their
    /// attributes: a Scan for the items without them and one UpdateItem
    /// each, eight at a time. Run again, it finds only what is left.
    async fn fill(&self, index: Index) -> Result<u64, StoreError> {
        let table = self.table_of(index).to_string();
        let (missing, key) = match index {
            Index::AuditFilters | Index::AuditFilterColumns => (ACTION_KEY, ["pk", "sk"]),
            Index::DeletedDocuments => (DELETED_KEY, ["tenantId", "documentId"]),
        };
        let mut start = None;
        let mut filled = 0;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .expression_attribute_names("#m", missing);
            scan = match index {
                Index::AuditFilters | Index::AuditFilterColumns => {
                    scan.filter_expression("attribute_not_exists(#m)")
                }
                // `deletedAt` is a string when set, NULL when not.
                Index::DeletedDocuments => scan
                    .filter_expression("attribute_not_exists(#m) AND attribute_type(#d, :str)")
                    .expression_attribute_names("#d", "deletedAt")
                    .expression_attribute_values(":str", s("S")),
            };
            let resp = scan.send().await.map_err(err)?;
            let mut updates = tokio::task::JoinSet::new();
            for item in resp.items() {
                let mut keys = HashMap::new();
                for k in key {
                    if let Some(v) = item.get(k) {
                        keys.insert(k.to_string(), v.clone());
                    }
                }
                let mut update = self
                    .client
                    .update_item()
                    .table_name(&table)
                    .set_key(Some(keys));
                let mut sets = Vec::new();
                match index {
                    Index::AuditFilters | Index::AuditFilterColumns => {
                        let Ok(e) = from_item::<AuditEvent>(item.clone()) else {
                            tracing::warn!("an audit item that is not a record is left unindexed");
                            continue;
                        };
                        let mut attrs = HashMap::new();
                        add_audit_keys(&e, &mut attrs);
                        for (i, (name, value)) in attrs.into_iter().enumerate() {
                            sets.push(format!("#a{i} = :v{i}"));
                            update = update
                                .expression_attribute_names(format!("#a{i}"), name)
                                .expression_attribute_values(format!(":v{i}"), value);
                        }
                        // Never bring back a record TTL removed meanwhile.
                        update = update.condition_expression("attribute_exists(pk)");
                    }
                    Index::DeletedDocuments => {
                        let (Some(tenant), Some(at)) =
                            (item.get("tenantId"), item.get("deletedAt"))
                        else {
                            continue;
                        };
                        sets.push("#a0 = :v0".to_string());
                        update = update
                            .expression_attribute_names("#a0", DELETED_KEY)
                            .expression_attribute_values(":v0", tenant.clone())
                            // Only while it is still deleted at that time.
                            .condition_expression("#d = :at")
                            .expression_attribute_names("#d", "deletedAt")
                            .expression_attribute_values(":at", at.clone());
                    }
                }
                let update = update.update_expression(format!("SET {}", sets.join(", ")));
                if updates.len() >= 8 {
                    if let Some(done) = updates.join_next().await {
                        filled += settled(done)?;
                    }
                }
                updates.spawn(async move {
                    match update.send().await {
                        Ok(_) => Ok(1),
                        // Changed or gone since the scan: its writer set
                        // the attribute, or there is nothing to index.
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                        {
                            Ok(0)
                        }
                        Err(e) => Err(err(e)),
                    }
                });
            }
            while let Some(done) = updates.join_next().await {
                filled += settled(done)?;
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(filled),
            }
        }
    }

    pub(super) async fn build(&self, index: Index) -> Result<Vec<String>, StoreError> {
        let table = self.table_of(index).to_string();
        let mut said = Vec::new();
        let filled = self.fill(index).await?;
        said.push(format!("{table}: {filled} item(s) given index keys"));
        for g in gsis(index) {
            let created = self.create_gsi(&table, g).await?;
            said.push(format!(
                "index {}: {}",
                g.name,
                if created { "created" } else { "already there" }
            ));
        }
        // Written meanwhile by a writer that predates the attributes.
        let late = self.fill(index).await?;
        if late > 0 {
            said.push(format!("{table}: {late} more item(s) given index keys"));
        }
        self.client
            .put_item()
            .table_name(&self.migrations)
            .item("id", s(marker(index)))
            .item("state", s("{}"))
            .item("appliedAt", s(&chrono::Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(err)?;
        self.forget_built();
        Ok(said)
    }

    pub(super) async fn drop(&self, index: Index) -> Result<Vec<String>, StoreError> {
        let table = self.table_of(index).to_string();
        // Readers stop using the indexes first (within BUILT_TTL; a read
        // that fails on a missing index falls back at once).
        self.client
            .delete_item()
            .table_name(&self.migrations)
            .key("id", s(marker(index)))
            .send()
            .await
            .map_err(err)?;
        self.forget_built();
        let mut said = Vec::new();
        for g in gsis(index) {
            let deleted = self.delete_gsi(&table, g).await?;
            said.push(format!(
                "index {}: {}",
                g.name,
                if deleted { "deleted" } else { "not there" }
            ));
        }
        Ok(said)
    }
}

fn settled(r: Result<Result<u64, StoreError>, tokio::task::JoinError>) -> Result<u64, StoreError> {
    r.unwrap_or_else(|e| Err(StoreError::Unavailable(format!("index fill task: {e}"))))
}
