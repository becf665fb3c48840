//! The console's pages. Each reads and changes data through the management
//! API only ([`super::api`]); an API refusal becomes a page that says so in
//! words, and never names more than the API said.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use http_body_util::BodyExt as _;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, IF_MATCH};
use hyper::{Method, Response, StatusCode};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::api::{enc, Answer, Api};
use super::session::Session;
use super::view::{self, badge, bytes, int, meter, status_badge, when, Nav};
use super::{html_page, redirect};
use crate::audit::AuditEvent;
use crate::authz::{AuthzRequest, Effect, ResourceRef};
use crate::ids::TenantId;
use crate::model::{Document, Tenant};
use crate::sidecar::http::{channel_body, Body};
use crate::sidecar::AppState;

/// One console request: the API client, the session, the request's query
/// and form.
pub(super) struct Ctx {
    pub api: Api,
    pub state: Arc<AppState>,
    pub session: Session,
    pub query: HashMap<String, String>,
    pub form: HashMap<String, String>,
    pub now: DateTime<Utc>,
    /// The service's recovery window, if known.
    pub recovery_days: Option<u32>,
}

/// Actions a document's page can ask for.
const DOCUMENT_ACTIONS: [&str; 5] = ["Read", "Update", "Delete", "Share", "Restore"];
/// Tenant-level actions the access checker offers.
const TENANT_ACTIONS: [&str; 6] = [
    "Search",
    "CreateDocument",
    "ListDocuments",
    "ViewUsage",
    "ViewAuditLogs",
    "Export",
];
/// Records in one audit page, and at most in a download.
const AUDIT_PAGE: usize = 50;
const DOWNLOAD_MAX_PAGES: usize = 100;

impl Ctx {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn f(&self, k: &str) -> &str {
        self.form.get(k).map(String::as_str).unwrap_or_default()
    }

    fn own(&self) -> &TenantId {
        &self.session.principal.tenant
    }

    /// Whether the policies would let the caller do `action` to `tenant`
    /// (read-only: decides which links and forms a page offers; the API
    /// decides again when they are used).
    async fn may(&self, action: &str, tenant: &str) -> bool {
        let Ok(tenant) = TenantId::parse(tenant) else {
            return false;
        };
        let request = AuthzRequest {
            principal: self.session.principal.clone(),
            action: action.to_string(),
            resource: ResourceRef::Tenant(tenant),
            context: Value::Null,
        };
        matches!(
            self.state.engine.decide_quietly(&request).await,
            Ok((d, _)) if d.decision == Effect::Allow
        )
    }

    /// The header: the caller, and the sections the policies let them use
    /// for `tenant` (their own when `None`).
    async fn nav(&self, tenant: Option<&str>, current: &str) -> Nav {
        let p = &self.session.principal;
        let t = tenant.unwrap_or(p.tenant.as_str()).to_string();
        let mut links = Vec::new();
        if self.may("ListTenants", p.tenant.as_str()).await {
            links.push(("Tenants", "/console/tenants".into(), current == "tenants"));
        }
        let base = format!("/console/t/{}", enc(&t));
        let sections: [(&'static str, &str, &[&str], &str); 5] = [
            ("Overview", "", &["ManageTenant", "ViewUsage"], "overview"),
            ("Documents", "/documents", &["ListDocuments"], "documents"),
            ("Audit log", "/audit", &["ViewAuditLogs"], "audit"),
            ("Access checker", "/access", &["ViewAuditLogs"], "access"),
            ("Export", "/export", &["Export"], "export"),
        ];
        for (label, suffix, actions, key) in sections {
            let mut allowed = false;
            for a in actions {
                if self.may(a, &t).await {
                    allowed = true;
                    break;
                }
            }
            if allowed {
                links.push((label, format!("{base}{suffix}"), current == key));
            }
        }
        Nav {
            user: p.id.as_str().to_string(),
            tenant: p.tenant.as_str().to_string(),
            roles: p
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            csrf: self.session.csrf.clone(),
            links,
        }
    }

    async fn page(
        &self,
        tenant: Option<&str>,
        current: &str,
        title: &str,
        body: Markup,
    ) -> Response<Body> {
        let nav = self.nav(tenant, current).await;
        html_page(
            StatusCode::OK,
            view::page(title, Some(&nav), self.q("notice").and_then(notice), body),
        )
    }

    /// An API refusal or failure as a page. It names nothing the request
    /// did not (no tenant id, no document id), so a refusal about another
    /// tenant reads exactly like one about a tenant that does not exist.
    async fn failure(&self, answer: &Answer) -> Response<Body> {
        let (code, message) = answer.error().unwrap_or_default();
        let (title, text): (&str, String) = match answer.status {
            StatusCode::UNAUTHORIZED => {
                // The API no longer accepts the session's token (expired,
                // or its key was withdrawn): the session ends with this page.
                return html_page(
                    StatusCode::UNAUTHORIZED,
                    view::problem(
                        None,
                        "Signed out",
                        "Your sign-in has expired. Sign in again, then repeat what you were doing.",
                    ),
                );
            }
            StatusCode::FORBIDDEN => (
                "Not allowed",
                "You do not have permission to see or change this.".into(),
            ),
            StatusCode::NOT_FOUND => (
                "Not found",
                "This was not found, or you do not have access to it.".into(),
            ),
            StatusCode::PRECONDITION_FAILED => (
                "Changed by someone else",
                "Someone else changed this since you opened the page. Reload the page to see the current version, then make your change again.".into(),
            ),
            StatusCode::CONFLICT => ("Not possible", sentence(&message)),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                ("Not accepted", format!("That was not accepted: {}", sentence(&message)))
            }
            StatusCode::TOO_MANY_REQUESTS => (
                "Too many requests",
                "Too many requests right now. Wait a moment and try again.".into(),
            ),
            StatusCode::SERVICE_UNAVAILABLE => (
                "Unavailable",
                "The service cannot answer right now (the store or the audit trail is unavailable). Try again in a moment.".into(),
            ),
            s => {
                tracing::warn!(status = %s, %code, "the API failed a console request");
                ("Something went wrong", "Something went wrong on our side. Try again; if it keeps happening, tell your administrator.".into())
            }
        };
        let nav = self.nav(None, "").await;
        html_page(answer.status, view::problem(Some(&nav), title, &text))
    }

    fn unreachable(&self, e: &str) -> Response<Body> {
        tracing::warn!(error = %e, "console could not reach the API");
        html_page(
            StatusCode::BAD_GATEWAY,
            view::problem(
                None,
                "Something went wrong",
                "The management service did not answer. Try again in a moment.",
            ),
        )
    }
}

/// The words of a notice a redirect names by code (a link cannot put
/// text of its own on a console page).
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => "Tenant created.",
        "status" => "Status changed.",
        "visibility" => "Visibility changed.",
        "shared" => "Shared.",
        "unshared" => "No longer shared.",
        "deleted" => "Deleted. It can be restored from Recently deleted.",
        "restored" => "Restored.",
        _ => return None,
    })
}

/// A refusal the console makes itself, shaped like the API's.
fn refusal(status: StatusCode, message: &str) -> Answer {
    Answer {
        status,
        headers: Default::default(),
        json: json!({ "error": { "code": "refused", "message": message } }),
    }
}

/// An API message as a sentence.
fn sentence(m: &str) -> String {
    let m = m.trim();
    if m.is_empty() {
        return "the request was not accepted.".into();
    }
    if m.ends_with('.') {
        m.to_string()
    } else {
        format!("{m}.")
    }
}

/// Reads a JSON answer, or renders the failure.
macro_rules! answer {
    ($ctx:expr, $call:expr) => {
        match $call.await {
            Ok(a) if a.status.is_success() => a,
            Ok(a) => return $ctx.failure(&a).await,
            Err(e) => return $ctx.unreachable(&e),
        }
    };
}

pub(super) async fn dispatch(ctx: &Ctx, method: &Method, segs: &[&str]) -> Response<Body> {
    match (method, segs) {
        (&Method::GET, []) => home(ctx).await,
        (&Method::GET, ["tenants"]) => tenants(ctx).await,
        (&Method::POST, ["tenants"]) => create_tenant(ctx).await,
        (&Method::GET, ["t", id]) => overview(ctx, id).await,
        (&Method::POST, ["t", id, "status"]) => set_status(ctx, id).await,
        (&Method::GET, ["t", id, "documents"]) => documents(ctx, id).await,
        (&Method::POST, ["t", id, "documents", doc, op]) => document_change(ctx, id, doc, op).await,
        (&Method::GET, ["t", id, "audit"]) => audit(ctx, id).await,
        (&Method::GET, ["t", id, "audit", "download"]) => audit_download(ctx, id).await,
        (&Method::GET, ["t", id, "access"]) => access(ctx, id).await,
        (&Method::GET, ["t", id, "export"]) => export_page(ctx, id).await,
        (&Method::POST, ["t", id, "export"]) => export(ctx, id).await,
        _ => {
            let nav = ctx.nav(None, "").await;
            html_page(
                StatusCode::NOT_FOUND,
                view::problem(Some(&nav), "Not found", "There is no such page."),
            )
        }
    }
}

/// Where a signed-in user starts: the tenants (platform administrators),
/// else the first section of their own tenant they may use; with none, a
/// page that says so.
async fn home(ctx: &Ctx) -> Response<Body> {
    let nav = ctx.nav(None, "").await;
    match nav.links.first() {
        Some((_, href, _)) => redirect(href, &[]),
        None => html_page(
            StatusCode::OK,
            view::page(
                "Nothing to manage",
                Some(&nav),
                None,
                html! {
                    p id="no-sections" {
                        "You are signed in, but your roles give you nothing to see or manage here. "
                        "If you need to, ask your organisation's administrator."
                    }
                },
            ),
        ),
    }
}

// ---- tenants ---------------------------------------------------------------

/// How many tenants a search reads at most, and shows.
const SEARCH_SCAN: usize = 10_000;
const SEARCH_SHOW: usize = 100;

async fn tenants(ctx: &Ctx) -> Response<Body> {
    let search = ctx.q("q").map(str::to_lowercase);
    let mut rows: Vec<Tenant> = Vec::new();
    let mut next: Option<String> = None;
    let mut truncated = false;
    match &search {
        None => {
            let mut path = "/v1/tenants?limit=25".to_string();
            if let Some(c) = ctx.q("cursor") {
                path.push_str(&format!("&cursor={}", enc(c)));
            }
            let a = answer!(ctx, ctx.api.get(&path));
            rows = serde_json::from_value(a.json["tenants"].clone()).unwrap_or_default();
            next = a.json["next"].as_str().map(String::from);
        }
        Some(s) => {
            let mut cursor: Option<String> = None;
            let mut scanned = 0;
            loop {
                let mut path = "/v1/tenants?limit=500".to_string();
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", enc(c)));
                }
                let a = answer!(ctx, ctx.api.get(&path));
                let page: Vec<Tenant> =
                    serde_json::from_value(a.json["tenants"].clone()).unwrap_or_default();
                scanned += page.len();
                rows.extend(page.into_iter().filter(|t| {
                    t.tenant_id.as_str().to_lowercase().contains(s.as_str())
                        || t.name.to_lowercase().contains(s.as_str())
                }));
                cursor = a.json["next"].as_str().map(String::from);
                if rows.len() > SEARCH_SHOW || cursor.is_none() || scanned >= SEARCH_SCAN {
                    truncated = rows.len() > SEARCH_SHOW || cursor.is_some();
                    break;
                }
            }
            rows.truncate(SEARCH_SHOW);
        }
    }
    let may_create = ctx.may("CreateTenant", ctx.own().as_str()).await;
    let now = ctx.now;
    let body = html! {
        form.filters method="get" action="/console/tenants" role="search" {
            label { "Search by id or name"
                input type="search" name="q" id="tenant-search" value=(ctx.q("q").unwrap_or_default());
            }
            button type="submit" { "Search" }
            @if search.is_some() { a href="/console/tenants" { "Clear" } }
        }
        @if truncated {
            p.muted { "Showing the first " (rows.len()) " matches; refine the search to see others." }
        }
        div.table-wrap {
            table.responsive id="tenants" {
                thead { tr { th { "Tenant" } th { "Name" } th { "Status" } th { "Tier" } th { "Documents" } th { "Created" } } }
                tbody {
                    @for t in &rows {
                        tr {
                            td data-label="Tenant" { a href=(format!("/console/t/{}", enc(t.tenant_id.as_str()))) { (t.tenant_id.as_str()) } }
                            td data-label="Name" { (t.name) }
                            td data-label="Status" { (status_badge(t.status.as_str())) }
                            td data-label="Tier" { (badge("info", t.subscription.tier.as_str())) }
                            td data-label="Documents" { (int(u64::from(t.usage.documents))) }
                            td data-label="Created" { (when(t.created_at, now)) }
                        }
                    }
                    @if rows.is_empty() {
                        tr { td colspan="6" { "No tenants." } }
                    }
                }
            }
        }
        @if let Some(n) = &next {
            nav.pager aria-label="Pages" {
                a href=(format!("/console/tenants?cursor={}", enc(n))) rel="next" { "Next page" }
            }
        }
        @if may_create {
            h2 { "New tenant" }
            form.stack.card method="post" action="/console/tenants" id="create-tenant" {
                (view::csrf(&ctx.session.csrf))
                label { "Tenant id (letters, digits, - and _)" input name="tenantId" required maxlength="64"; }
                label { "Name" input name="name" required maxlength="200"; }
                label { "Tier"
                    select name="tier" { option value="basic" { "basic" } option value="pro" { "pro" } option value="enterprise" { "enterprise" } }
                }
                label { "Status"
                    select name="status" { option value="trial" { "trial" } option value="active" { "active" } }
                }
                label { "Features (comma-separated)" input name="features" placeholder="export, audit-logs"; }
                label { "Max documents" input type="number" name="maxDocuments" min="0" value="1000" required; }
                label { "Max users" input type="number" name="maxUsers" min="0" value="25" required; }
                label { "Max storage (GB)" input type="number" name="maxStorageGB" min="0" value="10" required; }
                label { "Max queries per month" input type="number" name="maxQueriesPerMonth" min="0" value="100000" required; }
                label { "Data retention after cancellation (days)" input type="number" name="dataRetentionDays" min="0" value="90" required; }
                label { "Allowed file types (comma-separated)" input name="allowedFileTypes" value="pdf, docx, txt"; }
                button type="submit" { "Create tenant" }
            }
        }
    };
    ctx.page(None, "tenants", "Tenants", body).await
}

/// A comma-separated form field as its items.
pub(super) fn list_field(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn number(s: &str) -> Value {
    s.trim()
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(s.to_string()))
}

async fn create_tenant(ctx: &Ctx) -> Response<Body> {
    let id = ctx.f("tenantId").to_string();
    let body = json!({
        "tenantId": id,
        "name": ctx.f("name"),
        "status": ctx.f("status"),
        "createdAt": ctx.now.to_rfc3339(),
        "subscription": {
            "tier": ctx.f("tier"),
            "startDate": ctx.now.format("%Y-%m-%d").to_string(),
            "features": list_field(ctx.f("features")),
        },
        "limits": {
            "maxDocuments": number(ctx.f("maxDocuments")),
            "maxUsers": number(ctx.f("maxUsers")),
            "maxStorageGB": number(ctx.f("maxStorageGB")),
            "maxQueriesPerMonth": number(ctx.f("maxQueriesPerMonth")),
        },
        "settings": {
            "dataRetentionDays": number(ctx.f("dataRetentionDays")),
            "allowedFileTypes": list_field(ctx.f("allowedFileTypes")),
        },
    });
    answer!(
        ctx,
        ctx.api.call(Method::POST, "/v1/tenants", &[], Some(body))
    );
    redirect(&format!("/console/t/{}?notice=created", enc(&id)), &[])
}

async fn overview(ctx: &Ctx, id: &str) -> Response<Body> {
    let path = format!("/v1/tenants/{}", enc(id));
    let usage_path = format!("{path}/usage");
    let (tenant_answer, usage_answer) = tokio::join!(ctx.api.get(&path), ctx.api.get(&usage_path));
    let tenant_answer = match tenant_answer {
        Ok(a) => a,
        Err(e) => return ctx.unreachable(&e),
    };
    let usage = match usage_answer {
        Ok(a) if a.status.is_success() => Some(a.json),
        _ => None,
    };
    let tenant: Option<Tenant> = tenant_answer
        .status
        .is_success()
        .then(|| serde_json::from_value(tenant_answer.json.clone()).ok())
        .flatten();
    if tenant.is_none() && usage.is_none() {
        return ctx.failure(&tenant_answer).await;
    }
    let etag = tenant_answer
        .headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let may_status = tenant.is_some() && ctx.may("UpdateTenantStatus", id).await;
    let now = ctx.now;
    let limits: Option<crate::model::Limits> =
        tenant.as_ref().map(|t| t.limits.clone()).or_else(|| {
            usage
                .as_ref()
                .and_then(|u| serde_json::from_value(u["limits"].clone()).ok())
        });
    let used: Option<crate::model::Usage> =
        tenant.as_ref().map(|t| t.usage.clone()).or_else(|| {
            usage
                .as_ref()
                .and_then(|u| serde_json::from_value(u["usage"].clone()).ok())
        });
    let title = tenant
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_else(|| id.to_string());
    let body = html! {
        @if let Some(t) = &tenant {
            div.card {
                dl.facts {
                    dt { "Tenant id" } dd { (t.tenant_id.as_str()) }
                    dt { "Status" } dd id="tenant-status" { (status_badge(t.status.as_str())) }
                    dt { "Tier" } dd { (badge("info", t.subscription.tier.as_str())) }
                    dt { "Features" } dd {
                        @if t.subscription.features.is_empty() { span.muted { "none" } }
                        @for f in &t.subscription.features { (badge("info", f)) " " }
                    }
                    dt { "Created" } dd { (when(t.created_at, now)) }
                    dt { "Subscription since" } dd { (t.subscription.start_date.format("%-d %B %Y").to_string()) }
                    dt { "Recovery window" } dd {
                        @match (t.settings.recovery_window_days, ctx.recovery_days) {
                            (Some(d), _) => { (int(u64::from(d))) " days for deleted documents" }
                            (None, Some(d)) => { (int(u64::from(d))) " days for deleted documents (the service's default)" }
                            (None, None) => { "the service's default for deleted documents" }
                        }
                    }
                    dt { "Retention" } dd { (int(u64::from(t.settings.data_retention_days))) " days after cancellation" }
                    @if let Some(c) = t.cancelled_at {
                        dt { "Cancelled" } dd { (when(c, now)) }
                        @if t.purged_at.is_none() {
                            dt { "Data purged" } dd id="purge-date" {
                                @match crate::retention::purge_due(c, t.settings.data_retention_days) {
                                    Some(due) => (when(due, now)),
                                    None => "never",
                                }
                            }
                        }
                    }
                    @if let Some(p) = t.purged_at {
                        dt { "Purged" } dd { (when(p, now)) }
                    }
                    @if let Some(b) = &t.billing {
                        dt { "Billing" } dd { (format!("{:?}", b.provider).to_lowercase()) }
                    }
                }
            }
        }
        @if let (Some(l), Some(u)) = (&limits, &used) {
            h2 { "Usage and limits" }
            div.card id="usage" {
                (meter("Documents", u64::from(u.documents), u64::from(l.max_documents), int))
                (meter("Users", u64::from(u.users), u64::from(l.max_users), int))
                (meter("Storage", u.storage_bytes.unwrap_or(u64::from(u.storage_gb) * 1_000_000_000), u64::from(l.max_storage_gb) * 1_000_000_000, bytes))
                (meter("Queries this month", u64::from(u.queries_this_month), u64::from(l.max_queries_per_month), int))
            }
        }
        @if let Some(u) = &usage {
            p.muted {
                "Decisions in " (u["decisions"]["month"].as_str().unwrap_or_default()) ": "
                (int(u["decisions"]["allow"].as_u64().unwrap_or(0))) " allowed, "
                (int(u["decisions"]["deny"].as_u64().unwrap_or(0))) " denied."
            }
        }
        @if may_status {
            @if let Some(t) = &tenant {
                h2 { "Status" }
                form.inline.card method="post" action=(format!("/console/t/{}/status", enc(id))) id="status-form" {
                    (view::csrf(&ctx.session.csrf))
                    input type="hidden" name="etag" value=(etag);
                    label { "New status"
                        select name="status" id="status-select" {
                            @for s in ["active", "trial", "suspended", "cancelled"] {
                                option value=(s) selected[s == t.status.as_str()] { (s) }
                            }
                        }
                    }
                    button type="submit" { "Change status" }
                }
            }
        }
    };
    ctx.page(Some(id), "overview", &title, body).await
}

async fn set_status(ctx: &Ctx, id: &str) -> Response<Body> {
    let path = format!("/v1/tenants/{}", enc(id));
    let a = answer!(ctx, ctx.api.get(&path));
    let mut t = a.json;
    t["status"] = json!(ctx.f("status"));
    let etag = HeaderValue::from_str(ctx.f("etag")).unwrap_or(HeaderValue::from_static("\"\""));
    answer!(
        ctx,
        ctx.api
            .call(Method::PUT, &path, &[(IF_MATCH, etag)], Some(t))
    );
    redirect(&format!("/console/t/{}?notice=status", enc(id)), &[])
}

// ---- documents -------------------------------------------------------------

async fn documents(ctx: &Ctx, id: &str) -> Response<Body> {
    let deleted = ctx.q("view") == Some("deleted");
    let mut path = format!(
        "/v1/tenants/{}/documents?limit=25&deleted={}",
        enc(id),
        if deleted { "only" } else { "exclude" }
    );
    if let Some(c) = ctx.q("cursor") {
        path.push_str(&format!("&cursor={}", enc(c)));
    }
    let a = answer!(ctx, ctx.api.get(&path));
    let docs = a.json["documents"].as_array().cloned().unwrap_or_default();
    let next = a.json["next"].as_str().map(String::from);
    let base = format!("/console/t/{}/documents", enc(id));
    let now = ctx.now;
    let csrf = &ctx.session.csrf;
    let body = html! {
        nav.pager aria-label="Views" {
            @if deleted {
                a href=(base) { "Documents" } strong { "Recently deleted" }
            } @else {
                strong { "Documents" } a href=(format!("{base}?view=deleted")) id="deleted-view" { "Recently deleted" }
            }
        }
        div.table-wrap {
            table.responsive id="documents" {
                thead { tr {
                    th { "Document" } th { "Owner" } th { "Visibility" } th { "Classification" } th { "Size" }
                    @if deleted { th { "Deleted" } th { "Restorable" } } @else { th { "Shared with" } }
                    th { "Actions" }
                } }
                tbody {
                    @for d in &docs {
                        @let doc_id = d["documentId"].as_str().unwrap_or_default();
                        @let action = |op: &str| format!("{base}/{}/{op}", enc(doc_id));
                        tr data-document=(doc_id) {
                            td data-label="Document" { (doc_id) br; span.muted { (d["fileType"].as_str().unwrap_or_default()) } }
                            td data-label="Owner" { (d["ownerId"].as_str().unwrap_or_default()) }
                            td data-label="Visibility" { (badge("info", d["visibility"].as_str().unwrap_or_default())) }
                            td data-label="Classification" { (d["classification"].as_u64().unwrap_or(0)) }
                            td data-label="Size" { (bytes(d["sizeBytes"].as_u64().unwrap_or(0))) }
                            @if deleted {
                                @let deleted_at = d["deletedAt"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
                                @let purge = d["purgeAfter"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
                                td data-label="Deleted" { @if let Some(t) = deleted_at { (when(t, now)) } }
                                td data-label="Restorable" {
                                    @if let Some(p) = purge {
                                        @let left = (p - now).num_days().max(0);
                                        span title=(p.format("%Y-%m-%d %H:%M UTC").to_string()) { (left) " days left" }
                                    }
                                }
                                td data-label="Actions" {
                                    form.inline method="post" action=(action("restore")) {
                                        (view::csrf(csrf))
                                        button.secondary type="submit" { "Restore" }
                                    }
                                }
                            } @else {
                                td data-label="Shared with" {
                                    @for s in d["sharedWith"].as_array().cloned().unwrap_or_default() {
                                        @let grantee = match (s["userId"].as_str(), s["role"].as_str()) {
                                            (Some(u), _) => format!("user:{u}"),
                                            (_, Some(r)) => format!("role:{r}"),
                                            _ => String::new(),
                                        };
                                        div.share {
                                            (grantee) " (" (s["permission"].as_str().unwrap_or_default()) ") "
                                            form.inline method="post" action=(action("unshare")) {
                                                (view::csrf(csrf))
                                                input type="hidden" name="grantee" value=(grantee);
                                                button.secondary type="submit" aria-label=(format!("Stop sharing with {grantee}")) { "Remove" }
                                            }
                                        }
                                    }
                                }
                                td data-label="Actions" {
                                    details {
                                        summary { "Change" }
                                        form.inline method="post" action=(action("visibility")) {
                                            (view::csrf(csrf))
                                            label { "Visibility"
                                                select name="visibility" {
                                                    @for v in ["private", "shared", "public"] {
                                                        option value=(v) selected[d["visibility"].as_str() == Some(v)] { (v) }
                                                    }
                                                }
                                            }
                                            button type="submit" { "Save" }
                                        }
                                        form.inline method="post" action=(action("share")) {
                                            (view::csrf(csrf))
                                            label { "Share with"
                                                select name="kind" { option value="role" { "role" } option value="user" { "user" } }
                                            }
                                            label { "Name or id" input name="grantee" required maxlength="128"; }
                                            label { "Permission"
                                                select name="permission" { option value="read" { "read" } option value="edit" { "edit" } }
                                            }
                                            button type="submit" { "Share" }
                                        }
                                        form.inline method="post" action=(action("delete")) {
                                            (view::csrf(csrf))
                                            button.danger type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if docs.is_empty() {
                        tr { td colspan="7" { @if deleted { "No recently deleted documents." } @else { "No documents." } } }
                    }
                }
            }
        }
        @if let Some(n) = &next {
            nav.pager aria-label="Pages" {
                a rel="next" href=(format!("{base}?{}cursor={}", if deleted { "view=deleted&" } else { "" }, enc(n))) { "Next page" }
            }
        }
    };
    ctx.page(Some(id), "documents", "Documents", body).await
}

async fn document_change(ctx: &Ctx, id: &str, doc: &str, op: &str) -> Response<Body> {
    let path = format!("/v1/tenants/{}/documents/{}", enc(id), enc(doc));
    let back = format!("/console/t/{}/documents", enc(id));
    let (call, notice, view) = match op {
        "visibility" => {
            let a = answer!(ctx, ctx.api.get(&path));
            // Replace only the version read: a share removed meanwhile is
            // not brought back (412, in words).
            let etag = a.headers.get(ETAG).cloned();
            let Ok(d) = serde_json::from_value::<Document>(a.json) else {
                return ctx.unreachable("the document's record is not readable");
            };
            let body = json!({
                "ownerId": d.owner_id,
                "visibility": ctx.f("visibility"),
                "classification": d.classification,
                "fileType": d.file_type,
                "sizeBytes": d.size_bytes,
                "sharedWith": d.shared_with,
            });
            let condition: Vec<_> = etag.into_iter().map(|v| (IF_MATCH, v)).collect();
            (
                ctx.api
                    .call(Method::PUT, &path, &condition, Some(body))
                    .await,
                "visibility",
                "",
            )
        }
        "share" => {
            let key = if ctx.f("kind") == "user" {
                "userId"
            } else {
                "role"
            };
            let body = json!({ key: ctx.f("grantee"), "permission": ctx.f("permission") });
            (
                ctx.api
                    .call(Method::POST, &format!("{path}/shares"), &[], Some(body))
                    .await,
                "shared",
                "",
            )
        }
        "unshare" => (
            ctx.api
                .call(
                    Method::DELETE,
                    &format!("{path}/shares/{}", enc(ctx.f("grantee"))),
                    &[],
                    None,
                )
                .await,
            "unshared",
            "",
        ),
        "delete" => (
            ctx.api.call(Method::DELETE, &path, &[], None).await,
            "deleted",
            "",
        ),
        "restore" => (
            ctx.api
                .call(Method::POST, &format!("{path}/restore"), &[], None)
                .await,
            "restored",
            "view=deleted&",
        ),
        _ => {
            let nav = ctx.nav(None, "").await;
            return html_page(
                StatusCode::NOT_FOUND,
                view::problem(Some(&nav), "Not found", "There is no such page."),
            );
        }
    };
    match call {
        Ok(a) if a.status.is_success() => redirect(&format!("{back}?{view}notice={notice}"), &[]),
        Ok(a) => ctx.failure(&a).await,
        Err(e) => ctx.unreachable(&e),
    }
}

// ---- audit log -------------------------------------------------------------

/// A `datetime-local` value (taken as UTC) or an RFC 3339 time, as RFC 3339.
fn time_value(s: &str) -> Option<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).to_rfc3339());
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc().to_rfc3339())
}

/// The API query of the audit filters in the page's query.
fn audit_filters(ctx: &Ctx) -> Result<String, String> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for k in ["from", "to"] {
        if let Some(v) = ctx.q(k) {
            let t = time_value(v).ok_or(format!("`{k}` is not a date and time"))?;
            q.append_pair(k, &t);
        }
    }
    for k in ["user", "action", "decision"] {
        if let Some(v) = ctx.q(k) {
            q.append_pair(k, v);
        }
    }
    Ok(q.finish())
}

async fn audit(ctx: &Ctx, id: &str) -> Response<Body> {
    let filters = match audit_filters(ctx) {
        Ok(f) => f,
        Err(e) => return ctx.failure(&refusal(StatusCode::BAD_REQUEST, &e)).await,
    };
    let mut path = format!(
        "/v1/tenants/{}/audit-logs?limit={AUDIT_PAGE}&{filters}",
        enc(id)
    );
    if let Some(c) = ctx.q("cursor") {
        path.push_str(&format!("&cursor={}", enc(c)));
    }
    let a = answer!(ctx, ctx.api.get(&path));
    let events: Vec<AuditEvent> =
        serde_json::from_value(a.json["events"].clone()).unwrap_or_default();
    let next = a.json["next"].as_str().map(String::from);
    let chain = verify_span(ctx, id, &events).await;
    let now = ctx.now;
    let base = format!("/console/t/{}/audit", enc(id));
    let keep = |extra: &str| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for k in ["from", "to", "user", "action", "decision"] {
            if let Some(v) = ctx.q(k) {
                q.append_pair(k, v);
            }
        }
        let s = q.finish();
        match (s.is_empty(), extra.is_empty()) {
            (true, _) => extra.to_string(),
            (false, true) => s,
            (false, false) => format!("{s}&{extra}"),
        }
    };
    let body = html! {
        form.filters method="get" action=(base) id="audit-filters" {
            label { "From (UTC)" input type="datetime-local" name="from" value=(ctx.q("from").unwrap_or_default()); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(ctx.q("to").unwrap_or_default()); }
            label { "User" input name="user" value=(ctx.q("user").unwrap_or_default()); }
            label { "Action" input name="action" value=(ctx.q("action").unwrap_or_default()) placeholder="e.g. Read, ShareDocument"; }
            label { "Decision"
                select name="decision" {
                    option value="" { "any" }
                    option value="allow" selected[ctx.q("decision") == Some("allow")] { "allow" }
                    option value="deny" selected[ctx.q("decision") == Some("deny")] { "deny" }
                }
            }
            button type="submit" { "Filter" }
        }
        p {
            "Download these records: "
            a href=(format!("{base}/download?{}", keep("format=ndjson"))) id="download-ndjson" { "NDJSON" }
            " · "
            a href=(format!("{base}/download?{}", keep("format=ocsf"))) id="download-ocsf" { "OCSF" }
        }
        (chain)
        div.table-wrap {
            table.responsive id="audit" {
                thead { tr { th { "When" } th { "User" } th { "Action" } th { "Resource" } th { "Outcome" } } }
                tbody {
                    @for e in &events {
                        @let decision = e.details.get("decision").and_then(Value::as_str);
                        tr {
                            td data-label="When" { (when(e.timestamp, now)) }
                            td data-label="User" { (e.user_id.as_deref().unwrap_or("—")) }
                            td data-label="Action" { (e.action) }
                            td data-label="Resource" { (e.resource) }
                            td data-label="Outcome" {
                                @match decision {
                                    Some(d) => span class=(format!("decision-{}", d.to_lowercase())) { (d) },
                                    None => @if e.success { (badge("ok", "succeeded")) } @else { (badge("bad", "failed")) },
                                }
                                details {
                                    summary { "Details" }
                                    dl.facts {
                                        dt { "Event" } dd { (e.event_id) }
                                        @if let Some(p) = e.details.get("determiningPolicies").or(e.details.get("determining_policies")).and_then(Value::as_array) {
                                            dt { "Determining policies" } dd {
                                                @for x in p { code { (x.as_str().unwrap_or_default()) } " " }
                                            }
                                        }
                                        @if let Some(r) = e.details.get("reason").and_then(Value::as_str) {
                                            dt { "Reason" } dd { (r) }
                                        }
                                        @if let Some(r) = e.details.get("requestId").or(e.details.get("request_id")).and_then(Value::as_str) {
                                            dt { "Request id" } dd { (r) }
                                        }
                                        @if let Some(m) = &e.error_message { dt { "Error" } dd { (m) } }
                                        dt { "From" } dd { (e.ip_address.as_deref().unwrap_or("—")) " " span.muted { (e.user_agent.as_deref().unwrap_or_default()) } }
                                        dt { "Chain" } dd { (e.writer_id) " #" (e.seq) }
                                    }
                                    pre { (serde_json::to_string_pretty(&e.details).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                    @if events.is_empty() { tr { td colspan="5" { "No records match." } } }
                }
            }
        }
        @if let Some(n) = &next {
            nav.pager aria-label="Pages" {
                a rel="next" href=(format!("{base}?{}", keep(&format!("cursor={}", enc(n))))) { "Older records" }
            }
        }
    };
    ctx.page(Some(id), "audit", "Audit log", body).await
}

/// The hash chains of every record (unfiltered) in the time span the page
/// shows, checked: read through the API like the page itself.
async fn verify_span(ctx: &Ctx, id: &str, shown: &[AuditEvent]) -> Markup {
    let (Some(oldest), Some(newest)) = (
        shown.iter().map(|e| e.timestamp).min(),
        shown.iter().map(|e| e.timestamp).max(),
    ) else {
        return html! {};
    };
    let to = newest + chrono::Duration::microseconds(1);
    let mut records: Vec<AuditEvent> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut complete = false;
    for _ in 0..10 {
        let mut path = format!(
            "/v1/tenants/{}/audit-logs?limit=1000&from={}&to={}",
            enc(id),
            enc(&oldest.to_rfc3339()),
            enc(&to.to_rfc3339())
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let Ok(a) = ctx.api.get(&path).await else {
            break;
        };
        if !a.status.is_success() {
            break;
        }
        let page: Vec<AuditEvent> =
            serde_json::from_value(a.json["events"].clone()).unwrap_or_default();
        records.extend(page);
        cursor = a.json["next"].as_str().map(String::from);
        if cursor.is_none() {
            complete = true;
            break;
        }
    }
    let findings = crate::audit::verify(&records);
    let writers: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.writer_id.as_str()).collect();
    html! {
        @if findings.is_empty() {
            p.notice id="chain-result" {
                "Hash chains verified: " (int(records.len() as u64)) " records from "
                (int(writers.len() as u64)) " writers between "
                (oldest.format("%Y-%m-%d %H:%M:%S UTC").to_string()) " and "
                (newest.format("%Y-%m-%d %H:%M:%S UTC").to_string()) " are intact"
                @if !complete { " (the newest " (int(records.len() as u64)) " of the span)" }
                "."
            }
        } @else {
            div.problem id="chain-result" role="alert" {
                p { "Hash chain verification found " (findings.len()) " problems in this span:" }
                ul { @for f in &findings { li { code { (serde_json::to_string(f).unwrap_or_default()) } } } }
            }
        }
    }
}

async fn audit_download(ctx: &Ctx, id: &str) -> Response<Body> {
    let filters = match audit_filters(ctx) {
        Ok(f) => f,
        Err(e) => return ctx.failure(&refusal(StatusCode::BAD_REQUEST, &e)).await,
    };
    let ocsf = ctx.q("format") == Some("ocsf");
    let first = format!(
        "/v1/tenants/{}/audit-logs?limit=1000&format={}&{filters}",
        enc(id),
        if ocsf { "ocsf" } else { "json" }
    );
    // The first page decides the answer: a refusal is a page, not a file.
    let a = answer!(ctx, ctx.api.get(&first));
    let (tx, body) = channel_body(8);
    let api = Api {
        router: ctx.api.router.clone(),
        state: ctx.api.state.clone(),
        origin: ctx.api.origin.clone(),
        token: ctx.api.token.clone(),
    };
    tokio::spawn(async move {
        let mut answer = a;
        for _ in 0..DOWNLOAD_MAX_PAGES {
            let mut chunk = String::new();
            for e in answer.json["events"].as_array().into_iter().flatten() {
                chunk.push_str(&e.to_string());
                chunk.push('\n');
            }
            if tx.send(chunk.into()).await.is_err() {
                return;
            }
            let Some(c) = answer.json["next"].as_str() else {
                return;
            };
            match api.get(&format!("{first}&cursor={}", enc(c))).await {
                Ok(next) if next.status.is_success() => answer = next,
                failed => {
                    let why = match failed {
                        Ok(a) => a.error().map(|(_, m)| m).unwrap_or_default(),
                        Err(e) => e,
                    };
                    let _ = tx.send(incomplete(&why)).await;
                    return;
                }
            }
        }
        let limit = format!(
            "more records than one download holds ({} pages of 1,000); narrow the time range",
            DOWNLOAD_MAX_PAGES
        );
        let _ = tx.send(incomplete(&limit)).await;
    });
    let name = format!("audit-{id}{}", if ocsf { "-ocsf" } else { "" });
    download(body, &name)
}

/// The last line of a download that stopped early, so a short file never
/// passes for a whole one (like the export's `error` line).
fn incomplete(why: &str) -> bytes::Bytes {
    let line = json!({ "type": "error", "message": format!("the download is incomplete: {why}") });
    format!("{line}\n").into()
}

// ---- access checker --------------------------------------------------------

async fn access(ctx: &Ctx, id: &str) -> Response<Body> {
    let asked = ctx.q("user").is_some() && ctx.q("action").is_some();
    let result = if asked {
        let roles: Vec<String> = list_field(ctx.q("roles").unwrap_or_default());
        let mut body = json!({
            "principal": {
                "userId": ctx.q("user"),
                "roles": roles,
                "clearance": number(ctx.q("clearance").unwrap_or("0")),
            },
            "action": ctx.q("action"),
        });
        if let Some(d) = ctx.q("document") {
            body["documentId"] = json!(d);
        }
        let path = format!("/v1/tenants/{}/access-check", enc(id));
        Some(answer!(
            ctx,
            ctx.api.call(Method::POST, &path, &[], Some(body))
        ))
    } else {
        None
    };
    // Users as the audit log last saw them (roles and clearance come from
    // their tokens, so the store has no other record of them). Reading it
    // is also what the page needs permission for.
    let seen = answer!(
        ctx,
        ctx.api
            .get(&format!("/v1/tenants/{}/audit-logs?limit=1000", enc(id)))
    );
    let users = recent_users(&seen.json);
    let now = ctx.now;
    let base = format!("/console/t/{}/access", enc(id));
    let q = |k: &str| ctx.q(k).unwrap_or_default().to_string();
    let body = html! {
        p.muted { "Why may (or may not) a user do something? Describe the user as your identity provider does; the decision is the policies' own, with the same data." }
        @if !users.is_empty() {
            details.card id="recent-users" open[result.is_none()] {
                summary { "Pick a user the audit log has seen" }
                ul {
                    @for u in &users {
                        li {
                            a href=(format!("{base}?user={}&roles={}&clearance={}", enc(&u.id), enc(&u.roles.join(",")), u.clearance)) { (u.id) }
                            " — " (if u.roles.is_empty() { "no roles".to_string() } else { u.roles.join(", ") })
                            ", clearance " (u.clearance) " · " span.muted { "seen " (when(u.seen, now)) }
                        }
                    }
                }
            }
        }
        form.filters method="get" action=(format!("/console/t/{}/access", enc(id))) id="access-form" {
            label { "User id" input name="user" required value=(q("user")); }
            label { "Roles (comma-separated)" input name="roles" value=(q("roles")) placeholder="viewer"; }
            label { "Clearance"
                select name="clearance" {
                    @for l in 0..=crate::model::Level::MAX {
                        option value=(l) selected[q("clearance") == l.to_string()] { (l) }
                    }
                }
            }
            label { "Action"
                select name="action" {
                    @for a in DOCUMENT_ACTIONS.iter().chain(TENANT_ACTIONS.iter()) {
                        option value=(a) selected[q("action") == *a] { (a) }
                    }
                }
            }
            label { "Document id (for document actions)" input name="document" value=(q("document")); }
            button type="submit" { "Check" }
        }
        @if let Some(r) = &result {
            @let decision = r.json["decision"].as_str().unwrap_or_default();
            div.card id="access-result" {
                p { "Decision: " span class=(format!("decision-{}", decision.to_lowercase())) id="access-decision" { (decision) } }
                @if let Some(reason) = r.json["reason"].as_str() { p { "Reason: " (reason) } }
                @if let Some(m) = r.json["message"].as_str() { p { "Message shown to the user: " (m) } }
                @let policies = r.json["determiningPolicies"].as_array().cloned().unwrap_or_default();
                @if policies.is_empty() {
                    p { "No policy permitted this, so it is denied." }
                } @else {
                    h2 { "Determining policies" }
                    @for p in &policies {
                        div.policy {
                            p { code { (p["policyId"].as_str().unwrap_or_default()) } }
                            @if let Some(t) = p["text"].as_str() { pre { (t) } }
                        }
                    }
                }
                @if let Some(errors) = r.json["errors"].as_array().filter(|e| !e.is_empty()) {
                    h2 { "Evaluation errors" }
                    ul { @for e in errors { li { (e.as_str().unwrap_or_default()) } } }
                }
                @if !r.json["search"].is_null() {
                    h2 { "What this user's searches are filtered to" }
                    p { "Plan: " (r.json["search"]["kind"].as_str().unwrap_or_default()) }
                    pre id="search-filter" { (serde_json::to_string_pretty(&r.json["search"]["filters"]).unwrap_or_default()) }
                }
            }
        }
    };
    ctx.page(Some(id), "access", "Access checker", body).await
}

/// A user as their latest decision record describes them.
struct SeenUser {
    id: String,
    roles: Vec<String>,
    clearance: u64,
    seen: DateTime<Utc>,
}

/// The distinct users of decision records (newest first), at most 50.
fn recent_users(page: &Value) -> Vec<SeenUser> {
    let events: Vec<AuditEvent> =
        serde_json::from_value(page["events"].clone()).unwrap_or_default();
    let mut out: Vec<SeenUser> = Vec::new();
    for e in events {
        let Some(id) = e.user_id else { continue };
        if e.details.get("kind").and_then(Value::as_str) != Some("decision")
            || out.iter().any(|u| u.id == id)
        {
            continue;
        }
        out.push(SeenUser {
            id,
            roles: e.details["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(String::from))
                .collect(),
            clearance: e.details["clearance"].as_u64().unwrap_or(0),
            seen: e.timestamp,
        });
        if out.len() == 50 {
            break;
        }
    }
    out
}

// ---- export ----------------------------------------------------------------

async fn export_page(ctx: &Ctx, id: &str) -> Response<Body> {
    if !ctx.may("Export", id).await {
        return ctx.failure(&refusal(StatusCode::FORBIDDEN, "")).await;
    }
    let body = html! {
        p { "An export holds the tenant's record, its documents' access records, its policies and its audit records, as NDJSON; `cedargate-admin import` reads it. It is recorded in the audit log." }
        form method="post" action=(format!("/console/t/{}/export", enc(id))) id="export-form" {
            (view::csrf(&ctx.session.csrf))
            button type="submit" { "Export and download" }
        }
    };
    ctx.page(Some(id), "export", "Export", body).await
}

async fn export(ctx: &Ctx, id: &str) -> Response<Body> {
    let path = format!("/v1/tenants/{}/export", enc(id));
    let resp = match ctx.api.send(Method::POST, &path, &[], None).await {
        Ok(r) => r,
        Err(e) => return ctx.unreachable(&e),
    };
    if !resp.status().is_success() {
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let a = Answer {
            status: parts.status,
            headers: parts.headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        return ctx.failure(&a).await;
    }
    // Stream the API's body through as the download.
    let (tx, body) = channel_body(16);
    let mut incoming = resp.into_body();
    tokio::spawn(async move {
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { return };
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
        }
    });
    download(body, &format!("tenant-{id}-export"))
}

/// A streamed NDJSON body as a file to save: `name` (made safe) `.ndjson`.
fn download(body: Body, name: &str) -> Response<Body> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}.ndjson\"")) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_local_values_are_read_as_utc() {
        assert_eq!(
            time_value("2026-12-02T10:30").as_deref(),
            Some("2026-12-02T10:30:00+00:00")
        );
        assert_eq!(
            time_value("2026-12-02T10:30:00+01:00").as_deref(),
            Some("2026-12-02T09:30:00+00:00")
        );
        assert_eq!(time_value("yesterday"), None);
    }

    #[test]
    fn api_messages_become_sentences() {
        assert_eq!(sentence("tenant t9 exists"), "tenant t9 exists.");
        assert_eq!(sentence("done."), "done.");
        assert_eq!(sentence(""), "the request was not accepted.");
    }
}
