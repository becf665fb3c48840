//! Assembles the sidecar from [`Settings`]: store, policies, cache, engine,
//! the hot-reload loop and the HTTP server.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::authz::Engine;
use crate::cache::EntityCache;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::policy::{self, LoadError, PolicyHandle, PolicySnapshot};
use crate::sidecar::{self, AppState};
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load policies")]
    Policy(#[from] LoadError),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
}

/// A sidecar ready to serve.
pub struct App {
    pub state: Arc<AppState>,
    pub policies: PolicyHandle,
    pub metrics: Arc<Metrics>,
    settings: Settings,
}

impl App {
    /// Loads and validates the policies (a failure stops start-up), opens the
    /// store and builds the engine.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        // Policies first: a broken policy set stops start-up before any I/O.
        let snapshot = policy::load(&settings.sources)?;
        let store = store::open(&settings.store).await?;
        Ok(Self::assemble(settings, snapshot, store))
    }

    /// Like [`App::build`], over a store the caller opened.
    pub fn build_with_store(settings: Settings, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let snapshot = policy::load(&settings.sources)?;
        Ok(Self::assemble(settings, snapshot, store))
    }

    fn assemble(settings: Settings, snapshot: PolicySnapshot, store: Arc<dyn Store>) -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.set_policy_revision(&snapshot.revision);
        let policies: PolicyHandle = Arc::new(ArcSwap::from_pointee(snapshot));
        let cache = Arc::new(EntityCache::new(
            store,
            settings.cache.clone(),
            metrics.tenant_cache.clone(),
            metrics.document_cache.clone(),
        ));
        let engine = Arc::new(Engine::new(
            policies.clone(),
            cache,
            metrics.clone(),
            settings.cache.decision_capacity,
        ));
        let state = Arc::new(AppState {
            engine,
            config: settings.sidecar.clone(),
        });
        App {
            state,
            policies,
            metrics,
            settings,
        }
    }

    /// Serves on `listener` (and watches the policy files) until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
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
        sidecar::run(listener, self.state.clone(), shutdown).await;
        let _ = stop_tx.send(true);
        let _ = watcher.await;
    }
}
