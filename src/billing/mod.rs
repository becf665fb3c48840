//! Billing integration points (docs/billing.md): a tenant's `billing`
//! account (crate::model::Billing), and its billable usage per UTC month in
//! forms a metering API takes — one CSV row per tenant, or Stripe meter
//! events, each with an idempotency key stable per tenant, month and
//! metric, so sending a month twice bills it once.
//!
//! Figures: `decisions` and `queries` (allowed searches) are the month's
//! counts ([`Store::decisions_in`]); `documents` and `storageGB` are the
//! tenant's counts when the export runs (a time-weighted GB-month is not
//! kept). Stripe webhooks: [`stripe`].

pub mod stripe;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::authz::Effect;
use crate::model::BillingProvider;
use crate::store::{Store, StoreError};

/// One tenant's billable usage in a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub tenant_id: String,
    pub month: String,
    pub provider: Option<BillingProvider>,
    pub customer_id: Option<String>,
    pub documents: u64,
    pub storage_gb: u64,
    pub queries: u64,
    pub decisions: u64,
}

/// How a row gives a metric's value.
pub type Metric = fn(&UsageRow) -> u64;

/// The metrics, as meter event names and how a row gives each.
pub const METRICS: [(&str, Metric); 4] = [
    ("cedargate_documents", |r| r.documents),
    ("cedargate_storage_gb", |r| r.storage_gb),
    ("cedargate_queries", |r| r.queries),
    ("cedargate_decisions", |r| r.decisions),
];

impl UsageRow {
    /// The same for every export of this tenant, month and metric.
    pub fn idempotency_key(&self, metric: &str) -> String {
        format!("{}-{}-{metric}", self.tenant_id, self.month)
    }
}

/// `YYYY-MM` as a month, or why not.
pub fn parse_month(text: &str) -> Result<NaiveDate, String> {
    if text.len() != 7 {
        return Err(format!("{text:?} is not a month (YYYY-MM)"));
    }
    NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a month (YYYY-MM)"))
}

/// The last second of a month (meter events of a closed month carry it).
pub fn month_end(first: NaiveDate) -> DateTime<Utc> {
    let start = first.and_time(chrono::NaiveTime::MIN).and_utc();
    let (_, _, ends) = crate::usage::month_of(start);
    DateTime::from_timestamp(ends - 1, 0).unwrap_or_else(Utc::now)
}

/// Every tenant's usage in `month`, in tenant id order.
pub async fn usage(store: &dyn Store, month: &str) -> Result<Vec<UsageRow>, StoreError> {
    parse_month(month).map_err(StoreError::Invalid)?;
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let (tenants, more) = store.list_tenants(after.as_ref(), 500).await?;
        for t in &tenants {
            let counts = store.decisions_in(&t.tenant_id, month).await?;
            let decisions = counts.iter().map(|(_, _, n)| n).sum();
            let queries = counts
                .iter()
                .filter(|(a, d, _)| a == "Search" && *d == Effect::Allow)
                .map(|(_, _, n)| n)
                .sum();
            rows.push(UsageRow {
                tenant_id: t.tenant_id.to_string(),
                month: month.to_string(),
                provider: t.billing.as_ref().map(|b| b.provider),
                customer_id: t.billing.as_ref().and_then(|b| b.customer_id.clone()),
                documents: u64::from(t.usage.documents),
                storage_gb: u64::from(t.usage.storage_gb),
                queries,
                decisions,
            });
        }
        after = tenants.last().map(|t| t.tenant_id.clone());
        if !more || after.is_none() {
            return Ok(rows);
        }
    }
}

/// CSV with a header; ids are validated to need no quoting.
pub fn csv(rows: &[UsageRow]) -> String {
    let mut out = String::from(
        "tenant_id,month,provider,customer_id,documents,storage_gb,queries,decisions,idempotency_key\n",
    );
    for r in rows {
        let provider = match r.provider {
            Some(BillingProvider::Stripe) => "stripe",
            Some(BillingProvider::Manual) => "manual",
            None => "",
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.tenant_id,
            r.month,
            provider,
            r.customer_id.as_deref().unwrap_or(""),
            r.documents,
            r.storage_gb,
            r.queries,
            r.decisions,
            r.idempotency_key("usage"),
        ));
    }
    out
}

/// Stripe meter events (`POST /v1/billing/meter_events`), one per metric
/// of each tenant billed through Stripe: `event_name`,
/// `payload.stripe_customer_id`, `payload.value` (a string, as Stripe
/// takes it), `identifier` (Stripe's idempotency: an event with a known
/// identifier is not counted again), `timestamp` (the month's last second,
/// or `now` for a month not over; Stripe takes events of the last 35
/// days). Tenants without a Stripe customer are left out.
pub fn meter_events(rows: &[UsageRow], now: DateTime<Utc>) -> Vec<Value> {
    let mut out = Vec::new();
    for r in rows {
        let (Some(BillingProvider::Stripe), Some(customer)) = (r.provider, &r.customer_id) else {
            continue;
        };
        let end = parse_month(&r.month).map(month_end).unwrap_or(now).min(now);
        for (name, value) in METRICS {
            out.push(json!({
                "event_name": name,
                "identifier": r.idempotency_key(name),
                "timestamp": end.timestamp(),
                "payload": {
                    "stripe_customer_id": customer,
                    "value": value(r).to_string(),
                },
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::model::{Billing, DataSet};
    use crate::store::StoreUrl;
    use chrono::TimeZone;

    #[tokio::test]
    async fn usage_is_the_months_counts_with_stable_keys() {
        let store = crate::store::open(&StoreUrl::Sqlite(":memory:".into()))
            .await
            .unwrap();
        let data: DataSet = serde_json::from_str(include_str!("../../demo/data.json")).unwrap();
        let mut data = data;
        let acme = data
            .tenants
            .iter_mut()
            .find(|t| t.tenant_id.as_str() == "acme")
            .unwrap();
        acme.billing = Some(Billing {
            provider: BillingProvider::Stripe,
            customer_id: Some("cus_Acme123".into()),
            subscription_id: Some("sub_1".into()),
            price_id: Some("price_pro".into()),
            current_period_end: None,
            payment_status: None,
            last_event_at: None,
            recent_event_ids: Vec::new(),
            suspended_for_payment: false,
        });
        store.import(&data).await.unwrap();
        let t = TenantId::parse("acme").unwrap();
        let counts = [
            ("Search".to_string(), Effect::Allow, 7),
            ("Search".to_string(), Effect::Deny, 2),
            ("Read".to_string(), Effect::Allow, 30),
        ];
        store.add_decisions(&t, "2026-11", &counts).await.unwrap();
        store
            .add_decisions(&t, "2026-10", &[("Read".to_string(), Effect::Allow, 99)])
            .await
            .unwrap();
        let rows = usage(store.as_ref(), "2026-11").await.unwrap();
        assert_eq!(rows.len(), data.tenants.len());
        let a = rows.iter().find(|r| r.tenant_id == "acme").unwrap();
        assert_eq!((a.queries, a.decisions), (7, 39));
        assert_eq!(a.customer_id.as_deref(), Some("cus_Acme123"));
        let others: u64 = rows
            .iter()
            .filter(|r| r.tenant_id != "acme")
            .map(|r| r.decisions)
            .sum();
        assert_eq!(others, 0);

        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let events = meter_events(&rows, now);
        // Only the Stripe customer's four metrics.
        assert_eq!(events.len(), 4);
        let decisions = events
            .iter()
            .find(|e| e["event_name"] == "cedargate_decisions")
            .unwrap();
        assert_eq!(decisions["payload"]["value"], "39");
        assert_eq!(decisions["payload"]["stripe_customer_id"], "cus_Acme123");
        assert_eq!(decisions["identifier"], "acme-2026-11-cedargate_decisions");
        assert_eq!(
            decisions["timestamp"],
            Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59)
                .unwrap()
                .timestamp()
        );
        // The same month again: the same identifiers.
        let again = meter_events(&usage(store.as_ref(), "2026-11").await.unwrap(), now);
        assert_eq!(events, again);
        let table = csv(&rows);
        assert!(table.starts_with("tenant_id,month,provider,customer_id,"));
        assert!(
            table.contains("\nacme,2026-11,stripe,cus_Acme123,"),
            "{table}"
        );
        assert_eq!(table.lines().count(), rows.len() + 1);
        assert!(usage(store.as_ref(), "2026-13").await.is_err());
    }

    #[test]
    fn billing_ids_are_checked() {
        let b = |customer: &str| Billing {
            provider: BillingProvider::Stripe,
            customer_id: Some(customer.into()),
            subscription_id: None,
            price_id: None,
            current_period_end: None,
            payment_status: None,
            last_event_at: None,
            recent_event_ids: Vec::new(),
            suspended_for_payment: false,
        };
        assert!(b("cus_123").check().is_ok());
        assert!(b("123").check().is_err());
        assert!(b("cus_1,2").check().is_err());
        assert!(b("").check().is_err());
        let mut none = b("cus_1");
        none.customer_id = None;
        assert!(none.check().is_err());
        let manual = Billing {
            provider: BillingProvider::Manual,
            customer_id: Some("ACME-7".into()),
            ..b("x")
        };
        assert!(manual.check().is_ok());
    }
}
