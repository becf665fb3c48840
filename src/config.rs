//! Settings of `cedargate serve`: command-line flags, an optional TOML file
//! with the same settings (flags win), and defaults.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cache::CacheConfig;
use crate::policy::PolicySources;
use crate::sidecar::{IdentityMode, SidecarConfig};
use crate::store::StoreUrl;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8180";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityArg {
    /// The request body states the principal (for a trusted caller only).
    Trusted,
}

/// Flags of `cedargate serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with the same settings; flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8180].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where tenants and documents live, e.g. sqlite:cedargate.db.
    #[arg(long)]
    pub store: Option<StoreUrl>,
    /// Directory of *.cedar policy files [default: policies].
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Directory of *.cedarschema files [default: schemas].
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// How the principal is identified. Must be given explicitly.
    #[arg(long, value_enum)]
    pub identity: Option<IdentityArg>,
    /// Cache TTL in milliseconds [default: 30000].
    #[arg(long)]
    pub cache_ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    store: Option<String>,
    policies: Option<PathBuf>,
    schema: Option<PathBuf>,
    identity: Option<IdentityArg>,
    max_body_bytes: Option<usize>,
    max_batch: Option<usize>,
    reload_interval_ms: Option<u64>,
    #[serde(default)]
    cache: FileCache,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    ttl_ms: Option<u64>,
    negative_ttl_ms: Option<u64>,
    tenant_capacity: Option<NonZeroUsize>,
    document_capacity: Option<NonZeroUsize>,
    decision_capacity: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Everything the sidecar needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: StoreUrl,
    pub sources: PolicySources,
    pub cache: CacheConfig,
    pub sidecar: SidecarConfig,
    pub reload_interval: Duration,
}

impl Settings {
    /// Defaults for everything but the store, with trusted identity (used by
    /// the demo and tests).
    pub fn trusted(store: StoreUrl, policy_dir: &Path, schema_dir: &Path) -> Self {
        Settings {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8180))),
            store,
            sources: PolicySources {
                policy_dir: policy_dir.to_path_buf(),
                schema_dir: schema_dir.to_path_buf(),
            },
            cache: CacheConfig::default(),
            sidecar: SidecarConfig::new(IdentityMode::Trusted),
            reload_interval: Duration::from_millis(250),
        }
    }

    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        let store = match (args.store, file.store) {
            (Some(s), _) => s,
            (None, Some(s)) => s.parse().map_err(ConfigError::Invalid)?,
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "no store given: pass --store sqlite:PATH (or `store` in the config file)"
                        .into(),
                ))
            }
        };
        let identity = match args.identity.or(file.identity) {
            Some(IdentityArg::Trusted) => IdentityMode::Trusted,
            None => {
                return Err(ConfigError::Invalid(
                    "no identity mode given: pass --identity trusted (the caller states the \
                     principal; use only behind a trusted proxy)"
                        .into(),
                ))
            }
        };
        let policy_dir = args
            .policies
            .or(file.policies)
            .unwrap_or_else(|| "policies".into());
        let schema_dir = args
            .schema
            .or(file.schema)
            .unwrap_or_else(|| "schemas".into());
        let mut s = Settings::trusted(store, &policy_dir, &schema_dir);
        s.sidecar.identity = identity;
        if let Some(listen) = args.listen.or(file.listen) {
            s.listen = listen;
        }
        if let Some(ms) = args.cache_ttl_ms.or(file.cache.ttl_ms) {
            s.cache.ttl = Duration::from_millis(ms);
        }
        if let Some(ms) = file.cache.negative_ttl_ms {
            s.cache.negative_ttl = Duration::from_millis(ms);
        }
        if let Some(n) = file.cache.tenant_capacity {
            s.cache.tenant_capacity = n;
        }
        if let Some(n) = file.cache.document_capacity {
            s.cache.document_capacity = n;
        }
        if let Some(n) = file.cache.decision_capacity {
            s.cache.decision_capacity = n;
        }
        if let Some(n) = file.max_body_bytes {
            s.sidecar.max_body_bytes = n;
        }
        if let Some(n) = file.max_batch {
            s.sidecar.max_batch = n;
        }
        if let Some(ms) = file.reload_interval_ms {
            s.reload_interval = Duration::from_millis(ms.max(10));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nstore = \"sqlite:file.db\"\nidentity = \"trusted\"\n[cache]\nttl_ms = 5\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            store: Some("sqlite:flag.db".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.store, StoreUrl::Sqlite("flag.db".into()));
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.cache.ttl, Duration::from_millis(5));
        assert_eq!(s.sidecar.identity, IdentityMode::Trusted);
    }

    #[test]
    fn identity_and_store_must_be_explicit() {
        let err = Settings::resolve(ServeArgs {
            store: Some("sqlite:x.db".parse().unwrap()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--identity"));
        let err = Settings::resolve(ServeArgs {
            identity: Some(IdentityArg::Trusted),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--store"));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Settings::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
    }
}
