//! Assembles the sidecar from [`Settings`]: store, policies, cache, engine,
//! the audit writer, the hot-reload loop and the HTTP server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::writer::{self as audit_writer, AuditError, AuditTasks};
use crate::authz::Engine;
use crate::cache::EntityCache;
use crate::changes;
use crate::config::{IdentityConfig, Settings};
use crate::identity::{JwksError, Verifier};
use crate::metrics::Metrics;
use crate::policy::{self, LoadError, PolicyHandle, PolicySnapshot, ResourceKind};
use crate::sidecar::forward::{RouteResource, RouteTable};
use crate::sidecar::Identity;
use crate::sidecar::{self, AppState};
use crate::store::{self, ChangeCursor, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load policies")]
    Policy(#[from] LoadError),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot load the token issuer's keys")]
    Jwks(#[from] JwksError),
    #[error("invalid forward-auth route table: {0}")]
    Routes(String),
    #[error("cannot open the audit spool")]
    Audit(#[from] AuditError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The route table, checked against the policy set's actions.
fn route_table(settings: &Settings, snapshot: &PolicySnapshot) -> Result<RouteTable, StartError> {
    let table = RouteTable::new(&settings.forward_auth).map_err(StartError::Routes)?;
    for r in table.routes() {
        let Some(action) = snapshot.actions.get(&r.action) else {
            return Err(StartError::Routes(format!(
                "route {} {}: unknown action {:?}",
                r.method, r.path, r.action
            )));
        };
        let kind = match r.resource {
            RouteResource::Document => ResourceKind::Document,
            RouteResource::Tenant => ResourceKind::Tenant,
        };
        if action.resource != kind {
            return Err(StartError::Routes(format!(
                "route {} {}: {} applies to {:?}, not {:?}",
                r.method, r.path, r.action, action.resource, kind
            )));
        }
    }
    Ok(table)
}

async fn identity(settings: &Settings) -> Result<Identity, StartError> {
    Ok(match &settings.identity {
        IdentityConfig::Trusted => Identity::Trusted,
        IdentityConfig::Jwt(cfg) => Identity::Jwt(Verifier::new(cfg.clone()).await?),
    })
}

/// A sidecar ready to serve.
pub struct App {
    pub state: Arc<AppState>,
    pub policies: PolicyHandle,
    pub metrics: Arc<Metrics>,
    settings: Settings,
    /// Where the change log ended when the cache was created.
    cursor: Option<ChangeCursor>,
    audit: Option<AuditTasks>,
    /// Policy stores to pull from Verified Permissions.
    pulled: Vec<Pulled>,
}

/// A policy store the sidecar keeps a copy of.
struct Pulled {
    config: crate::avp::StoreConfig,
    slot: Arc<arc_swap::ArcSwapOption<crate::avp::PolicyStoreSet>>,
}

/// The hosted policy stores; those of AVP start empty and are filled by
/// their pullers. A store with cedargate's semantics and no identity source
/// of its own takes the sidecar's token settings (token identity).
async fn avp_stores(
    configs: &[crate::avp::StoreConfig],
    git: &PolicyHandle,
    sidecar_identity: &Identity,
) -> Result<(crate::avp::PolicyStores, Vec<Pulled>), StartError> {
    use crate::avp::{HostedStore, Policies, Semantics, SourceKind, TokenMapping, TokenSource};
    let mut hosted = Vec::new();
    let mut pulled = Vec::new();
    for c in configs {
        let policies = match c.source {
            SourceKind::Git => Policies::Git(git.clone()),
            SourceKind::Avp => {
                let slot = Arc::new(arc_swap::ArcSwapOption::empty());
                pulled.push(Pulled {
                    config: c.clone(),
                    slot: slot.clone(),
                });
                Policies::Pulled(slot)
            }
        };
        let semantics = c.semantics();
        let identity = match (&c.identity, sidecar_identity, semantics) {
            (Some(i), _, _) => Some(TokenSource {
                verifier: Verifier::new(i.jwt_config()).await?,
                mapping: i.mapping(semantics).map_err(StartError::Config)?,
            }),
            (None, Identity::Jwt(verifier), Semantics::Cedargate) => Some(TokenSource {
                verifier: verifier.clone(),
                mapping: TokenMapping::Native,
            }),
            (None, _, _) => None,
        };
        hosted.push(HostedStore {
            id: c.id.clone(),
            policies,
            identity,
            semantics,
            parsed: Default::default(),
        });
    }
    Ok((crate::avp::PolicyStores::new(hosted), pulled))
}

impl App {
    /// Loads and validates the policies (a failure stops start-up), opens the
    /// store and builds the engine.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        // Policies first: a broken policy set stops start-up before any I/O.
        let snapshot = policy::load(&settings.sources)?;
        let routes = route_table(&settings, &snapshot)?;
        let identity = identity(&settings).await?;
        let store = store::open(&settings.store).await?;
        Self::assemble(settings, snapshot, store, identity, routes).await
    }

    /// Like [`App::build`], over a store the caller opened.
    pub async fn build_with_store(
        settings: Settings,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartError> {
        let snapshot = policy::load(&settings.sources)?;
        let routes = route_table(&settings, &snapshot)?;
        let identity = identity(&settings).await?;
        Self::assemble(settings, snapshot, store, identity, routes).await
    }

    async fn assemble(
        settings: Settings,
        snapshot: PolicySnapshot,
        store: Arc<dyn Store>,
        identity: Identity,
        routes: RouteTable,
    ) -> Result<Self, StartError> {
        let cursor = store.change_cursor().await.ok();
        let metrics = Arc::new(Metrics::new());
        let (audit, audit_tasks) = audit_writer::start(
            settings.audit.clone(),
            store.clone(),
            metrics.audit.clone(),
            &settings.audit.role,
        )
        .await?;
        metrics.set_policy_revision(&snapshot.revision);
        if settings.metrics.per_tenant {
            metrics.set_per_tenant(settings.metrics.max_tenants);
        }
        let policies: PolicyHandle = Arc::new(ArcSwap::from_pointee(snapshot));
        let cache = Arc::new(EntityCache::new(
            store,
            settings.cache.clone(),
            metrics.tenant_cache.clone(),
            metrics.document_cache.clone(),
        ));
        let engine = Arc::new(
            Engine::new(
                policies.clone(),
                cache,
                metrics.clone(),
                settings.cache.decision_capacity,
            )
            .with_residuals(
                settings.cache.residual_capacity,
                settings.cache.residual_after,
            )
            .with_entity_sets(settings.cache.entity_set_capacity),
        );
        let (avp, pulled) = avp_stores(&settings.avp, &policies, &identity).await?;
        let tenant_claim = match &identity {
            Identity::Jwt(v) => v.config().claims.tenant.clone(),
            Identity::Trusted => crate::identity::ClaimNames::default().tenant,
        };
        let auth = crate::audit::auth::AuthEvents::new(audit.clone(), tenant_claim);
        let state = Arc::new(AppState {
            engine,
            config: settings.sidecar.clone(),
            identity,
            routes,
            audit,
            avp: Arc::new(avp),
            planner: Arc::new(crate::search::Planner::new(settings.search.clone())),
            auth,
        });
        Ok(App {
            state,
            policies,
            metrics,
            settings,
            cursor,
            audit: audit_tasks,
            pulled,
        })
    }

    /// Serves the sidecar on `listener` (and watches the policy files) until
    /// `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_with(listener, Arc::new(sidecar::SidecarRoutes), shutdown)
            .await
    }

    /// Serves `router` on `listener` (and watches the policy files and the
    /// change log) until `shutdown`.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        router: Arc<dyn sidecar::Router>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut rx = stop_rx.clone();
        let watcher = tokio::spawn(policy::watch::watch(
            self.settings.sources.clone(),
            self.policies.clone(),
            self.metrics.clone(),
            self.settings.reload_interval,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        let mut rx = stop_rx.clone();
        let follower = tokio::spawn(changes::follow(
            self.state.engine.cache().store().clone(),
            self.state.engine.cache().clone(),
            self.metrics.clone(),
            self.cursor.clone(),
            self.settings.change_poll_interval,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        let mut rx = stop_rx.clone();
        let counter = tokio::spawn(crate::usage::flush_loop(
            self.state.engine.queries().clone(),
            self.state.engine.cache().store().clone(),
            self.settings.usage_flush_interval,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        let mut rx = stop_rx.clone();
        let auth = tokio::spawn(self.state.auth.clone().flush_loop(
            self.settings.auth_flush_interval,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        let mut pullers = Vec::new();
        for p in &self.pulled {
            let mut rx = stop_rx.clone();
            let client = crate::avp::source::client(
                p.config.region.as_deref(),
                p.config.endpoint_url.as_deref(),
            )
            .await;
            pullers.push(tokio::spawn(crate::avp::source::follow(
                client,
                p.config.id.clone(),
                p.slot.clone(),
                Duration::from_secs(p.config.refresh_secs.unwrap_or(30).max(1)),
                self.metrics.clone(),
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                },
            )));
        }
        sidecar::serve(listener, self.state.clone(), router, shutdown).await;
        let _ = stop_tx.send(true);
        let _ = watcher.await;
        let _ = follower.await;
        let _ = counter.await;
        let _ = auth.await;
        for p in pullers {
            let _ = p.await;
        }
        // Every request has been answered: write and drain their records.
        if let Some(audit) = self.audit {
            audit.shutdown().await;
        }
    }
}
