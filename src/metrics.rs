//! Prometheus metrics of the sidecar. Counters the hot path touches are
//! created once and held as handles (an atomic each), so recording a decision
//! takes no lock but the latency histogram's.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::authz::Effect;
use crate::ids::TenantId;

type Labels = Vec<(&'static str, &'static str)>;
type OwnedLabels = Vec<(&'static str, String)>;

/// Counters of one cache.
#[derive(Clone, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub negative_hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
    pub load_errors: Counter,
    /// Entries past their TTL served because the store failed.
    pub stale_served: Counter,
    /// Entries held.
    pub entries: Gauge,
    /// Bytes charged for the entries held (an estimate of their heap).
    pub bytes: Gauge,
}

/// Document decisions from residual policies.
#[derive(Clone, Default)]
pub struct ResidualMetrics {
    /// Keys whose residuals were computed and can decide.
    pub computed: Counter,
    /// Keys whose residuals cannot decide exactly (Cedar decides them).
    pub unusable: Counter,
    /// Decisions made from residuals.
    pub decided: Counter,
}

/// Metrics of the audit writer.
#[derive(Clone)]
pub struct AuditMetrics {
    /// Records waiting for the appender.
    pub queue_depth: Gauge,
    /// Bytes in the spool not yet acknowledged by the store.
    pub spool_bytes: Gauge,
    /// Records made durable in the spool.
    pub records_spooled: Counter,
    /// Records the store acknowledged.
    pub records_written: Counter,
    /// Acknowledged records that can never reach the store. Must stay 0.
    pub records_dropped: Counter,
    /// Failed store writes (each is retried).
    pub store_write_errors: Counter,
    /// Drain rounds in idle time that did not finish (starved of CPU past
    /// their hold limit, or failed); the drainer wrote their records.
    pub idle_rounds_abandoned: Counter,
    /// Failed spool writes, syncs or removals.
    pub spool_errors: Counter,
    /// Bytes of torn tails cut off after a crash (never acknowledged).
    pub torn_bytes: Counter,
    /// Requests refused because their record could not be written.
    pub refused: Counter,
    /// Time of one spool commit (write and, in durable mode, fdatasync).
    pub commit_seconds: Histogram,
    /// Records per spool commit.
    pub commit_records: Histogram,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        AuditMetrics {
            queue_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            records_spooled: Counter::default(),
            records_written: Counter::default(),
            records_dropped: Counter::default(),
            store_write_errors: Counter::default(),
            idle_rounds_abandoned: Counter::default(),
            spool_errors: Counter::default(),
            torn_bytes: Counter::default(),
            refused: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 14)),
            commit_records: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        }
    }
}

impl AuditMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("audit");
        r.register(
            "queue_depth",
            "Audit records waiting for the spool",
            self.queue_depth.clone(),
        );
        r.register(
            "spool_bytes",
            "Audit spool bytes not yet in the store",
            self.spool_bytes.clone(),
        );
        r.register(
            "records_spooled",
            "Audit records made durable in the spool",
            self.records_spooled.clone(),
        );
        r.register(
            "records_written",
            "Audit records acknowledged by the store",
            self.records_written.clone(),
        );
        r.register(
            "records_dropped",
            "Acknowledged audit records that cannot reach the store (must stay 0)",
            self.records_dropped.clone(),
        );
        r.register(
            "store_write_errors",
            "Failed audit writes to the store (retried)",
            self.store_write_errors.clone(),
        );
        r.register(
            "idle_rounds_abandoned",
            "Audit drain rounds in idle time that did not finish (starved of CPU or failed); written by the drainer instead",
            self.idle_rounds_abandoned.clone(),
        );
        r.register(
            "spool_errors",
            "Failed audit spool writes, syncs or removals",
            self.spool_errors.clone(),
        );
        r.register(
            "torn_bytes",
            "Bytes of torn spool tails cut off after a crash",
            self.torn_bytes.clone(),
        );
        r.register(
            "refused",
            "Requests refused because their audit record could not be written",
            self.refused.clone(),
        );
        r.register(
            "commit_seconds",
            "Time of one audit spool commit (write, and fdatasync in durable mode)",
            self.commit_seconds.clone(),
        );
        r.register(
            "commit_records",
            "Audit records per spool commit",
            self.commit_records.clone(),
        );
    }
}

/// Why a request was denied without (or despite) the policies, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailClosed {
    TenantNotFound,
    StoreUnavailable,
    EvaluationError,
}

impl FailClosed {
    pub fn as_str(self) -> &'static str {
        match self {
            FailClosed::TenantNotFound => "tenant_not_found",
            FailClosed::StoreUnavailable => "store_unavailable",
            FailClosed::EvaluationError => "evaluation_error",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub allow: Counter,
    pub deny: Counter,
    fail_closed: Family<Labels, Counter>,
    pub bad_requests: Counter,
    pub latency: Histogram,
    pub tenant_cache: CacheMetrics,
    pub document_cache: CacheMetrics,
    pub decision_cache: CacheMetrics,
    pub residuals: ResidualMetrics,
    pub changes_applied: Counter,
    pub change_log_errors: Counter,
    pub policy_reloads: Counter,
    pub policy_reload_failures: Counter,
    pub audit: AuditMetrics,
    policy_info: Family<Vec<(&'static str, String)>, Gauge>,
    avp_decisions: Family<Labels, Counter>,
    avp_errors: Family<Labels, Counter>,
    avp_pulls: Family<Labels, Counter>,
    by_action: Family<OwnedLabels, Counter>,
    /// The `by_action` counters by action (allowed, denied), so counting
    /// a decision allocates nothing once its action was seen.
    action_counters: parking_lot::RwLock<std::collections::HashMap<String, [Counter; 2]>>,
    by_tenant: Family<OwnedLabels, Counter>,
    /// Per-tenant labels: off (`None`), or the tenants admitted so far and
    /// how many may be (the rest are counted as `other`).
    per_tenant:
        std::sync::OnceLock<parking_lot::Mutex<(std::collections::HashSet<TenantId>, usize)>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cedargate");
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "Authorization decisions by result",
            decisions.clone(),
        );
        let allow = decisions
            .get_or_create(&vec![("decision", "allow")])
            .clone();
        let deny = decisions.get_or_create(&vec![("decision", "deny")]).clone();

        let fail_closed = Family::<Labels, Counter>::default();
        registry.register(
            "fail_closed_denials",
            "Denials made because no decision could be made (reason label)",
            fail_closed.clone(),
        );
        let bad_requests = Counter::default();
        registry.register(
            "bad_requests",
            "Requests rejected as malformed",
            bad_requests.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.000_002, 2.0, 20));
        registry.register(
            "decision_latency_seconds",
            "Time to decide, from parsed request to decision",
            latency.clone(),
        );

        let cache = Family::<Labels, Counter>::default();
        registry.register(
            "cache_events",
            "Entity cache events (cache and event labels)",
            cache.clone(),
        );
        let entries = Family::<Labels, Gauge>::default();
        registry.register(
            "cache_entries",
            "Entries a cache holds (cache label)",
            entries.clone(),
        );
        let bytes = Family::<Labels, Gauge>::default();
        registry.register(
            "cache_bytes",
            "Estimated heap bytes a cache's entries hold (cache label)",
            bytes.clone(),
        );
        let cache_metrics = |name: &'static str| {
            let c = |event: &'static str| {
                cache
                    .get_or_create(&vec![("cache", name), ("event", event)])
                    .clone()
            };
            CacheMetrics {
                hits: c("hit"),
                negative_hits: c("negative_hit"),
                misses: c("miss"),
                evictions: c("eviction"),
                load_errors: c("load_error"),
                stale_served: c("stale_served"),
                entries: entries.get_or_create(&vec![("cache", name)]).clone(),
                bytes: bytes.get_or_create(&vec![("cache", name)]).clone(),
            }
        };
        let tenant_cache = cache_metrics("tenant");
        let document_cache = cache_metrics("document");
        let decision_cache = cache_metrics("decision");
        let residual = Family::<Labels, Counter>::default();
        registry.register(
            "residual_events",
            "Document decisions from residual policies (event: computed, unusable, decided)",
            residual.clone(),
        );
        let r = |event: &'static str| residual.get_or_create(&vec![("event", event)]).clone();
        let residuals = ResidualMetrics {
            computed: r("computed"),
            unusable: r("unusable"),
            decided: r("decided"),
        };

        let changes_applied = Counter::default();
        registry.register(
            "changes_applied",
            "Store changes applied to the cache from the change log",
            changes_applied.clone(),
        );
        let change_log_errors = Counter::default();
        registry.register(
            "change_log_errors",
            "Failed reads of the change log",
            change_log_errors.clone(),
        );
        let policy_reloads = Counter::default();
        registry.register(
            "policy_reloads",
            "Policy sets applied by hot reload",
            policy_reloads.clone(),
        );
        let policy_reload_failures = Counter::default();
        registry.register(
            "policy_reload_failures",
            "Policy reloads rejected (the last good set was kept)",
            policy_reload_failures.clone(),
        );
        let policy_info = Family::<Vec<(&'static str, String)>, Gauge>::default();
        registry.register(
            "policy_revision",
            "The policy revision in force (value 1)",
            policy_info.clone(),
        );
        let audit = AuditMetrics::default();
        audit.register(&mut registry);
        let avp_decisions = Family::<Labels, Counter>::default();
        registry.register(
            "avp_decisions",
            "Decisions of the Verified Permissions API by result",
            avp_decisions.clone(),
        );
        let avp_errors = Family::<Labels, Counter>::default();
        registry.register(
            "avp_errors",
            "Verified Permissions API calls answered with an error, by AWS error type",
            avp_errors.clone(),
        );
        let avp_pulls = Family::<Labels, Counter>::default();
        registry.register(
            "avp_pulls",
            "Refreshes of policy stores pulled from Verified Permissions, by result",
            avp_pulls.clone(),
        );
        let by_action = Family::<OwnedLabels, Counter>::default();
        registry.register(
            "decisions_by_action",
            "Authorization decisions by action and decision",
            by_action.clone(),
        );
        let by_tenant = Family::<OwnedLabels, Counter>::default();
        registry.register(
            "tenant_decisions",
            "Authorization decisions by the caller's tenant, action and decision \
             ([metrics] per_tenant; tenants past max_tenants are `other`)",
            by_tenant.clone(),
        );
        Metrics {
            registry,
            by_action,
            action_counters: Default::default(),
            by_tenant,
            per_tenant: std::sync::OnceLock::new(),
            allow,
            deny,
            fail_closed,
            bad_requests,
            latency,
            tenant_cache,
            document_cache,
            decision_cache,
            residuals,
            changes_applied,
            change_log_errors,
            policy_reloads,
            policy_reload_failures,
            audit,
            policy_info,
            avp_decisions,
            avp_errors,
            avp_pulls,
        }
    }

    /// Turns per-tenant decision labels on, for at most `max_tenants`
    /// tenants (the first seen); the others are labelled `other`.
    pub fn set_per_tenant(&self, max_tenants: usize) {
        let _ = self.per_tenant.set(parking_lot::Mutex::new((
            std::collections::HashSet::new(),
            max_tenants,
        )));
    }

    /// A decision by action (bounded: the schema's actions) and, when on,
    /// by tenant.
    pub fn count_action(&self, tenant: &TenantId, action: &str, decision: Effect) {
        let (d, i) = match decision {
            Effect::Allow => ("allow", 0),
            Effect::Deny => ("deny", 1),
        };
        let known = self
            .action_counters
            .read()
            .get(action)
            .map(|c| c[i].clone());
        match known {
            Some(c) => {
                c.inc();
            }
            None => {
                let counter = |d: &str| {
                    self.by_action
                        .get_or_create(&vec![
                            ("action", action.to_string()),
                            ("decision", d.to_string()),
                        ])
                        .clone()
                };
                let pair = [counter("allow"), counter("deny")];
                pair[i].inc();
                self.action_counters
                    .write()
                    .insert(action.to_string(), pair);
            }
        }
        let Some(per_tenant) = self.per_tenant.get() else {
            return;
        };
        let label = {
            let (seen, max) = &mut *per_tenant.lock();
            if seen.contains(tenant) || seen.len() < *max {
                seen.insert(tenant.clone());
                tenant.as_str().to_string()
            } else {
                "other".to_string()
            }
        };
        self.by_tenant
            .get_or_create(&vec![
                ("tenant", label),
                ("action", action.to_string()),
                ("decision", d.to_string()),
            ])
            .inc();
    }

    /// A decision of the Verified Permissions API.
    pub fn avp_decision(&self, allowed: bool) {
        let d = if allowed { "allow" } else { "deny" };
        self.avp_decisions
            .get_or_create(&vec![("decision", d)])
            .inc();
    }

    /// A Verified Permissions API call answered with `kind`.
    pub fn avp_error(&self, kind: &'static str) {
        self.avp_errors.get_or_create(&vec![("type", kind)]).inc();
    }

    /// A policy-store refresh: `changed`, `unchanged`, `throttled` or
    /// `failed`.
    pub fn avp_pull(&self, result: &'static str) {
        self.avp_pulls
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    pub fn fail_closed(&self, why: FailClosed) {
        self.fail_closed
            .get_or_create(&vec![("reason", why.as_str())])
            .inc();
    }

    pub fn fail_closed_count(&self, why: FailClosed) -> u64 {
        self.fail_closed
            .get(&vec![("reason", why.as_str())])
            .map_or(0, |c| c.get())
    }

    pub fn set_policy_revision(&self, revision: &str) {
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&vec![("revision", revision.to_string())])
            .set(1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_revision() {
        let m = Metrics::new();
        m.allow.inc();
        m.deny.inc();
        m.deny.inc();
        m.fail_closed(FailClosed::StoreUnavailable);
        m.set_policy_revision("sha256:abc");
        m.set_policy_revision("sha256:def");
        let text = m.render();
        assert!(
            text.contains("cedargate_decisions_total{decision=\"deny\"} 2"),
            "{text}"
        );
        assert!(text.contains("reason=\"store_unavailable\"} 1"), "{text}");
        assert!(text.contains("revision=\"sha256:def\"} 1"), "{text}");
        assert!(!text.contains("sha256:abc"), "{text}");
        assert_eq!(m.fail_closed_count(FailClosed::StoreUnavailable), 1);
    }
}
