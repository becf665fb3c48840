//! `POST /v1/billing/stripe/webhook`: Stripe's events, authenticated by
//! their signature (not by a token: Stripe is the caller), applied to the
//! tenant whose billing customer they concern (crate::billing::stripe).
//!
//! Answers: 200 once the event is handled — applied, or recorded and left
//! alone (a replay, an older event, an unknown customer or price, a type
//! not acted on), as Stripe expects; 400 for a bad signature or an
//! unreadable event (Stripe retries; nothing is recorded, so a forger
//! cannot fill the logs); 404 when no signing secret is configured; 503
//! when the store cannot be reached (Stripe retries).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::audit::{management_event, Actor, PLATFORM_TENANT};
use crate::billing::stripe::{self, Event, Outcome, StripeConfig};
use crate::ids::TenantId;
use crate::model::Tenant;
use crate::sidecar::http::{read_body, ApiError, Body};
use crate::sidecar::routes::{audit_unavailable, request_meta};
use crate::sidecar::AppState;
use crate::store::{tenant_version, StoreError, TenantPages};

use super::{ok, store_error, Lifecycle};

/// Conditional writes tried before answering 503 (Stripe retries).
const MAX_ATTEMPTS: usize = 10;

/// Tenants read per page when an event names no tenant.
const SCAN_PAGE: usize = 500;

pub(super) async fn webhook(
    state: &AppState,
    config: &StripeConfig,
    req: Request<Incoming>,
    peer: SocketAddr,
    lifecycle: &Lifecycle,
) -> Result<Response<Body>, ApiError> {
    if !config.enabled() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "Stripe webhooks are not configured ([billing.stripe] webhook_secrets)",
        ));
    }
    let meta = request_meta(req.headers(), peer);
    let header = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let (_, body) = read_body(req, state.config.max_body_bytes).await?;
    stripe::verify_signature(
        header.as_deref(),
        &body,
        &config.webhook_secrets,
        lifecycle.now.timestamp(),
        config.tolerance(),
    )
    .map_err(|e| ApiError::bad_request("invalid_signature", e.to_string()))?;
    let event = Event::parse(&body).map_err(|m| ApiError::bad_request("invalid_event", m))?;
    if !event.handled() {
        return Ok(ok(&json!({ "received": true, "outcome": "unhandled" })));
    }
    let actor = Actor {
        user_id: Some("system:stripe".into()),
        meta,
        via: "stripe-webhook",
    };
    let facts = json!({
        "eventId": event.id,
        "eventType": event.kind,
        "eventCreated": event.created,
        "customerId": event.customer(),
    });
    let Some(customer) = event.customer() else {
        return recorded(state, &actor, None, facts, "no_customer").await;
    };
    let mut found = find_tenant(state, &event, &customer).await?;
    let store = state.engine.cache().store();
    for _ in 0..MAX_ATTEMPTS {
        // The tenant found, then (after a conflict) as it is now.
        let Some(mut t) = found.take().filter(|t| billed_to(t, &customer)) else {
            return recorded(state, &actor, None, facts, "unknown_customer").await;
        };
        let version = tenant_version(&t);
        match stripe::apply(config, &event, &mut t) {
            Outcome::Skipped(why) => return recorded(state, &actor, Some(&t), facts, why).await,
            Outcome::Applied(changed) => match store.put_tenant_if(&t, Some(&version)).await {
                Ok(()) => {
                    let mut details = facts.clone();
                    details["changed"] = changed;
                    return recorded(state, &actor, Some(&t), details, "applied").await;
                }
                Err(StoreError::Conflict(_)) => {
                    found = store.get_tenant(&t.tenant_id).await.map_err(store_error)?;
                }
                Err(e) => return Err(store_error(e)),
            },
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the tenant keeps changing; try again",
    ))
}

/// Whether `t` is billed to `customer`.
fn billed_to(t: &Tenant, customer: &str) -> bool {
    t.billing.as_ref().and_then(|b| b.customer_id.as_deref()) == Some(customer)
}

/// The tenant whose billing customer is `customer`: the one the event's
/// metadata names if its customer matches, else the first found by
/// reading the tenants (an event without `metadata.tenant_id` costs a
/// pass over the tenants).
async fn find_tenant(
    state: &AppState,
    event: &Event,
    customer: &str,
) -> Result<Option<Tenant>, ApiError> {
    let store = state.engine.cache().store();
    if let Some(id) = event.tenant_hint().and_then(|h| TenantId::parse(&h).ok()) {
        let hinted = store.get_tenant(&id).await.map_err(store_error)?;
        if let Some(t) = hinted.filter(|t| billed_to(t, customer)) {
            return Ok(Some(t));
        }
    }
    let mut pages = TenantPages::new(store.as_ref(), SCAN_PAGE);
    while let Some(page) = pages.next().await.map_err(store_error)? {
        if let Some(t) = page.into_iter().find(|t| billed_to(t, customer)) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Records what an event did — in its tenant's log, or in the platform's
/// when it concerns no tenant here — and answers 200.
async fn recorded(
    state: &AppState,
    actor: &Actor,
    tenant: Option<&Tenant>,
    mut details: serde_json::Value,
    outcome: &str,
) -> Result<Response<Body>, ApiError> {
    details["outcome"] = outcome.into();
    let (partition, resource) = match tenant {
        Some(t) => (
            t.tenant_id.as_str().to_string(),
            format!("CedarGate::Tenant::{:?}", t.tenant_id.as_str()),
        ),
        None => (PLATFORM_TENANT.to_string(), "Stripe::Event".to_string()),
    };
    details["target"] = match tenant {
        Some(t) => json!({ "tenantId": t.tenant_id.as_str() }),
        None => json!({}),
    };
    let event = management_event(
        &partition,
        "BillingEvent",
        &resource,
        details,
        actor,
        Ok(()),
    );
    state
        .audit
        .record(event)
        .await
        .map_err(|e| audit_unavailable(state, &e))?;
    Ok(ok(&json!({ "received": true, "outcome": outcome })))
}
