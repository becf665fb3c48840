//! `/v1/tenants…`: create, read, update (with `If-Match`), deactivate and
//! list tenants; their usage against their limits; their audit logs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{
    authorize, authorize_with, not_allowed, not_found, ok, record, refused, store_error, Caller,
};
use crate::audit::ocsf::to_ocsf;
use crate::authz::Effect;
use crate::ids::{DocumentId, TenantId};
use crate::model::{Tenant, TenantStatus};
use crate::retention::purge_after;
use crate::sidecar::http::{parse_json, read_body, ApiError, Body};
use crate::sidecar::AppState;
use crate::store::{tenant_version, AuditCursor, AuditFilter, AuditQuery};

/// File types a tenant may allow.
pub const KNOWN_FILE_TYPES: &[&str] = &[
    "csv", "doc", "docx", "htm", "html", "json", "md", "odp", "ods", "odt", "pdf", "ppt", "pptx",
    "rtf", "txt", "xls", "xlsx", "xml",
];

/// Features a subscription may carry.
pub const KNOWN_FEATURES: &[&str] = &[
    "audit-logs",
    "export",
    "sso",
    "api-access",
    "custom-policies",
];

pub(super) async fn route(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match rest {
        [] | [""] => match method {
            Method::GET => list(state, &req, caller).await,
            Method::POST => create(state, req, caller).await,
            _ => Ok(not_allowed("GET, POST")),
        },
        [id] => {
            let id = tenant_id(id)?;
            match method {
                Method::GET => get(state, caller, &id).await,
                Method::PUT => update(state, req, caller, &id).await,
                Method::DELETE => deactivate(state, caller, &id).await,
                _ => Ok(not_allowed("GET, PUT, DELETE")),
            }
        }
        [id, "usage"] => match method {
            Method::GET => usage(state, &req, caller, &tenant_id(id)?).await,
            _ => Ok(not_allowed("GET")),
        },
        [id, "export"] => match method {
            Method::POST => export(state, caller, &tenant_id(id)?).await,
            _ => Ok(not_allowed("POST")),
        },
        [id, "documents"] => match method {
            Method::GET => documents(state, &req, caller, &tenant_id(id)?).await,
            _ => Ok(not_allowed("GET")),
        },
        [id, "documents", doc, rest @ ..] => {
            super::documents::route(state, req, caller, &tenant_id(id)?, doc, rest).await
        }
        [id, "policies", rest @ ..] => {
            super::policies::route(state, req, caller, &tenant_id(id)?, rest).await
        }
        [id, "access-check"] => match method {
            Method::POST => super::access::check(state, req, caller, &tenant_id(id)?).await,
            _ => Ok(not_allowed("POST")),
        },
        [id, "audit-logs"] => match method {
            Method::GET => audit_logs(state, &req, caller, &tenant_id(id)?).await,
            _ => Ok(not_allowed("GET")),
        },
        _ => Err(not_found(&method, &path)),
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    path_id(raw, "tenant", TenantId::parse)
}

/// A percent-encoded id from a path segment, checked by `parse`.
pub(super) fn path_id<T>(
    raw: &str,
    kind: &str,
    parse: impl FnOnce(String) -> Result<T, crate::ids::IdError>,
) -> Result<T, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("invalid_id", format!("the {kind} id is not UTF-8")))?;
    parse(decoded.into_owned()).map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// 200 (or `status`) with the tenant and its `ETag`.
fn with_etag(status: StatusCode, t: &Tenant) -> Response<Body> {
    super::with_etag(status, t, &tenant_version(t))
}

fn not_found_tenant(id: &TenantId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "tenant_not_found",
        format!("no tenant {id}"),
    )
}

async fn load(state: &AppState, id: &TenantId) -> Result<Tenant, ApiError> {
    state
        .engine
        .cache()
        .store()
        .get_tenant(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found_tenant(id))
}

/// Checks what serde cannot: names, reserved ids, known file types and
/// features, limits that make sense.
pub fn validate(t: &Tenant) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_tenant", m));
    if t.tenant_id.as_str().starts_with('_') {
        return bad("tenant ids starting with `_` are reserved".into());
    }
    let name = t.name.trim();
    if name.is_empty() || t.name.len() > 200 || t.name.chars().any(char::is_control) {
        return bad("`name` must be 1 to 200 printable characters".into());
    }
    if let Some(ft) = t
        .settings
        .allowed_file_types
        .iter()
        .find(|f| !KNOWN_FILE_TYPES.contains(&f.as_str()))
    {
        return bad(format!(
            "unknown file type {ft:?}; known: {}",
            KNOWN_FILE_TYPES.join(", ")
        ));
    }
    if let Some(f) = t
        .subscription
        .features
        .iter()
        .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
    {
        return bad(format!(
            "unknown feature {f:?}; known: {}",
            KNOWN_FEATURES.join(", ")
        ));
    }
    if !(1..=MAX_RETENTION_DAYS).contains(&t.settings.data_retention_days) {
        return bad(format!(
            "`settings.dataRetentionDays` must be 1 to {MAX_RETENTION_DAYS}"
        ));
    }
    if t.settings.recovery_window_days.is_some_and(|d| d > 3650) {
        return bad("`settings.recoveryWindowDays` must be at most 3650".into());
    }
    if let Some(b) = &t.billing {
        b.check().or_else(bad)?;
    }
    Ok(())
}

/// A tenant from a request body: the seed's shape; `createdAt` and `usage`
/// are the service's, so they may be left out (and are ignored on update).
fn tenant_from_body(bytes: &[u8], id: Option<&TenantId>) -> Result<Tenant, ApiError> {
    let mut value: Value = parse_json(bytes)?;
    let Some(map) = value.as_object_mut() else {
        return Err(ApiError::bad_request(
            "invalid_tenant",
            "the body must be a JSON object",
        ));
    };
    map.entry("createdAt")
        .or_insert_with(|| json!(Utc::now().to_rfc3339()));
    if let Some(id) = id {
        match map.get("tenantId") {
            None => {
                map.insert("tenantId".into(), json!(id.as_str()));
            }
            Some(v) if v == id.as_str() => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_tenant",
                    "`tenantId` in the body differs from the path",
                ))
            }
        }
    }
    let t: Tenant = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("invalid_tenant", e.to_string()))?;
    validate(&t)?;
    Ok(t)
}

async fn create(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let mut t = tenant_from_body(&bytes, None)?;
    t.usage = Default::default();
    // The service dates cancellations; a new tenant is not purged.
    t.cancelled_at = (t.status == TenantStatus::Cancelled).then_some(caller.lifecycle.now);
    t.purged_at = None;
    let id = t.tenant_id.clone();
    if let Err(e) = authorize(state, caller, "CreateTenant", &id).await {
        return refused(state, caller, "CreateTenant", target(&id), e).await;
    }
    let outcome = state
        .engine
        .cache()
        .store()
        .put_tenant_if(&t, None)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "tenant_exists",
                format!("tenant {id} exists"),
            ),
            other => store_error(other),
        });
    record(
        state,
        caller,
        &id,
        "CreateTenant",
        target(&id),
        |_| json!({ "tenant": &t }),
        outcome,
    )
    .await?;
    let mut resp = with_etag(StatusCode::CREATED, &t);
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/tenants/{id}")) {
        resp.headers_mut().insert(LOCATION, v);
    }
    Ok(resp)
}

/// The longest data retention period a tenant may have, in days (100
/// years; the audit trail keeps its own 7 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// The ids a tenant operation's audit record names.
fn target(id: &TenantId) -> Value {
    json!({ "tenantId": id })
}

async fn get(state: &AppState, caller: &Caller, id: &TenantId) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ManageTenant", id).await?;
    Ok(with_etag(StatusCode::OK, &load(state, id).await?))
}

async fn update(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    let if_match = super::if_match(&req);
    let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
    if let Err(e) = authorize(state, caller, "ManageTenant", id).await {
        return refused(state, caller, "UpdateTenant", target(id), e).await;
    }
    let outcome = async {
        let Some(expected) = if_match else {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "send the tenant's ETag in If-Match",
            ));
        };
        let mut t = tenant_from_body(&bytes, Some(id))?;
        let current = load(state, id).await?;
        if current.purged_at.is_some() {
            return Err(purged(id));
        }
        // Each kind of change is its own action: the policies say who may
        // make it (a tenant's administrator: name and settings).
        authorize_changes(state, caller, &current, &t).await?;
        // The service owns these: usage is counted by the service (the
        // store keeps the stored usage whatever the body says, and so does
        // the answer), creation, cancellation and purge are dated by it.
        t.usage = current.usage.clone();
        t.created_at = current.created_at;
        t.purged_at = None;
        t.cancelled_at = match (t.status, current.status) {
            (TenantStatus::Cancelled, TenantStatus::Cancelled) => current.cancelled_at,
            (TenantStatus::Cancelled, _) => Some(caller.lifecycle.now),
            _ => None,
        };
        state
            .engine
            .cache()
            .store()
            .put_tenant_if(&t, Some(&expected))
            .await
            .map_err(store_error)?;
        Ok(t)
    }
    .await;
    let t = record(
        state,
        caller,
        id,
        "UpdateTenant",
        target(id),
        |t| json!({ "tenant": t }),
        outcome,
    )
    .await?;
    Ok(with_etag(StatusCode::OK, &t))
}

/// The fields a tenant update changes, each with the action that allows it.
pub fn changes(current: &Tenant, new: &Tenant) -> Vec<(&'static str, &'static str)> {
    let (c, n) = (current, new);
    let mut out = Vec::new();
    let mut field = |changed: bool, name: &'static str, action: &'static str| {
        if changed {
            out.push((name, action));
        }
    };
    field(c.name != n.name, "name", "UpdateTenantName");
    field(c.status != n.status, "status", "UpdateTenantStatus");
    let (cs, ns) = (&c.subscription, &n.subscription);
    let sub = "UpdateTenantSubscription";
    field(cs.tier != ns.tier, "subscription.tier", sub);
    field(
        cs.start_date != ns.start_date,
        "subscription.startDate",
        sub,
    );
    field(cs.features != ns.features, "subscription.features", sub);
    let (cl, nl) = (&c.limits, &n.limits);
    let lim = "UpdateTenantLimits";
    field(
        cl.max_documents != nl.max_documents,
        "limits.maxDocuments",
        lim,
    );
    field(cl.max_users != nl.max_users, "limits.maxUsers", lim);
    field(
        cl.max_storage_gb != nl.max_storage_gb,
        "limits.maxStorageGB",
        lim,
    );
    field(
        cl.max_queries_per_month != nl.max_queries_per_month,
        "limits.maxQueriesPerMonth",
        lim,
    );
    let (cs, ns) = (&c.settings, &n.settings);
    let set = "UpdateTenantSettings";
    field(
        cs.data_retention_days != ns.data_retention_days,
        "settings.dataRetentionDays",
        set,
    );
    field(
        cs.allowed_file_types != ns.allowed_file_types,
        "settings.allowedFileTypes",
        set,
    );
    field(
        cs.recovery_window_days != ns.recovery_window_days,
        "settings.recoveryWindowDays",
        set,
    );
    field(c.billing != n.billing, "billing", "UpdateTenantBilling");
    out
}

/// Asks the policies about each kind of change `new` makes to `current`;
/// 403 naming every field refused.
async fn authorize_changes(
    state: &AppState,
    caller: &Caller,
    current: &Tenant,
    new: &Tenant,
) -> Result<(), ApiError> {
    let changes = changes(current, new);
    let mut actions: Vec<&str> = changes.iter().map(|(_, a)| *a).collect();
    actions.dedup();
    let mut refused_fields = Vec::new();
    for action in actions {
        let context = match action {
            "UpdateTenantSettings" => {
                let s = &new.settings;
                let mut c = json!({
                    "dataRetentionDays": s.data_retention_days,
                    "allowedFileTypes": s.allowed_file_types,
                });
                if let Some(days) = s.recovery_window_days {
                    c["recoveryWindowDays"] = json!(days);
                }
                c
            }
            _ => Value::Null,
        };
        match authorize_with(state, caller, action, &current.tenant_id, context).await {
            Ok(()) => {}
            Err(e) if e.status == StatusCode::FORBIDDEN => refused_fields.extend(
                changes
                    .iter()
                    .filter(|(_, a)| *a == action)
                    .map(|(f, _)| f.to_string()),
            ),
            Err(e) => return Err(e),
        }
    }
    if refused_fields.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "fields_forbidden",
        format!("you may not change {}", refused_fields.join(", ")),
    )
    .with_fields(refused_fields))
}

/// Deactivation: status `cancelled`; the data stays for the retention
/// period. Repeating it changes nothing. A change of status: for the
/// platform's administrators.
async fn deactivate(
    state: &AppState,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    if let Err(e) = authorize(state, caller, "ManageTenant", id).await {
        return refused(state, caller, "DeactivateTenant", target(id), e).await;
    }
    let outcome = async {
        if authorize(state, caller, "UpdateTenantStatus", id)
            .await
            .is_err()
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "fields_forbidden",
                "you may not change status",
            )
            .with_fields(vec!["status".into()]));
        }
        let store = state.engine.cache().store();
        // A concurrent update makes the conditional write fail: read again.
        for _ in 0..5 {
            let mut t = load(state, id).await?;
            if t.status == TenantStatus::Cancelled {
                return Ok(t);
            }
            let version = tenant_version(&t);
            t.status = TenantStatus::Cancelled;
            t.cancelled_at = Some(caller.lifecycle.now);
            match store.put_tenant_if(&t, Some(&version)).await {
                Ok(()) => return Ok(t),
                Err(crate::store::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "the tenant keeps changing; try again",
        ))
    }
    .await;
    let t = record(
        state,
        caller,
        id,
        "DeactivateTenant",
        target(id),
        |_| json!({ "status": "cancelled" }),
        outcome,
    )
    .await?;
    Ok(with_etag(StatusCode::OK, &t))
}

/// A purged tenant's record stays, but it cannot be changed or reopened.
pub(super) fn purged(id: &TenantId) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "tenant_purged",
        format!("tenant {id} was purged after its retention period; its record is kept read-only"),
    )
}

/// The id a `cursor` parameter (hex of the last id of the previous page)
/// continues after; 400 when it is not one.
fn page_cursor<T>(
    q: &HashMap<String, String>,
    parse: impl FnOnce(String) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    q.get("cursor")
        .map(|c| {
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(parse)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "invalid page cursor"))
        })
        .transpose()
}

fn limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_limit",
                format!("`limit` must be 1 to {max}"),
            )),
        },
    }
}

/// Platform administrators only (`ListTenants` on their own tenant).
async fn list(
    state: &AppState,
    req: &Request<Incoming>,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ListTenants", &caller.principal.tenant).await?;
    let q = query(req);
    let limit = limit(&q, 50, 500)?;
    let after = page_cursor(&q, |s| TenantId::parse(s).ok())?;
    let (tenants, more) = state
        .engine
        .cache()
        .store()
        .list_tenants(after.as_ref(), limit)
        .await
        .map_err(store_error)?;
    let next = more
        .then(|| tenants.last().map(|t| hex::encode(t.tenant_id.as_str())))
        .flatten();
    Ok(ok(&json!({ "tenants": tenants, "next": next })))
}

async fn usage(
    state: &AppState,
    req: &Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ViewUsage", id).await?;
    let q = query(req);
    let month = match q.get("month") {
        None => caller.lifecycle.now.format("%Y-%m").to_string(),
        Some(m) if crate::billing::parse_month(m).is_ok() => m.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_month",
                "`month` is a UTC month, YYYY-MM",
            ))
        }
    };
    let t = load(state, id).await?;
    let counts = state
        .engine
        .cache()
        .store()
        .decisions_in(id, &month)
        .await
        .map_err(store_error)?;
    let mut by_action = serde_json::Map::new();
    let (mut allowed, mut denied) = (0u64, 0u64);
    for (action, decision, n) in counts {
        let entry = by_action
            .entry(action)
            .or_insert_with(|| json!({"allow": 0, "deny": 0}));
        let key = match decision {
            Effect::Allow => {
                allowed += n;
                "allow"
            }
            Effect::Deny => {
                denied += n;
                "deny"
            }
        };
        entry[key] = json!(n);
    }
    let (u, l) = (&t.usage, &t.limits);
    let left = |used: u32, max: u32| max.saturating_sub(used);
    Ok(ok(&json!({
        "tenantId": t.tenant_id,
        "usage": u,
        "limits": l,
        "remaining": {
            "documents": left(u.documents, l.max_documents),
            "users": left(u.users, l.max_users),
            "storageGB": left(u.storage_gb, l.max_storage_gb),
            "queriesThisMonth": left(u.queries_this_month, l.max_queries_per_month),
        },
        "decisions": {
            "month": month,
            "allow": allowed,
            "deny": denied,
            "byAction": by_action,
        },
    })))
}

/// A page of the tenant's document ACLs in id order: live ones (the
/// default, `deleted=exclude`), all (`include`) or the soft-deleted ones
/// with when each is purged (`only`, through the deleted-documents index).
/// Tenant administrators and platform administrators (`ListDocuments`).
async fn documents(
    state: &AppState,
    req: &Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ListDocuments", id).await?;
    let q = query(req);
    let limit = limit(&q, 100, 1000)?;
    let deleted = q.get("deleted").map(String::as_str).unwrap_or("exclude");
    if !["exclude", "include", "only"].contains(&deleted) {
        return Err(ApiError::bad_request(
            "invalid_deleted",
            "`deleted` is exclude, include or only",
        ));
    }
    let after = page_cursor(&q, |s| DocumentId::parse(s).ok())?;
    let store = state.engine.cache().store();
    let (mut docs, next) = if deleted == "only" {
        store
            .deleted_documents(id, after.as_ref(), limit)
            .await
            .map_err(store_error)?
    } else {
        let (docs, more) = store
            .documents_of(id, after.as_ref(), limit)
            .await
            .map_err(store_error)?;
        let next = docs.last().filter(|_| more).map(|d| d.document_id.clone());
        (docs, next)
    };
    if deleted == "exclude" {
        // A page may come back short; `next` goes on.
        docs.retain(|d| d.deleted_at.is_none());
    }
    let tenant = if docs.iter().any(|d| d.deleted_at.is_some()) {
        Some(load(state, id).await?)
    } else {
        None
    };
    let items: Vec<Value> = docs
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            let due = tenant
                .as_ref()
                .and_then(|t| purge_after(&caller.lifecycle.retention, t, d));
            if let (Some(due), Some(obj)) = (due, v.as_object_mut()) {
                obj.insert("purgeAfter".into(), json!(due));
            }
            v
        })
        .collect();
    Ok(ok(&json!({
        "documents": items,
        "next": next.map(|n| hex::encode(n.as_str())),
    })))
}

fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    q.get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_time",
                        format!("`{name}` must be an RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

/// Newest first, filtered by user, action and decision, paginated with an
/// opaque cursor; `format=ocsf` renders OCSF events.
/// How long one `GET …/audit-logs` keeps reading store pages for a filter
/// before it answers with what it found and a cursor.
const AUDIT_READ_BUDGET: std::time::Duration = std::time::Duration::from_millis(300);

async fn audit_logs(
    state: &AppState,
    req: &Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ViewAuditLogs", id).await?;
    let q = query(req);
    let limit = limit(&q, 100, 1000)?;
    let from = time_param(&q, "from")?.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let to = time_param(&q, "to")?.unwrap_or_else(Utc::now);
    let ocsf = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("ocsf") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_format",
                "`format` is json or ocsf",
            ))
        }
    };
    let decision = match q.get("decision").map(|d| d.to_ascii_lowercase()) {
        None => None,
        Some(d) if d == "allow" => Some(Effect::Allow),
        Some(d) if d == "deny" => Some(Effect::Deny),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_decision",
                "`decision` is allow or deny",
            ))
        }
    };
    let mut query = AuditQuery::new(id.clone(), from, to, limit);
    query.filter = AuditFilter {
        user: q.get("user").cloned(),
        action: q.get("action").cloned(),
        decision,
    };
    if let Some(c) = q.get("cursor") {
        query.after = Some(
            AuditCursor::decode(c)
                .map_err(|_| ApiError::bad_request("invalid_cursor", "invalid page cursor"))?,
        );
    }
    // The store filters, through the filter indexes once built
    // (`0003-audit-filter-indexes`); a page it reads without them may come
    // back short with a cursor. Pages are read until this one is full, at
    // most ten and, past the first, no longer than AUDIT_READ_BUDGET (the
    // cursor continues from there): sub-second on any store.
    let store = state.engine.cache().store();
    let started = std::time::Instant::now();
    let mut events = Vec::new();
    let mut next = None;
    for _ in 0..10 {
        query.limit = limit - events.len();
        let page = store.audit_events(&query).await.map_err(store_error)?;
        events.extend(page.events);
        next = page.next;
        match &next {
            Some(more) if events.len() < limit => query.after = Some(more.clone()),
            _ => break,
        }
        if started.elapsed() >= AUDIT_READ_BUDGET {
            break;
        }
    }
    let items: Vec<Value> = if ocsf {
        events.iter().map(to_ocsf).collect()
    } else {
        events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect()
    };
    Ok(ok(&json!({
        "events": items,
        "next": next.map(|c| c.encode()),
    })))
}

/// The tenant's data as NDJSON (tenant, documents, audit records, then a
/// manifest), streamed page by page; `cedargate-admin import` reads it.
async fn export(
    state: &AppState,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    if let Err(e) = authorize(state, caller, "Export", id).await {
        return refused(state, caller, "Export", target(id), e).await;
    }
    let outcome = load(state, id).await;
    let tenant = record(
        state,
        caller,
        id,
        "Export",
        target(id),
        |_| json!({}),
        outcome,
    )
    .await?;
    let store = state.engine.cache().store().clone();
    let (tx, body) = crate::sidecar::http::channel_body(16);
    tokio::spawn(crate::export::produce(store, tenant, tx));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}
