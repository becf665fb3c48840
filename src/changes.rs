//! Change propagation: each sidecar follows the store's change log and drops
//! the cached copy of every tenant or document that changed, so a change made
//! through `cedargate-admin` takes effect within about one poll interval
//! instead of waiting out the cache TTL.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cache::EntityCache;
use crate::metrics::Metrics;
use crate::store::{Change, ChangeCursor, Store};

/// How long change ids are remembered to skip changes a store returns again.
const SEEN_WINDOW: Duration = Duration::from_secs(30);

/// Drops the cache entry a change concerns.
pub fn apply(cache: &EntityCache, change: &Change) {
    match change {
        Change::Tenant { tenant_id } => cache.invalidate_tenant(tenant_id),
        Change::Document {
            tenant_id,
            document_id,
        } => cache.invalidate_document(tenant_id, document_id),
    }
}

/// Follows the change log from `cursor` (or, if `None`, from wherever it
/// ends when first reachable) until `shutdown`.
pub async fn follow(
    store: Arc<dyn Store>,
    cache: Arc<EntityCache>,
    metrics: Arc<Metrics>,
    mut cursor: Option<ChangeCursor>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: VecDeque<(Instant, String)> = VecDeque::new();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let result = match &cursor {
            None => store.change_cursor().await.map(|c| (Vec::new(), c)),
            Some(c) => store.changes_since(c).await,
        };
        match result {
            Ok((changes, next)) => {
                if failing {
                    tracing::info!("change log reachable again");
                    // Changes may have been missed while the log was
                    // unreachable: start again from a clean cache.
                    cache.clear();
                    failing = false;
                }
                for (id, change) in changes {
                    if seen.insert(id.clone()) {
                        order.push_back((Instant::now(), id));
                        apply(&cache, &change);
                        metrics.changes_applied.inc();
                    }
                }
                while order
                    .front()
                    .is_some_and(|(at, _)| at.elapsed() > SEEN_WINDOW)
                {
                    if let Some((_, id)) = order.pop_front() {
                        seen.remove(&id);
                    }
                }
                cursor = Some(next);
            }
            Err(e) => {
                metrics.change_log_errors.inc();
                if !failing {
                    tracing::warn!(error = %e, "cannot read the change log; cached entries expire by TTL");
                    failing = true;
                }
            }
        }
    }
}
