//! The sidecar's HTTP server (hyper 1, HTTP/1.1). `run` takes a bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and talk to the
//! real server.

pub mod client;
pub mod forward;
pub mod http;
pub(crate) mod routes;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::audit::writer::AuditLog;
use crate::authz::Engine;
use crate::identity::Verifier;
use forward::RouteTable;
use http::Body;

/// How the principal reaches the sidecar.
#[derive(Clone)]
pub enum Identity {
    /// A verified bearer token (the default).
    Jwt(Arc<Verifier>),
    /// The caller is trusted to state the principal's claims in the body
    /// (only when explicitly configured).
    Trusted,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Jwt(v) => write!(f, "Jwt(issuer {})", v.config().issuer),
            Identity::Trusted => f.write_str("Trusted"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest batch.
    pub max_batch: usize,
    /// How long in-flight requests get to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            max_body_bytes: 1024 * 1024,
            max_batch: 100,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What every request handler shares.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: SidecarConfig,
    pub identity: Identity,
    pub routes: RouteTable,
    pub audit: AuditLog,
    /// The policy stores of the Verified Permissions API.
    pub avp: Arc<crate::avp::PolicyStores>,
    /// Search plans (`/v1/authorize/plan`, forward-auth search filters).
    pub planner: Arc<crate::search::Planner>,
    /// Authentication records: refused tokens and sign-ins.
    pub auth: Arc<crate::audit::auth::AuthEvents>,
}

/// A server's request handler: state, request, peer address → response.
pub trait Router: Send + Sync + 'static {
    fn route(
        &self,
        state: Arc<AppState>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

/// The sidecar's routes.
pub struct SidecarRoutes;

impl Router for SidecarRoutes {
    fn route(
        &self,
        state: Arc<AppState>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move { routes::route(&state, req, peer).await })
    }
}

/// Serves the sidecar's routes until `shutdown` completes, then drains open
/// connections for at most `drain_timeout`.
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    serve(listener, state, Arc::new(SidecarRoutes), shutdown).await
}

/// Serves `router` until `shutdown` completes, then drains open connections
/// for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    router: Arc<dyn Router>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let router = router.clone();
        let service = service_fn(move |req| {
            let fut = router.route(state.clone(), req, peer);
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(state.config.drain_timeout) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
