//! Stripe webhooks (docs/billing.md): the `Stripe-Signature` check as
//! Stripe documents and implements it, and what subscription and invoice
//! events do to a tenant — its tier, features, limits and status through a
//! configured price table, and its `billing` record.
//!
//! Events may arrive twice and out of order. A tenant's `billing` keeps the
//! ids of the last events applied to it ([`RECENT_EVENTS`]) and the
//! `created` time of the newest: an event already applied, or older than
//! the newest applied, changes nothing. The change and its event id are
//! written together, in one conditional write of the tenant.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::model::{Billing, BillingProvider, Limits, PaymentStatus, Tenant, TenantStatus, Tier};

/// How many applied event ids a tenant keeps.
pub const RECENT_EVENTS: usize = 20;

/// Stripe's default tolerance for a signature's timestamp, in seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Environment variable with the webhook signing secrets, comma-separated
/// (added to those of the configuration file).
pub const SECRETS_ENV: &str = "CEDARGATE_STRIPE_WEBHOOK_SECRETS";

/// `[billing.stripe]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Endpoint signing secrets (`whsec_…`); more than one while a secret
    /// is rolled. Better given in [`SECRETS_ENV`] than in the file.
    #[serde(default)]
    pub webhook_secrets: Vec<String>,
    /// How old a signature's timestamp may be (and how far ahead of this
    /// machine's clock), in seconds.
    #[serde(default)]
    pub tolerance_secs: Option<u64>,
    /// Price → tier, features and limits.
    #[serde(default)]
    pub prices: Vec<PricePlan>,
    /// What a tenant gets once its subscription has ended; without it the
    /// tenant is suspended.
    #[serde(default)]
    pub canceled: Option<Plan>,
    /// Suspend a tenant whose subscription becomes `unpaid` (and reopen it
    /// when paid). Default true.
    #[serde(default)]
    pub suspend_unpaid: Option<bool>,
}

/// A tier with its features and limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub tier: Tier,
    #[serde(default)]
    pub features: BTreeSet<String>,
    pub limits: Limits,
}

/// One row of the price table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricePlan {
    /// Stripe's price (`price_…`) or legacy plan (`plan_…`) id.
    pub price: String,
    pub tier: Tier,
    #[serde(default)]
    pub features: BTreeSet<String>,
    pub limits: Limits,
}

impl PricePlan {
    fn plan(&self) -> Plan {
        Plan {
            tier: self.tier,
            features: self.features.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl StripeConfig {
    /// Adds the secrets of [`SECRETS_ENV`] and checks the table.
    pub fn resolve(mut self) -> Result<Self, String> {
        if let Ok(v) = std::env::var(SECRETS_ENV) {
            self.webhook_secrets.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        if self.webhook_secrets.iter().any(|s| s.trim().is_empty()) {
            return Err("[billing.stripe] webhook_secrets: an empty secret".into());
        }
        let mut seen = BTreeSet::new();
        for p in &self.prices {
            if !(p.price.starts_with("price_") || p.price.starts_with("plan_")) {
                return Err(format!(
                    "[billing.stripe] prices: `{}` is not a Stripe price id (price_…)",
                    p.price
                ));
            }
            if !seen.insert(&p.price) {
                return Err(format!("[billing.stripe] prices: `{}` twice", p.price));
            }
        }
        Ok(self)
    }

    pub fn enabled(&self) -> bool {
        !self.webhook_secrets.is_empty()
    }

    pub fn tolerance(&self) -> u64 {
        self.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS)
    }

    fn plan_of(&self, price: &str) -> Option<Plan> {
        self.prices
            .iter()
            .find(|p| p.price == price)
            .map(PricePlan::plan)
    }
}

/// Why a `Stripe-Signature` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("unable to extract timestamp and signatures from the Stripe-Signature header")]
    Malformed,
    #[error("no v1 signature in the Stripe-Signature header")]
    NoSignatures,
    #[error("no v1 signature matches the payload")]
    Mismatch,
    #[error("the signature's timestamp is outside the tolerance")]
    OutsideTolerance,
}

/// Checks `header` (the `Stripe-Signature` value) against `payload` (the
/// raw body) as Stripe's libraries do: `t=<unix time>` (the first `t`),
/// every `v1=<hex>` tried against HMAC-SHA256(secret, "<t>.<payload>")
/// under every secret, compared in constant time; then the timestamp must
/// be at most `tolerance` seconds old (and, beyond Stripe's libraries, at
/// most `tolerance` seconds ahead). Returns the timestamp.
pub fn verify_signature(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[String],
    now: i64,
    tolerance: u64,
) -> Result<i64, SignatureError> {
    let header = header
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    // Items split on `,`, each into at most three parts on `=`, the value
    // being the second (as Stripe's Python library reads it).
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let mut parts = item.splitn(3, '=');
        let key = parts.next().unwrap_or_default();
        let value = parts.next();
        match key {
            "t" if timestamp.is_none() => {
                let v = value.ok_or(SignatureError::Malformed)?;
                timestamp = Some(
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "v1" => signatures.push(value.unwrap_or_default()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignatures);
    }
    let mut matched = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        for s in &signatures {
            // Stripe compares lowercase hex strings.
            let lower_hex = s.len() == 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let Some(bytes) = lower_hex.then(|| hex::decode(s).ok()).flatten() else {
                continue;
            };
            // Constant time (subtle), and every candidate is checked.
            matched |= mac.clone().verify_slice(&bytes).is_ok();
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let tolerance = i64::try_from(tolerance).unwrap_or(i64::MAX);
    if tolerance > 0
        && (timestamp < now.saturating_sub(tolerance) || timestamp > now.saturating_add(tolerance))
    {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(timestamp)
}

/// The fields of a Stripe event this service reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: DateTime<Utc>,
    pub object: Value,
}

impl Event {
    /// Reads an event (any API version). Only what is needed is required.
    pub fn parse(body: &[u8]) -> Result<Event, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the event is not JSON: {e}"))?;
        let id = v["id"]
            .as_str()
            .filter(|id| id.starts_with("evt_") && id.len() <= 255 && is_id(id))
            .ok_or("`id` is not a Stripe event id")?
            .to_string();
        let kind = v["type"]
            .as_str()
            .filter(|t| !t.is_empty() && t.len() <= 100)
            .ok_or("`type` is missing")?
            .to_string();
        let created = v["created"]
            .as_i64()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or("`created` is not a Unix time")?;
        let object = v["data"]["object"].clone();
        if !object.is_object() {
            return Err("`data.object` is missing".into());
        }
        Ok(Event {
            id,
            kind,
            created,
            object,
        })
    }

    /// Whether this service acts on events of this type.
    pub fn handled(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "customer.subscription.created"
                | "customer.subscription.updated"
                | "customer.subscription.deleted"
                | "invoice.paid"
                | "invoice.payment_failed"
        )
    }

    /// The customer the event is about.
    pub fn customer(&self) -> Option<String> {
        // A string id, or an expanded customer object.
        let c = &self.object["customer"];
        c.as_str()
            .or_else(|| c["id"].as_str())
            .filter(|c| c.starts_with("cus_") && is_id(c))
            .map(String::from)
    }

    /// The tenant the application's checkout named in metadata, if any (a
    /// hint: the tenant's customer must still match).
    pub fn tenant_hint(&self) -> Option<String> {
        let o = &self.object;
        [
            &o["metadata"],
            &o["subscription_details"]["metadata"],
            &o["parent"]["subscription_details"]["metadata"],
        ]
        .into_iter()
        .find_map(|m| m["tenant_id"].as_str())
        .map(String::from)
    }

    /// The subscription an invoice is for (the field moved between API
    /// versions), or a subscription event's own id.
    fn subscription(&self) -> Option<&str> {
        let o = &self.object;
        if self.kind.starts_with("customer.subscription.") {
            return o["id"].as_str();
        }
        o["subscription"]
            .as_str()
            .or_else(|| o["subscription"]["id"].as_str())
            .or_else(|| o["parent"]["subscription_details"]["subscription"].as_str())
    }

    /// A subscription's price ids, in item order.
    fn prices(&self) -> Vec<&str> {
        self.object["items"]["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                item["price"]["id"]
                    .as_str()
                    .or_else(|| item["plan"]["id"].as_str())
            })
            .collect()
    }

    /// A subscription's period end (on the subscription before API version
    /// 2025-03-31, on its items since).
    fn period_end(&self) -> Option<DateTime<Utc>> {
        let o = &self.object;
        o["current_period_end"]
            .as_i64()
            .or_else(|| o["items"]["data"][0]["current_period_end"].as_i64())
            .and_then(|s| DateTime::from_timestamp(s, 0))
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What an event did to a tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The tenant changed; the changed fields, before and after.
    Applied(Value),
    /// Nothing changed, and why (`duplicate`, `out_of_order`,
    /// `unknown_price`, `other_subscription`, `tenant_closed`,
    /// `unchanged`).
    Skipped(&'static str),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Applied(_) => "applied",
            Outcome::Skipped(why) => why,
        }
    }
}

/// Applies `event` to `tenant` (whose billing customer is the event's).
/// On [`Outcome::Applied`] the tenant is the one to write; otherwise it is
/// unchanged.
pub fn apply(config: &StripeConfig, event: &Event, tenant: &mut Tenant) -> Outcome {
    let billing = tenant
        .billing
        .clone()
        .unwrap_or_else(|| Billing::new(BillingProvider::Stripe, event.customer()));
    if billing.recent_event_ids.contains(&event.id) {
        return Outcome::Skipped("duplicate");
    }
    if billing
        .last_event_at
        .is_some_and(|last| event.created < last)
    {
        return Outcome::Skipped("out_of_order");
    }
    if tenant.status == TenantStatus::Cancelled || tenant.purged_at.is_some() {
        return Outcome::Skipped("tenant_closed");
    }
    let before = tenant.clone();
    let mut b = billing;
    let suspend_unpaid = config.suspend_unpaid.unwrap_or(true);
    match event.kind.as_str() {
        "customer.subscription.created" | "customer.subscription.updated" => {
            let status = event.object["status"]
                .as_str()
                .and_then(|s| serde_json::from_value::<PaymentStatus>(json!(s)).ok());
            let Some(status) = status else {
                return Outcome::Skipped("unknown_status");
            };
            let found = event
                .prices()
                .into_iter()
                .find_map(|p| config.plan_of(p).map(|plan| (p.to_string(), plan)));
            let Some((price, plan)) = found else {
                return Outcome::Skipped("unknown_price");
            };
            b.subscription_id = event.subscription().map(String::from);
            b.price_id = Some(price);
            b.current_period_end = event.period_end().or(b.current_period_end);
            b.payment_status = Some(status);
            match status {
                PaymentStatus::Active | PaymentStatus::Trialing | PaymentStatus::PastDue => {
                    set_plan(tenant, &plan);
                    reopen(tenant, &mut b);
                    if status == PaymentStatus::Trialing && tenant.status == TenantStatus::Active {
                        tenant.status = TenantStatus::Trial;
                    } else if status != PaymentStatus::Trialing
                        && tenant.status == TenantStatus::Trial
                    {
                        tenant.status = TenantStatus::Active;
                    }
                }
                PaymentStatus::Unpaid if suspend_unpaid => suspend(tenant, &mut b),
                PaymentStatus::Canceled | PaymentStatus::IncompleteExpired => {
                    end_subscription(config, tenant, &mut b)
                }
                _ => {}
            }
        }
        "customer.subscription.deleted" => {
            if b.subscription_id
                .as_deref()
                .is_some_and(|s| Some(s) != event.subscription())
            {
                return Outcome::Skipped("other_subscription");
            }
            b.payment_status = Some(PaymentStatus::Canceled);
            end_subscription(config, tenant, &mut b);
        }
        "invoice.paid" | "invoice.payment_failed" => {
            if b.subscription_id.is_some() && b.subscription_id.as_deref() != event.subscription() {
                return Outcome::Skipped("other_subscription");
            }
            if event.kind == "invoice.paid" {
                b.payment_status = Some(PaymentStatus::Active);
                reopen(tenant, &mut b);
            } else {
                b.payment_status = Some(PaymentStatus::PastDue);
            }
        }
        _ => return Outcome::Skipped("unhandled"),
    }
    b.last_event_at = Some(event.created);
    b.recent_event_ids.push(event.id.clone());
    let excess = b.recent_event_ids.len().saturating_sub(RECENT_EVENTS);
    b.recent_event_ids.drain(..excess);
    tenant.billing = Some(b);
    Outcome::Applied(changes(&before, tenant))
}

fn set_plan(tenant: &mut Tenant, plan: &Plan) {
    tenant.subscription.tier = plan.tier;
    tenant.subscription.features = plan.features.clone();
    tenant.limits = plan.limits.clone();
}

/// Suspends a tenant for payment (a tenant suspended by an administrator
/// stays as it is, and is not reopened by a payment).
fn suspend(tenant: &mut Tenant, b: &mut Billing) {
    if matches!(tenant.status, TenantStatus::Active | TenantStatus::Trial) {
        tenant.status = TenantStatus::Suspended;
        b.suspended_for_payment = true;
    }
}

/// Reopens a tenant this integration suspended.
fn reopen(tenant: &mut Tenant, b: &mut Billing) {
    if b.suspended_for_payment && tenant.status == TenantStatus::Suspended {
        tenant.status = TenantStatus::Active;
    }
    b.suspended_for_payment = false;
}

fn end_subscription(config: &StripeConfig, tenant: &mut Tenant, b: &mut Billing) {
    match &config.canceled {
        Some(plan) => {
            set_plan(tenant, plan);
            reopen(tenant, b);
        }
        None => suspend(tenant, b),
    }
}

/// Reads one field of a tenant as JSON.
type Field<'a> = (&'a str, &'a dyn Fn(&Tenant) -> Value);

/// The tenant's fields an event changed, `{field: {from, to}}`.
fn changes(before: &Tenant, after: &Tenant) -> Value {
    let billing = |t: &Tenant, f: fn(&Billing) -> Value| t.billing.as_ref().map_or(Value::Null, f);
    let fields: [Field; 8] = [
        ("tier", &|t| json!(t.subscription.tier)),
        ("features", &|t| json!(t.subscription.features)),
        ("limits", &|t| json!(t.limits)),
        ("status", &|t| json!(t.status)),
        ("paymentStatus", &|t| {
            billing(t, |b| json!(b.payment_status))
        }),
        ("priceId", &|t| billing(t, |b| json!(b.price_id))),
        ("subscriptionId", &|t| {
            billing(t, |b| json!(b.subscription_id))
        }),
        ("currentPeriodEnd", &|t| {
            billing(t, |b| json!(b.current_period_end))
        }),
    ];
    let mut out = serde_json::Map::new();
    for (name, get) in fields {
        let (from, to) = (get(before), get(after));
        if from != to {
            out.insert(name.into(), json!({ "from": from, "to": to }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    fn sign(payload: &str, secret: &str, t: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{payload}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn check(
        header: &str,
        payload: &str,
        secrets: &[&str],
        now: i64,
    ) -> Result<i64, SignatureError> {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        verify_signature(Some(header), payload.as_bytes(), &secrets, now, 300)
    }

    /// Made by Stripe's Python library (`stripe` 16.1.0,
    /// `WebhookSignature.generate_signature_header(payload, secret,
    /// timestamp)`), not by this code.
    const STRIPE_MADE: (&str, &str, i64, &str) = (
        r#"{"id":"evt_1","type":"invoice.paid"}"#,
        "whsec_test_secret",
        1_764_633_600,
        "t=1764633600,v1=e9f7eb539a16d7ed4298ab20eedef63c3d565c122d68aff766358b12de2365d8",
    );

    #[test]
    fn stripe_made_signature_is_accepted() {
        let (payload, secret, t, header) = STRIPE_MADE;
        assert_eq!(check(header, payload, &[secret], t + 10), Ok(t));
    }

    #[test]
    fn signatures_are_checked_as_stripe_does() {
        let p = r#"{"id":"evt_1"}"#;
        let t = 1_700_000_000;
        let good = sign(p, SECRET, t);
        assert_eq!(check(&good, p, &[SECRET], t), Ok(t));
        // Any of several v1 signatures, under any of several secrets.
        let other = sign(p, "whsec_old", t);
        let v1 = |h: &str| h.split_once(",v1=").unwrap().1.to_string();
        let both = format!("t={t},v1={},v1={}", "0".repeat(64), v1(&good));
        assert_eq!(check(&both, p, &[SECRET], t), Ok(t));
        assert_eq!(check(&other, p, &["whsec_new", "whsec_old"], t), Ok(t));
        assert_eq!(
            check(&other, p, &[SECRET], t),
            Err(SignatureError::Mismatch)
        );
        // The payload, the timestamp and the secret are all covered.
        assert_eq!(
            check(&good, &p.replace('1', "2"), &[SECRET], t),
            Err(SignatureError::Mismatch)
        );
        let moved = good.replace(&format!("t={t}"), &format!("t={}", t + 1));
        assert_eq!(
            check(&moved, p, &[SECRET], t),
            Err(SignatureError::Mismatch)
        );
        // Tolerance: five minutes either way.
        assert_eq!(check(&good, p, &[SECRET], t + 300), Ok(t));
        assert_eq!(
            check(&good, p, &[SECRET], t + 301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            check(&good, p, &[SECRET], t - 301),
            Err(SignatureError::OutsideTolerance)
        );
        // v0 (test-mode) signatures and uppercase hex are not accepted.
        let v0 = good.replace("v1=", "v0=");
        assert_eq!(
            check(&v0, p, &[SECRET], t),
            Err(SignatureError::NoSignatures)
        );
        let upper = format!("t={t},v1={}", v1(&good).to_uppercase());
        assert_eq!(
            check(&upper, p, &[SECRET], t),
            Err(SignatureError::Mismatch)
        );
        // Malformed headers.
        for h in ["", "v1=abc", "t=,v1=abc", "t=x,v1=abc", "t"] {
            let r = verify_signature(Some(h), p.as_bytes(), &[SECRET.into()], t, 300);
            assert!(
                matches!(r, Err(SignatureError::Missing | SignatureError::Malformed)),
                "{h}: {r:?}"
            );
        }
        assert_eq!(
            verify_signature(None, p.as_bytes(), &[SECRET.into()], t, 300),
            Err(SignatureError::Missing)
        );
        // No secret configured: nothing matches.
        assert_eq!(check(&good, p, &[], t), Err(SignatureError::Mismatch));
    }

    fn config() -> StripeConfig {
        let limits = |n: u32| Limits {
            max_documents: n,
            max_users: n,
            max_storage_gb: n,
            max_queries_per_month: n,
        };
        StripeConfig {
            webhook_secrets: vec![SECRET.into()],
            tolerance_secs: None,
            prices: vec![
                PricePlan {
                    price: "price_pro".into(),
                    tier: Tier::Pro,
                    features: ["export".to_string()].into(),
                    limits: limits(100),
                },
                PricePlan {
                    price: "price_ent".into(),
                    tier: Tier::Enterprise,
                    features: ["export".to_string(), "sso".to_string()].into(),
                    limits: limits(1000),
                },
            ],
            canceled: None,
            suspend_unpaid: None,
        }
    }

    fn tenant() -> Tenant {
        let data: crate::model::DataSet =
            serde_json::from_str(include_str!("../../demo/data.json")).unwrap();
        let mut t = data.tenants[0].clone();
        t.status = TenantStatus::Active;
        t.subscription.tier = Tier::Basic;
        t.billing = Some(Billing::new(BillingProvider::Stripe, Some("cus_A".into())));
        t
    }

    fn event(id: &str, kind: &str, created: i64, object: Value) -> Event {
        let body = json!({
            "id": id, "object": "event", "type": kind, "created": created,
            "data": { "object": object },
        });
        Event::parse(body.to_string().as_bytes()).unwrap()
    }

    fn subscription(status: &str, price: &str) -> Value {
        json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_A", "status": status,
            "items": { "data": [ { "price": { "id": price }, "current_period_end": 1_767_225_600 } ] },
        })
    }

    #[test]
    fn a_subscription_sets_tier_features_limits_and_billing() {
        let c = config();
        let mut t = tenant();
        let e = event(
            "evt_1",
            "customer.subscription.created",
            100,
            subscription("active", "price_pro"),
        );
        let Outcome::Applied(changed) = apply(&c, &e, &mut t) else {
            panic!()
        };
        assert_eq!(t.subscription.tier, Tier::Pro);
        assert_eq!(t.limits.max_documents, 100);
        assert!(t.subscription.features.contains("export"));
        let b = t.billing.as_ref().unwrap();
        assert_eq!(b.subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(b.price_id.as_deref(), Some("price_pro"));
        assert_eq!(b.payment_status, Some(PaymentStatus::Active));
        assert_eq!(b.current_period_end.unwrap().timestamp(), 1_767_225_600);
        assert_eq!(changed["tier"], json!({ "from": "basic", "to": "pro" }));
        // The same event again: nothing.
        let before = t.clone();
        assert_eq!(apply(&c, &e, &mut t), Outcome::Skipped("duplicate"));
        assert_eq!(t, before);
    }

    #[test]
    fn an_older_event_arriving_later_changes_nothing() {
        let c = config();
        let mut t = tenant();
        let newer = event(
            "evt_2",
            "customer.subscription.updated",
            200,
            subscription("active", "price_ent"),
        );
        let older = event(
            "evt_1",
            "customer.subscription.updated",
            100,
            subscription("active", "price_pro"),
        );
        assert!(matches!(apply(&c, &newer, &mut t), Outcome::Applied(_)));
        let before = t.clone();
        assert_eq!(apply(&c, &older, &mut t), Outcome::Skipped("out_of_order"));
        assert_eq!(t, before);
        assert_eq!(t.subscription.tier, Tier::Enterprise);
        // Same second: the later arrival applies.
        let same = event(
            "evt_3",
            "customer.subscription.updated",
            200,
            subscription("active", "price_pro"),
        );
        assert!(matches!(apply(&c, &same, &mut t), Outcome::Applied(_)));
        assert_eq!(t.subscription.tier, Tier::Pro);
    }

    #[test]
    fn an_unknown_price_changes_nothing() {
        let c = config();
        let mut t = tenant();
        let before = t.clone();
        let e = event(
            "evt_1",
            "customer.subscription.updated",
            100,
            subscription("active", "price_other"),
        );
        assert_eq!(apply(&c, &e, &mut t), Outcome::Skipped("unknown_price"));
        assert_eq!(t, before);
    }

    #[test]
    fn unpaid_suspends_and_paid_reopens_but_never_an_administrators_suspension() {
        let c = config();
        let mut t = tenant();
        let sub = |id, at, status| {
            event(
                id,
                "customer.subscription.updated",
                at,
                subscription(status, "price_pro"),
            )
        };
        apply(&c, &sub("evt_1", 100, "active"), &mut t);
        apply(&c, &sub("evt_2", 200, "unpaid"), &mut t);
        assert_eq!(t.status, TenantStatus::Suspended);
        assert!(t.billing.as_ref().unwrap().suspended_for_payment);
        let failed = event(
            "evt_3",
            "invoice.payment_failed",
            250,
            json!({ "customer": "cus_A", "subscription": "sub_1" }),
        );
        apply(&c, &failed, &mut t);
        assert_eq!(
            t.billing.as_ref().unwrap().payment_status,
            Some(PaymentStatus::PastDue)
        );
        assert_eq!(t.status, TenantStatus::Suspended);
        let paid = event(
            "evt_4",
            "invoice.paid",
            300,
            json!({ "customer": "cus_A", "parent": { "subscription_details": { "subscription": "sub_1" } } }),
        );
        assert!(matches!(apply(&c, &paid, &mut t), Outcome::Applied(_)));
        assert_eq!(t.status, TenantStatus::Active);
        assert!(!t.billing.as_ref().unwrap().suspended_for_payment);
        // Suspended by an administrator: a payment does not reopen it.
        t.status = TenantStatus::Suspended;
        let paid = event(
            "evt_5",
            "invoice.paid",
            400,
            json!({ "customer": "cus_A", "subscription": "sub_1" }),
        );
        apply(&c, &paid, &mut t);
        assert_eq!(t.status, TenantStatus::Suspended);
        // An invoice of another subscription is not this tenant's plan.
        let other = event(
            "evt_6",
            "invoice.payment_failed",
            500,
            json!({ "customer": "cus_A", "subscription": "sub_2" }),
        );
        assert_eq!(
            apply(&c, &other, &mut t),
            Outcome::Skipped("other_subscription")
        );
    }

    #[test]
    fn a_deleted_subscription_suspends_or_moves_to_the_canceled_plan() {
        let mut c = config();
        let mut t = tenant();
        let created = event(
            "evt_1",
            "customer.subscription.created",
            100,
            subscription("active", "price_ent"),
        );
        apply(&c, &created, &mut t);
        let deleted = event(
            "evt_2",
            "customer.subscription.deleted",
            200,
            subscription("canceled", "price_ent"),
        );
        let mut suspended = t.clone();
        apply(&c, &deleted, &mut suspended);
        assert_eq!(suspended.status, TenantStatus::Suspended);
        assert_eq!(
            suspended.billing.as_ref().unwrap().payment_status,
            Some(PaymentStatus::Canceled)
        );
        c.canceled = Some(Plan {
            tier: Tier::Basic,
            features: BTreeSet::new(),
            limits: t.limits.clone(),
        });
        apply(&c, &deleted, &mut t);
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(t.subscription.tier, Tier::Basic);
        assert!(t.subscription.features.is_empty());
        // A cancelled tenant is left alone.
        t.status = TenantStatus::Cancelled;
        let again = event(
            "evt_3",
            "customer.subscription.created",
            300,
            subscription("active", "price_pro"),
        );
        assert_eq!(apply(&c, &again, &mut t), Outcome::Skipped("tenant_closed"));
    }

    #[test]
    fn recent_event_ids_are_bounded() {
        let c = config();
        let mut t = tenant();
        for i in 0..(RECENT_EVENTS + 5) {
            let e = event(
                &format!("evt_{i}"),
                "invoice.paid",
                100 + i as i64,
                json!({ "customer": "cus_A" }),
            );
            assert!(matches!(apply(&c, &e, &mut t), Outcome::Applied(_)));
        }
        let b = t.billing.as_ref().unwrap();
        assert_eq!(b.recent_event_ids.len(), RECENT_EVENTS);
        assert_eq!(
            b.recent_event_ids.last().unwrap(),
            &format!("evt_{}", RECENT_EVENTS + 4)
        );
        assert!(b.check().is_ok());
    }
}
