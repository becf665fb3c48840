//! `/v1/tenants/{id}/documents/{docId}…`: document ACLs. Each operation is
//! itself a decision of the policies on the caller: registering a new
//! document is `CreateDocument` on the tenant (quotas, allowed file types),
//! changing one is `Update`, reading `Read`, soft-deleting `Delete`,
//! restoring `Restore`, sharing `Share`. Documents live in the caller's
//! tenant; another tenant's path is refused like a missing document.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{not_allowed, not_found, ok, record, store_error, unavailable, Caller};
use crate::authz::{AuthzRequest, DenyReason, Effect, ResourceRef};
use crate::ids::{DocumentId, RoleName, TenantId, UserId};
use crate::model::{Document, Grantee, Level, Share, Visibility};
use crate::retention::purge_after;
use crate::sidecar::http::{parse_json, read_body, ApiError, Body};
use crate::sidecar::AppState;
use crate::store::{document_version, UsageDelta};

/// A document's ACL as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DocumentBody {
    /// Defaults to the caller on registration, to the current owner after.
    owner_id: Option<UserId>,
    visibility: Visibility,
    #[serde(default)]
    classification: Level,
    file_type: String,
    #[serde(default)]
    size_bytes: u64,
    #[serde(default)]
    shared_with: Vec<Share>,
}

pub(super) async fn route(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    tenant: &TenantId,
    doc: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = DocumentId::parse(
        percent_encoding::percent_decode_str(doc)
            .decode_utf8_lossy()
            .as_ref(),
    )
    .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))?;
    // Documents are looked up in the caller's tenant only.
    if *tenant != caller.principal.tenant {
        return Err(not_found_doc());
    }
    match (rest, &method) {
        ([], &Method::PUT) => put(state, req, caller, &id).await,
        ([], &Method::GET) => get(state, caller, &id).await,
        ([], &Method::DELETE) => delete(state, caller, &id).await,
        ([], _) => Ok(not_allowed("GET, PUT, DELETE")),
        (["restore"], &Method::POST) => restore(state, caller, &id).await,
        (["restore"], _) => Ok(not_allowed("POST")),
        (["shares"], &Method::POST) => share(state, req, caller, &id).await,
        (["shares"], _) => Ok(not_allowed("POST")),
        (["shares", grantee], &Method::DELETE) => unshare(state, caller, &id, grantee).await,
        (["shares", _], _) => Ok(not_allowed("DELETE")),
        _ => Err(not_found(&method, &path)),
    }
}

fn not_found_doc() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "document_not_found",
        "no such document, or you may not see it",
    )
}

/// The policies' answer for `action` on `resource`. A missing document and
/// one the caller may not see read the same (404).
async fn decide(
    state: &AppState,
    caller: &Caller,
    action: &str,
    resource: ResourceRef,
    context: serde_json::Value,
) -> Result<(), ApiError> {
    let request = AuthzRequest {
        principal: caller.principal.clone(),
        action: action.to_string(),
        resource,
        context,
    };
    let d = state.engine.decide(&request).await?;
    match (d.decision, d.reason) {
        (Effect::Allow, _) => Ok(()),
        (Effect::Deny, Some(DenyReason::StoreUnavailable)) => Err(unavailable()),
        (Effect::Deny, Some(DenyReason::ResourceNotFound)) => Err(not_found_doc()),
        (Effect::Deny, _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{action} is not allowed ({})",
                d.determining_policies.join(", ")
            ),
        )),
    }
}

async fn load(state: &AppState, caller: &Caller, id: &DocumentId) -> Result<Document, ApiError> {
    state
        .engine
        .cache()
        .store()
        .get_document(&caller.principal.tenant, id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found_doc)
}

/// Writes a document — if `expected`, only if the stored one is still that
/// (409 otherwise) — and drops the cached copies, so the next decision here
/// sees it (other sidecars see it through the change log).
async fn save(
    state: &AppState,
    doc: &Document,
    expected: Option<&Document>,
) -> Result<(), ApiError> {
    let store = state.engine.cache().store();
    let written = match expected {
        Some(old) => store.put_document_if(doc, old).await,
        None => store.put_document(doc).await,
    };
    written.map_err(|e| match e {
        crate::store::StoreError::Conflict(m) => {
            ApiError::new(StatusCode::CONFLICT, "document_changed", m)
        }
        other => store_error(other),
    })?;
    state
        .engine
        .cache()
        .invalidate_document(&doc.tenant_id, &doc.document_id);
    Ok(())
}

/// Adds `documents` to the tenant's document count and `bytes` to its
/// storage, atomically in the store.
async fn count_documents(
    state: &AppState,
    tenant: &TenantId,
    documents: i64,
    bytes: i64,
) -> Result<(), ApiError> {
    if documents == 0 && bytes == 0 {
        return Ok(());
    }
    let delta = UsageDelta {
        documents,
        storage_bytes: bytes,
        ..UsageDelta::default()
    };
    state
        .engine
        .cache()
        .store()
        .add_usage(tenant, &delta)
        .await
        .map_err(store_error)?;
    state.engine.cache().invalidate_tenant(tenant);
    Ok(())
}

/// A size as a signed delta.
fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn resource(id: &DocumentId) -> ResourceRef {
    ResourceRef::Document(id.clone())
}

fn details(doc: &Document) -> serde_json::Value {
    json!({ "documentId": doc.document_id, "document": doc })
}

async fn put(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    id: &DocumentId,
) -> Result<Response<Body>, ApiError> {
    let if_match = super::if_match(&req);
    let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let body: DocumentBody = parse_json(&bytes)?;
    if body.file_type.is_empty() || body.file_type.len() > 16 {
        return Err(ApiError::bad_request(
            "invalid_document",
            "`fileType` must be 1 to 16 characters",
        ));
    }
    let tenant = caller.principal.tenant.clone();
    let existing = state
        .engine
        .cache()
        .store()
        .get_document(&tenant, id)
        .await
        .map_err(store_error)?;
    let creating = existing.as_ref().is_none_or(|d| d.deleted_at.is_some());
    let outcome = async {
        let owner = body
            .owner_id
            .clone()
            .or_else(|| existing.as_ref().map(|d| d.owner_id.clone()))
            .unwrap_or_else(|| caller.principal.id.clone());
        if creating {
            if existing.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "document_deleted",
                    "the document is deleted; restore it first",
                ));
            }
            let size = i64::try_from(body.size_bytes).unwrap_or(i64::MAX);
            decide(
                state,
                caller,
                "CreateDocument",
                ResourceRef::Tenant(tenant.clone()),
                json!({ "fileType": body.file_type, "sizeBytes": size }),
            )
            .await?;
        } else {
            decide(state, caller, "Update", resource(id), json!({})).await?;
            // Changing who owns a document or whom it is shared with asks
            // for more than `Update`: a new owner is as strong as deleting
            // it (`Delete`), new grants are `Share`.
            if let Some(old) = &existing {
                if old.owner_id != owner {
                    decide(state, caller, "Delete", resource(id), json!({})).await?;
                }
                if old.shared_with != body.shared_with {
                    decide(state, caller, "Share", resource(id), json!({})).await?;
                }
            }
        }
        // With `If-Match`, only the version the caller read is replaced
        // (the write below is conditional on it as read here); asked once
        // the policies allowed the change.
        if let Some(expected) = &if_match {
            let current = existing
                .as_ref()
                .filter(|_| !creating)
                .map(document_version);
            if current.as_deref() != Some(expected.as_str()) {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "conflict",
                    "the document has changed since it was read",
                ));
            }
        }
        let doc = Document {
            tenant_id: tenant.clone(),
            document_id: id.clone(),
            owner_id: owner,
            visibility: body.visibility,
            classification: body.classification,
            file_type: body.file_type.clone(),
            size_bytes: body.size_bytes,
            shared_with: body.shared_with,
            deleted_at: None,
        };
        // An update is conditional on the document as it was read above.
        save(state, &doc, existing.as_ref().filter(|_| !creating)).await?;
        let old_size = existing.as_ref().map_or(0, |d| signed(d.size_bytes));
        count_documents(
            state,
            &tenant,
            i64::from(creating),
            signed(doc.size_bytes) - old_size,
        )
        .await?;
        Ok(doc)
    }
    .await;
    let action = if creating {
        "CreateDocument"
    } else {
        "UpdateDocument"
    };
    let doc = record(
        state,
        caller,
        &tenant,
        action,
        json!({ "documentId": id }),
        details,
        outcome,
    )
    .await?;
    Ok(super::with_etag(
        if creating {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &doc,
        &document_version(&doc),
    ))
}

async fn get(
    state: &AppState,
    caller: &Caller,
    id: &DocumentId,
) -> Result<Response<Body>, ApiError> {
    decide(state, caller, "Read", resource(id), json!({})).await?;
    let doc = load(state, caller, id).await?;
    Ok(super::with_etag(
        StatusCode::OK,
        &doc,
        &document_version(&doc),
    ))
}

/// How an edit changed a document: `None`, not at all (nothing is
/// written); else the change to the tenant's document count and bytes.
type Edited = Result<Option<(i64, i64)>, ApiError>;

/// Tries of one edit of a document that others are editing at once.
const MAX_EDIT_ATTEMPTS: u32 = 32;

/// The shape of every change to an existing document: ask the policies for
/// `action`, load, edit, save and count what changed, record it as
/// `recorded`, answer with the document.
async fn change(
    state: &AppState,
    caller: &Caller,
    id: &DocumentId,
    action: &str,
    recorded: &str,
    details: serde_json::Value,
    edit: impl Fn(&mut Document) -> Edited,
) -> Result<Response<Body>, ApiError> {
    let outcome = async {
        // A concurrent edit of the same document makes the conditional
        // write fail: ask again, read again and redo the edit on what is
        // there now, after a short random pause (so that many editors of
        // one document do not collide in lockstep: each round lets one
        // through).
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            decide(state, caller, action, resource(id), json!({})).await?;
            let before = load(state, caller, id).await?;
            let mut doc = before.clone();
            let Some((documents, bytes)) = edit(&mut doc)? else {
                return Ok(doc);
            };
            match save(state, &doc, Some(&before)).await {
                Ok(()) => {
                    count_documents(state, &doc.tenant_id, documents, bytes).await?;
                    return Ok(doc);
                }
                Err(e) if e.code == "document_changed" && attempts < MAX_EDIT_ATTEMPTS => {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos());
                    let pause = u64::from(nanos % (attempts.min(20) + 1));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    let tenant = &caller.principal.tenant;
    let doc = record(
        state,
        caller,
        tenant,
        recorded,
        json!({ "documentId": id }),
        |_| details,
        outcome,
    )
    .await?;
    Ok(ok(&serde_json::to_value(doc).unwrap_or_default()))
}

/// Soft delete: invisible to every decision (lifecycle policy), restorable.
async fn delete(
    state: &AppState,
    caller: &Caller,
    id: &DocumentId,
) -> Result<Response<Body>, ApiError> {
    let details = json!({ "documentId": id });
    change(
        state,
        caller,
        id,
        "Delete",
        "DeleteDocument",
        details,
        |doc| {
            Ok(doc.deleted_at.is_none().then(|| {
                doc.deleted_at = Some(caller.lifecycle.now);
                (-1, -signed(doc.size_bytes))
            }))
        },
    )
    .await
}

async fn restore(
    state: &AppState,
    caller: &Caller,
    id: &DocumentId,
) -> Result<Response<Body>, ApiError> {
    let details = json!({ "documentId": id });
    let tenant = state
        .engine
        .cache()
        .store()
        .get_tenant(&caller.principal.tenant)
        .await
        .map_err(store_error)?;
    let now = caller.lifecycle.now;
    change(
        state,
        caller,
        id,
        "Restore",
        "RestoreDocument",
        details,
        |doc| {
            let due = tenant
                .as_ref()
                .and_then(|t| purge_after(&caller.lifecycle.retention, t, doc));
            if let Some(due) = due.filter(|due| *due <= now) {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "recovery_window_passed",
                    format!(
                        "the document's recovery window ended at {}; it is purged at the next retention run",
                        due.to_rfc3339()
                    ),
                ));
            }
            Ok(doc.deleted_at.is_some().then(|| {
                doc.deleted_at = None;
                (1, signed(doc.size_bytes))
            }))
        },
    )
    .await
}

async fn share(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    id: &DocumentId,
) -> Result<Response<Body>, ApiError> {
    let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let grant: Share = parse_json(&bytes)?;
    let details = json!({ "documentId": id, "share": grant });
    change(
        state,
        caller,
        id,
        "Share",
        "ShareDocument",
        details,
        |doc| {
            // One grant per grantee: a new permission replaces the old one.
            doc.shared_with.retain(|s| s.grantee != grant.grantee);
            doc.shared_with.push(grant.clone());
            Ok(Some((0, 0)))
        },
    )
    .await
}

/// `user:<id>` or `role:<name>`.
fn grantee(raw: &str) -> Result<Grantee, ApiError> {
    let raw = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let bad = |m: String| ApiError::bad_request("invalid_grantee", m);
    match raw.split_once(':') {
        Some(("user", id)) => UserId::parse(id)
            .map(Grantee::User)
            .map_err(|e| bad(e.to_string())),
        Some(("role", name)) => RoleName::parse(name)
            .map(Grantee::Role)
            .map_err(|e| bad(e.to_string())),
        _ => Err(bad("a grantee is `user:<id>` or `role:<name>`".into())),
    }
}

async fn unshare(
    state: &AppState,
    caller: &Caller,
    id: &DocumentId,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let who = grantee(raw)?;
    let details = json!({ "documentId": id, "grantee": raw });
    change(
        state,
        caller,
        id,
        "Share",
        "UnshareDocument",
        details,
        |doc| {
            let before = doc.shared_with.len();
            doc.shared_with.retain(|s| s.grantee != who);
            Ok((doc.shared_with.len() != before).then_some((0, 0)))
        },
    )
    .await
}
