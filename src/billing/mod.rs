//! Billing integration points (docs/billing.md): a tenant's `billing`
//! account (crate::model::Billing), and its billable usage per UTC month in
//! forms a metering API takes — one CSV row per tenant, or Stripe meter
//! events, each with an idempotency key stable per tenant, month and
//! metric, so sending a month twice bills it once.
//!
//! Figures: `decisions` and `queries` (allowed searches) are the month's
//! counts ([`Store::decisions_in`]); `documents` and `storageGB` are the
//! tenant's counts when the export runs; storage over time is the month's
//! GB-days from daily samples ([`sample_storage`], [`gb_days`]). Stripe
//! webhooks: [`stripe`].

pub mod stripe;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::authz::Effect;
use crate::model::BillingProvider;
use crate::store::{Store, StoreError, TenantPages};

/// One tenant's billable usage in a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub tenant_id: String,
    pub month: String,
    pub provider: Option<BillingProvider>,
    pub customer_id: Option<String>,
    pub documents: u64,
    pub storage_gb: u64,
    /// Σ over the month's days (so far) of that day's stored GB.
    pub storage_gb_days: u64,
    /// Days in the month (GB-months = GB-days / days).
    pub days: u32,
    pub queries: u64,
    pub decisions: u64,
}

/// How a row gives a metric's value.
pub type Metric = fn(&UsageRow) -> u64;

/// The metrics, as meter event names and how a row gives each.
pub const METRICS: [(&str, Metric); 5] = [
    ("cedargate_documents", |r| r.documents),
    ("cedargate_storage_gb", |r| r.storage_gb),
    ("cedargate_storage_gb_days", |r| r.storage_gb_days),
    ("cedargate_queries", |r| r.queries),
    ("cedargate_decisions", |r| r.decisions),
];

impl UsageRow {
    /// Storage over the month, in GB-months (three decimals).
    pub fn storage_gb_months(&self) -> String {
        let thousandths = self.storage_gb_days * 1000 / u64::from(self.days.max(1));
        format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
    }

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

/// Records every tenant's stored bytes as today's sample (a second run on
/// the same day replaces the first). Returns how many tenants.
pub async fn sample_storage(store: &dyn Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let day = now.date_naive();
    let mut n = 0;
    let mut pages = TenantPages::new(store, 500);
    while let Some(tenants) = pages.next().await? {
        for t in &tenants {
            store
                .put_storage_sample(&t.tenant_id, day, t.usage.stored_bytes())
                .await?;
            n += 1;
        }
    }
    Ok(n)
}

/// GB-days of days `1..=through` of a month from its samples `(day,
/// bytes)` in day order: a day counts its sample's GB (decimal, rounded
/// up), else the last sample before it; days before the first sample
/// count the first sample; a month without samples counts `fallback`
/// bytes every day.
pub fn gb_days(samples: &[(u32, u64)], through: u32, fallback: u64) -> u64 {
    let gb = |bytes: u64| bytes.div_ceil(crate::model::GB);
    let first = samples.first().map_or(fallback, |s| s.1);
    let mut current = first;
    let mut next = samples.iter().peekable();
    let mut total = 0;
    for day in 1..=through {
        while let Some(&&(d, bytes)) = next.peek() {
            if d > day {
                break;
            }
            current = bytes;
            next.next();
        }
        total += gb(current);
    }
    total
}

/// The days of `month` that count by `now`: all of a past month, today's
/// and the days before it in the current month, none of a future one.
/// Returns (days counted, days in the month).
fn counted_days(first: NaiveDate, now: DateTime<Utc>) -> (u32, u32) {
    let start = first.and_time(chrono::NaiveTime::MIN).and_utc();
    let (_, starts, ends) = crate::usage::month_of(start);
    let days = u32::try_from((ends - starts) / 86_400).unwrap_or(31);
    let today = now.date_naive();
    let counted = if today < first {
        0
    } else if now.timestamp() >= ends {
        days
    } else {
        chrono::Datelike::day(&today)
    };
    (counted, days)
}

/// Every tenant's usage in `month` as of `now`, in tenant id order.
pub async fn usage(
    store: &dyn Store,
    month: &str,
    now: DateTime<Utc>,
) -> Result<Vec<UsageRow>, StoreError> {
    let first = parse_month(month).map_err(StoreError::Invalid)?;
    let (through, days) = counted_days(first, now);
    let mut rows = Vec::new();
    let mut pages = TenantPages::new(store, 500);
    while let Some(tenants) = pages.next().await? {
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
                storage_gb_days: gb_days(
                    &store.storage_samples(&t.tenant_id, month).await?,
                    through,
                    t.usage.stored_bytes(),
                ),
                days,
                queries,
                decisions,
            });
        }
    }
    Ok(rows)
}

/// CSV with a header; ids are validated to need no quoting.
pub fn csv(rows: &[UsageRow]) -> String {
    let mut out = String::from(
        "tenant_id,month,provider,customer_id,documents,storage_gb,storage_gb_days,storage_gb_months,queries,decisions,idempotency_key\n",
    );
    for r in rows {
        let provider = match r.provider {
            Some(BillingProvider::Stripe) => "stripe",
            Some(BillingProvider::Manual) => "manual",
            None => "",
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            r.tenant_id,
            r.month,
            provider,
            r.customer_id.as_deref().unwrap_or(""),
            r.documents,
            r.storage_gb,
            r.storage_gb_days,
            r.storage_gb_months(),
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
            subscription_id: Some("sub_1".into()),
            price_id: Some("price_pro".into()),
            ..Billing::new(BillingProvider::Stripe, Some("cus_Acme123".into()))
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
        let rows = usage(store.as_ref(), "2026-11", Utc::now()).await.unwrap();
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
        // Only the Stripe customer's five metrics.
        assert_eq!(events.len(), 5);
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
        let again = meter_events(
            &usage(store.as_ref(), "2026-11", Utc::now()).await.unwrap(),
            now,
        );
        assert_eq!(events, again);
        let table = csv(&rows);
        assert!(table.starts_with("tenant_id,month,provider,customer_id,"));
        assert!(
            table.contains("\nacme,2026-11,stripe,cus_Acme123,"),
            "{table}"
        );
        assert_eq!(table.lines().count(), rows.len() + 1);
        assert!(usage(store.as_ref(), "2026-13", Utc::now()).await.is_err());
    }

    #[test]
    fn billing_ids_are_checked() {
        let b = |customer: &str| Billing::new(BillingProvider::Stripe, Some(customer.into()));
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

    #[test]
    fn storage_is_counted_in_gb_days_from_daily_samples() {
        let gb = crate::model::GB;
        // No samples: the fallback every counted day.
        assert_eq!(gb_days(&[], 30, 2 * gb), 60);
        assert_eq!(gb_days(&[], 0, 2 * gb), 0);
        // 1 GB from day 1, 3 GB from day 11 (a partial GB rounds up), 0 from
        // day 21; days before the first sample count the first.
        let samples = [(5, gb), (11, 2 * gb + 1), (21, 0)];
        assert_eq!(gb_days(&samples, 30, 99 * gb), 10 + 10 * 3);
        // The current month counts its days so far.
        assert_eq!(gb_days(&samples, 12, 0), 10 + 2 * 3);
        let row = |days_total, gb_days| UsageRow {
            tenant_id: "t".into(),
            month: "2026-11".into(),
            provider: None,
            customer_id: None,
            documents: 0,
            storage_gb: 0,
            storage_gb_days: gb_days,
            days: days_total,
            queries: 0,
            decisions: 0,
        };
        assert_eq!(row(30, 40).storage_gb_months(), "1.333");
        assert_eq!(row(31, 0).storage_gb_months(), "0.000");
        assert_eq!(row(28, 56).storage_gb_months(), "2.000");
    }

    #[test]
    fn the_counted_days_follow_the_clock() {
        let nov = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap();
        assert_eq!(counted_days(nov, at(2026, 12, 2)), (30, 30));
        assert_eq!(counted_days(nov, at(2026, 11, 17)), (17, 30));
        assert_eq!(counted_days(nov, at(2026, 10, 31)), (0, 30));
        let feb = NaiveDate::from_ymd_opt(2028, 2, 1).unwrap();
        assert_eq!(counted_days(feb, at(2028, 3, 1)), (29, 29));
    }

    #[tokio::test]
    async fn a_sample_is_taken_per_tenant_and_counted() {
        let store = crate::store::open(&StoreUrl::Sqlite(":memory:".into()))
            .await
            .unwrap();
        let data: DataSet = serde_json::from_str(include_str!("../../demo/data.json")).unwrap();
        store.import(&data).await.unwrap();
        let t = TenantId::parse("acme").unwrap();
        let mut acme = store.get_tenant(&t).await.unwrap().unwrap();
        acme.usage.storage_bytes = Some(3 * crate::model::GB);
        store.put_tenant(&acme).await.unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 10, 8, 0, 0).unwrap();
        assert_eq!(
            sample_storage(store.as_ref(), now).await.unwrap(),
            data.tenants.len()
        );
        let stored = store.get_tenant(&t).await.unwrap().unwrap().usage;
        assert_eq!(
            store.storage_samples(&t, "2026-11").await.unwrap(),
            vec![(10, stored.storage_bytes.unwrap())]
        );
        let end = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let rows = usage(store.as_ref(), "2026-11", end).await.unwrap();
        let a = rows.iter().find(|r| r.tenant_id == "acme").unwrap();
        let gb = stored.storage_bytes.unwrap().div_ceil(crate::model::GB);
        assert_eq!((a.storage_gb_days, a.days), (30 * gb, 30));
        assert!(csv(&rows)
            .lines()
            .next()
            .unwrap()
            .contains("storage_gb_days,storage_gb_months"));
    }
}
