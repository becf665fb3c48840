//! Keeping a search index in step with the store: a document's indexed
//! values (for `BatchPutDocument` or an OpenSearch bulk request), every
//! document of a tenant page by page, and the documents that changed since
//! a cursor of the store's change log (for a re-indexer that follows it).

use std::sync::Arc;

use serde_json::{json, Value as Json};

use super::fields::Fields;
use crate::authz::entities::document_entity;
use crate::ids::{DocumentId, TenantId};
use crate::model::Document;
use crate::store::{Change, ChangeCursor, Store, StoreError};

/// A document as the index takes it: its keys, Kendra's `Attributes`, the
/// OpenSearch fields.
pub fn indexed(fields: &Fields, d: &Document) -> Json {
    let entity = document_entity(d);
    json!({
        "tenantId": d.tenant_id,
        "documentId": d.document_id,
        "kendra": fields.kendra_attributes(&entity),
        "opensearch": fields.values(&entity),
    })
}

/// The named documents of `tenant`, or all of them; a missing one is
/// reported as `{"documentId", "missing": true}`.
pub async fn documents(
    store: &Arc<dyn Store>,
    fields: &Fields,
    tenant: &TenantId,
    ids: &[DocumentId],
) -> Result<Vec<Json>, StoreError> {
    let mut out = Vec::new();
    if ids.is_empty() {
        let mut after: Option<DocumentId> = None;
        loop {
            let (page, more) = store.documents_of(tenant, after.as_ref(), 500).await?;
            out.extend(page.iter().map(|d| indexed(fields, d)));
            after = page.last().map(|d| d.document_id.clone());
            if !more || after.is_none() {
                return Ok(out);
            }
        }
    }
    for id in ids {
        out.push(match store.get_document(tenant, id).await? {
            Some(d) => indexed(fields, &d),
            None => json!({ "tenantId": tenant, "documentId": id, "missing": true }),
        });
    }
    Ok(out)
}

/// The documents changed after `cursor` (from the log's end when none),
/// each as the index takes it now (`"removed": true` when it is gone: purged
/// or never there; a soft-deleted document is indexed with its `deleted`
/// flag, which every plan excludes), with the change's id (a change may be
/// returned again; the id lets the re-indexer skip it) and the cursor to
/// continue from.
pub async fn changes(
    store: &Arc<dyn Store>,
    fields: &Fields,
    cursor: Option<ChangeCursor>,
) -> Result<(Vec<Json>, ChangeCursor), StoreError> {
    let Some(cursor) = cursor else {
        return Ok((Vec::new(), store.change_cursor().await?));
    };
    let (changes, next) = store.changes_since(&cursor).await?;
    // A document changed several times in the page is read once, under
    // its last change.
    let mut last: Vec<(String, TenantId, DocumentId)> = Vec::new();
    for (id, change) in changes {
        if let Change::Document {
            tenant_id,
            document_id,
        } = change
        {
            last.retain(|(_, t, d)| !(t == &tenant_id && d == &document_id));
            last.push((id, tenant_id, document_id));
        }
    }
    let mut out = Vec::new();
    for (id, tenant_id, document_id) in last {
        let mut item = match store.get_document(&tenant_id, &document_id).await? {
            Some(d) => indexed(fields, &d),
            None => json!({ "tenantId": tenant_id, "documentId": document_id, "removed": true }),
        };
        item["changeId"] = json!(id);
        out.push(item);
    }
    Ok((out, next))
}
