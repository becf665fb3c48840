//! Usage counting: allowed `Search` decisions are counted per tenant in
//! memory and added to the store's `queriesThisMonth` in one atomic write
//! per tenant per interval (each with a change-log entry, so every
//! sidecar's cache, and with it the `maxQueriesPerMonth` quota, sees the new
//! count). A count that cannot be written is kept for the next round.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::ids::TenantId;
use crate::model::current_month;
use crate::store::{Store, UsageDelta};

/// Queries counted and not yet written, per tenant.
#[derive(Default)]
pub struct QueryCounter {
    pending: Mutex<HashMap<TenantId, u64>>,
}

impl QueryCounter {
    pub fn count(&self, tenant: &TenantId) {
        *self.pending.lock().entry(tenant.clone()).or_default() += 1;
    }

    fn take(&self) -> HashMap<TenantId, u64> {
        std::mem::take(&mut *self.pending.lock())
    }

    fn put_back(&self, tenant: TenantId, n: u64) {
        *self.pending.lock().entry(tenant).or_default() += n;
    }

    /// Writes every pending count; what fails stays pending.
    pub async fn flush(&self, store: &dyn Store) {
        let month = current_month();
        for (tenant, n) in self.take() {
            let delta = UsageDelta {
                queries: n,
                month: month.clone(),
                ..UsageDelta::default()
            };
            if let Err(e) = store.add_usage(&tenant, &delta).await {
                tracing::warn!(%tenant, error = %e, "query count not written; kept for the next round");
                self.put_back(tenant, n);
            }
        }
    }
}

/// Flushes every `interval` until `stop`, then once more.
pub async fn flush_loop(
    counter: Arc<QueryCounter>,
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
