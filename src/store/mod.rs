//! The store: where tenant records and document ACLs live. One trait, chosen
//! at start-up from a store URL; the embedded SQLite backend needs no set-up
//! and one file is shared by the sidecar and `cedargate-admin`.

mod sqlite;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;

pub use sqlite::SqliteStore;

use crate::ids::{DocumentId, TenantId};
use crate::model::{DataSet, Document, Tenant};

/// What can go wrong talking to a store. `Invalid` is the caller's mistake;
/// the other variants are the store's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid data: {0}")]
    Invalid(String),
    #[error("store error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The store operations the sidecar and the admin tool need. Every
/// tenant-scoped read names the tenant, so no read can cross tenants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates tables if needed. Idempotent.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn get_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
    ) -> Result<Option<Document>, StoreError>;
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn put_document(&self, document: &Document) -> Result<(), StoreError>;
    /// Writes a whole data set: all of it, or (on any error) none of it.
    async fn import(&self, data: &DataSet) -> Result<ImportSummary, StoreError>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub tenants: usize,
    pub documents: usize,
}

/// Where the data lives, as given on the command line: `sqlite:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
}

impl FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(StoreUrl::Sqlite(PathBuf::from(path))),
            _ => Err(format!(
                "unsupported store {s:?}: expected sqlite:PATH (e.g. sqlite:cedargate.db)"
            )),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
        }
    }
}

/// Opens the store a URL names and makes sure its tables exist.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match url {
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
    };
    store.migrate().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!("sqlite:".parse::<StoreUrl>().is_err());
        assert!("postgres://x".parse::<StoreUrl>().is_err());
    }
}
