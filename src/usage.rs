//! Usage counting, in memory, written in one atomic write per tenant per
//! interval (never a write per request):
//!
//! - allowed `Search` decisions are added to the store's
//!   `queriesThisMonth` (each write with a change-log entry, so every
//!   sidecar's cache, and with it the `maxQueriesPerMonth` quota, sees the
//!   new count);
//! - every decision is counted per tenant (the caller's), action and
//!   outcome in the UTC month it was made ([`Store::add_decisions`]): the
//!   tenant's API usage (`GET /v1/tenants/{id}/usage?month=`).
//!
//! A count that cannot be written is kept for the next round.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use parking_lot::Mutex;

use crate::authz::Effect;
use crate::ids::TenantId;
use crate::model::current_month;
use crate::store::{Store, UsageDelta};

/// Decisions of one tenant in one month: by action, allowed and denied.
type Decisions = HashMap<String, [u64; 2]>;

fn slot(decision: Effect) -> usize {
    match decision {
        Effect::Allow => 0,
        Effect::Deny => 1,
    }
}

/// Counts not yet written.
#[derive(Default)]
pub struct UsageCounter {
    queries: Mutex<HashMap<TenantId, u64>>,
    decisions: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// The month being counted, when it starts and ends (Unix seconds).
    month: String,
    starts: i64,
    ends: i64,
    /// By month, then tenant. Looked up by reference: counting a known
    /// (month, tenant, action) allocates nothing.
    counts: HashMap<String, HashMap<TenantId, Decisions>>,
}

/// `YYYY-MM` of `now`, and when that month starts and ends.
pub(crate) fn month_of(now: DateTime<Utc>) -> (String, i64, i64) {
    let first = |y: i32, m: u32| {
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .map(|t| t.timestamp())
    };
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    (
        now.format("%Y-%m").to_string(),
        first(now.year(), now.month()).unwrap_or(i64::MIN),
        first(y, m).unwrap_or(i64::MAX),
    )
}

impl UsageCounter {
    /// An allowed search.
    pub fn count(&self, tenant: &TenantId) {
        *self.queries.lock().entry(tenant.clone()).or_default() += 1;
    }

    /// A decision for a caller of `tenant`, now.
    pub fn count_decision(&self, tenant: &TenantId, action: &str, decision: Effect) {
        self.count_decision_at(tenant, action, decision, Utc::now());
    }

    /// A decision made at `now` (its month is the one it is counted in).
    pub fn count_decision_at(
        &self,
        tenant: &TenantId,
        action: &str,
        decision: Effect,
        now: DateTime<Utc>,
    ) {
        let mut p = self.decisions.lock();
        let t = now.timestamp();
        if p.month.is_empty() || t < p.starts || t >= p.ends {
            (p.month, p.starts, p.ends) = month_of(now);
        }
        let Pending { month, counts, .. } = &mut *p;
        if !counts.contains_key(month.as_str()) {
            counts.insert(month.clone(), HashMap::new());
        }
        let Some(tenants) = counts.get_mut(month.as_str()) else {
            return;
        };
        if !tenants.contains_key(tenant) {
            tenants.insert(tenant.clone(), HashMap::new());
        }
        let Some(actions) = tenants.get_mut(tenant) else {
            return;
        };
        match actions.get_mut(action) {
            Some(n) => n[slot(decision)] += 1,
            None => {
                let mut n = [0; 2];
                n[slot(decision)] = 1;
                actions.insert(action.to_string(), n);
            }
        }
    }

    /// Writes every pending count; what fails stays pending.
    pub async fn flush(&self, store: &dyn Store) {
        let month = current_month();
        let queries = std::mem::take(&mut *self.queries.lock());
        for (tenant, n) in queries {
            let delta = UsageDelta {
                queries: n,
                month: month.clone(),
                ..UsageDelta::default()
            };
            if let Err(e) = store.add_usage(&tenant, &delta).await {
                tracing::warn!(%tenant, error = %e, "query count not written; kept for the next round");
                *self.queries.lock().entry(tenant).or_default() += n;
            }
        }
        let decisions = std::mem::take(&mut self.decisions.lock().counts);
        for (month, tenants) in decisions {
            for (tenant, counts) in tenants {
                let mut list: Vec<(String, Effect, u64)> = Vec::new();
                for (action, n) in &counts {
                    for (decision, i) in [(Effect::Allow, 0), (Effect::Deny, 1)] {
                        if n[i] > 0 {
                            list.push((action.clone(), decision, n[i]));
                        }
                    }
                }
                list.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
                if let Err(e) = store.add_decisions(&tenant, &month, &list).await {
                    tracing::warn!(%tenant, error = %e, "decision counts not written; kept for the next round");
                    let mut p = self.decisions.lock();
                    let kept = p
                        .counts
                        .entry(month.clone())
                        .or_default()
                        .entry(tenant)
                        .or_default();
                    for (action, n) in counts {
                        let k = kept.entry(action).or_default();
                        k[0] += n[0];
                        k[1] += n[1];
                    }
                }
            }
        }
    }
}

/// Flushes every `interval` until `stop`, then once more.
pub async fn flush_loop(
    counter: Arc<UsageCounter>,
    store: Arc<dyn Store>,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    // The first flush one interval from now (a plain interval ticks at once).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => counter.flush(store.as_ref()).await,
            _ = &mut stop => break,
        }
    }
    counter.flush(store.as_ref()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_end_where_the_calendar_says() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let ts = |s: &str| at(s).timestamp();
        assert_eq!(
            month_of(at("2026-11-30T23:59:59Z")),
            (
                "2026-11".to_string(),
                ts("2026-11-01T00:00:00Z"),
                ts("2026-12-01T00:00:00Z")
            )
        );
        assert_eq!(
            month_of(at("2026-12-31T23:59:59.999Z")),
            (
                "2026-12".to_string(),
                ts("2026-12-01T00:00:00Z"),
                ts("2027-01-01T00:00:00Z")
            )
        );
    }

    #[test]
    fn decisions_are_counted_in_their_month() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let c = UsageCounter::default();
        let t = TenantId::parse("t1").unwrap();
        for _ in 0..3 {
            c.count_decision_at(&t, "Read", Effect::Allow, at("2026-11-30T23:59:59Z"));
        }
        c.count_decision_at(&t, "Read", Effect::Deny, at("2026-11-30T23:59:59.9Z"));
        c.count_decision_at(&t, "Read", Effect::Allow, at("2026-12-01T00:00:00Z"));
        // A clock set back is counted in its own month too.
        c.count_decision_at(&t, "Search", Effect::Allow, at("2026-11-15T00:00:00Z"));
        let p = c.decisions.lock();
        let nov = &p.counts["2026-11"][&t];
        assert_eq!(nov["Read"], [3, 1]);
        assert_eq!(nov["Search"], [1, 0]);
        let dec = &p.counts["2026-12"][&t];
        assert_eq!(dec.len(), 1);
        assert_eq!(dec["Read"], [1, 0]);
    }
}
