//! Settings of `cedargate serve`: command-line flags, an optional TOML file
//! with the same settings (flags win), and defaults.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::audit::writer::{AuditConfig, AuditMode};
use crate::cache::CacheConfig;
use crate::identity::{ClaimNames, JwksSource, JwtConfig, TokenUse};
use crate::policy::PolicySources;
use crate::retention::{default_archive_dir, RetentionConfig};
use crate::sidecar::forward::ForwardAuthConfig;
use crate::sidecar::SidecarConfig;
use crate::store::StoreUrl;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8180";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityArg {
    /// Verified bearer tokens (Cognito / OIDC JWTs). The default.
    Jwt,
    /// The request body states the principal (for a trusted caller only).
    Trusted,
}

/// How principals are identified.
#[derive(Debug, Clone)]
pub enum IdentityConfig {
    Jwt(JwtConfig),
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
    /// How the principal is identified [default: jwt].
    #[arg(long, value_enum)]
    pub identity: Option<IdentityArg>,
    /// JWKS file of the token issuer.
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of the token issuer (https), e.g.
    /// https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json
    #[arg(long)]
    pub jwks_url: Option<String>,
    /// Expected token issuer (`iss`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Accepted audience / app client id; repeatable.
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Accepted token type [default: any].
    #[arg(long, value_enum)]
    pub token_use: Option<TokenUse>,
    /// Claim naming the tenant [default: custom:tenant_id].
    #[arg(long)]
    pub tenant_claim: Option<String>,
    /// Accept development keys minted by `cedargate token` (never in production).
    #[arg(long)]
    pub allow_dev_keys: bool,
    /// Cache TTL in milliseconds [default: 30000].
    #[arg(long)]
    pub cache_ttl_ms: Option<u64>,
    /// When an audit record counts as written [default: durable].
    #[arg(long, value_enum)]
    pub audit_mode: Option<AuditMode>,
    /// Directory of the audit spool [default: next to a SQLite store, else
    /// ./cedargate-audit-spool].
    #[arg(long)]
    pub audit_spool: Option<PathBuf>,
}

/// `[metrics]`: per-tenant labels on decision metrics, off by default (a
/// label per tenant is a series per tenant), and then capped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub per_tenant: bool,
    /// Tenants with their own label; the rest are `other`.
    pub max_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            per_tenant: false,
            max_tenants: 100,
        }
    }
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
    change_poll_interval_ms: Option<u64>,
    usage_flush_interval_ms: Option<u64>,
    auth_flush_interval_ms: Option<u64>,
    #[serde(default)]
    cache: FileCache,
    #[serde(default)]
    jwt: FileJwt,
    forward_auth: Option<ForwardAuthConfig>,
    search: Option<crate::search::SearchConfig>,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    retention: FileRetention,
    #[serde(default)]
    metrics: MetricsConfig,
    avp: Option<FileAvp>,
    #[serde(default)]
    billing: FileBilling,
    console: Option<crate::console::ConsoleConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBilling {
    stripe: Option<crate::billing::stripe::StripeConfig>,
    /// How often `cedargate-admin serve` samples every tenant's storage
    /// (the day's last sample counts); 0: never (an external scheduler
    /// runs `cedargate-admin billing sample`).
    storage_sample_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAvp {
    #[serde(default)]
    stores: Vec<crate::avp::StoreConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    recovery_days: Option<u32>,
    archive_dir: Option<PathBuf>,
    interval_secs: Option<u64>,
    encryption: Option<crate::retention::Encryption>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    mode: Option<AuditMode>,
    spool_dir: Option<PathBuf>,
    queue_capacity: Option<usize>,
    max_batch: Option<usize>,
    segment_bytes: Option<u64>,
    rotate_interval_ms: Option<u64>,
    flush_interval_ms: Option<u64>,
    max_spool_bytes: Option<u64>,
    drain_batch: Option<usize>,
    drain_delay_ms: Option<u64>,
    idle_drain_bytes: Option<u64>,
    retention_days: Option<u64>,
    context_keys: Option<Vec<String>>,
    shutdown_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    ttl_ms: Option<u64>,
    negative_ttl_ms: Option<u64>,
    tenant_capacity: Option<NonZeroUsize>,
    document_capacity: Option<NonZeroUsize>,
    decision_capacity: Option<usize>,
    residual_capacity: Option<usize>,
    entity_set_capacity: Option<NonZeroUsize>,
    residual_after: Option<u32>,
    tenant_max_bytes: Option<usize>,
    document_max_bytes: Option<usize>,
    max_staleness_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwt {
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    token_use: Option<TokenUse>,
    tenant_claim: Option<String>,
    roles_claim: Option<String>,
    /// Empty string turns the clearance claim off.
    clearance_claim: Option<String>,
    leeway_secs: Option<u64>,
    max_token_bytes: Option<usize>,
    min_refresh_interval_secs: Option<u64>,
    allow_dev_keys: Option<bool>,
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
    pub identity: IdentityConfig,
    pub forward_auth: ForwardAuthConfig,
    /// Search plans: index field names, the SQL layout, forward-auth
    /// filters.
    pub search: crate::search::SearchConfig,
    pub reload_interval: Duration,
    /// How often the store's change log is read.
    pub change_poll_interval: Duration,
    /// How often counted searches are added to the tenants' usage.
    pub usage_flush_interval: Duration,
    /// How often refused tokens, counted per source and reason, are
    /// written as authentication records (crate::audit::auth).
    pub auth_flush_interval: Duration,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    /// Recovery window, archives and schedule of the retention job
    /// (`cedargate-admin`).
    pub retention: RetentionConfig,
    /// The policy stores of the Verified Permissions API.
    pub avp: Vec<crate::avp::StoreConfig>,
    /// Stripe webhooks (`cedargate-admin`): secrets and the price table.
    pub stripe: crate::billing::stripe::StripeConfig,
    /// How often `cedargate-admin serve` samples tenants' storage for the
    /// GB-days of the billing export; none: never.
    pub storage_sample_interval: Option<Duration>,
    /// The admin console (`cedargate-admin serve`, under `/console/`).
    pub console: crate::console::ConsoleConfig,
}

/// The default audit spool: next to a SQLite store's file, else in the
/// working directory.
pub fn default_spool_dir(store: &StoreUrl) -> PathBuf {
    match store {
        StoreUrl::Sqlite(path) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".audit-spool");
            path.with_file_name(name)
        }
        _ => PathBuf::from("cedargate-audit-spool"),
    }
}

impl Settings {
    /// Defaults for everything but the store, with trusted identity (used by
    /// the demo and tests).
    pub fn trusted(store: StoreUrl, policy_dir: &Path, schema_dir: &Path) -> Self {
        Settings {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8180))),
            sources: PolicySources {
                policy_dir: policy_dir.to_path_buf(),
                schema_dir: schema_dir.to_path_buf(),
            },
            cache: CacheConfig::default(),
            sidecar: SidecarConfig::default(),
            identity: IdentityConfig::Trusted,
            forward_auth: ForwardAuthConfig::default(),
            search: Default::default(),
            reload_interval: Duration::from_millis(250),
            change_poll_interval: Duration::from_millis(200),
            usage_flush_interval: Duration::from_secs(1),
            auth_flush_interval: Duration::from_secs(10),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::new(default_spool_dir(&store)),
            retention: RetentionConfig::new(default_archive_dir(&store)),
            avp: vec![crate::avp::StoreConfig::git(crate::avp::DEFAULT_GIT_STORE)],
            stripe: Default::default(),
            storage_sample_interval: Some(Duration::from_secs(3600)),
            console: Default::default(),
            store,
        }
    }

    /// Like [`Settings::trusted`], with token identity.
    pub fn jwt(store: StoreUrl, policy_dir: &Path, schema_dir: &Path, jwt: JwtConfig) -> Self {
        Settings {
            identity: IdentityConfig::Jwt(jwt),
            ..Settings::trusted(store, policy_dir, schema_dir)
        }
    }

    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let listen = DEFAULT_LISTEN
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("{e}")))?;
        Self::resolve_listening(args, listen)
    }

    /// [`Settings::resolve`] for a server whose address, unless the flags
    /// or the file give one, is `default_listen` (`cedargate-admin`: 8181).
    pub fn resolve_listening(
        args: ServeArgs,
        default_listen: SocketAddr,
    ) -> Result<Self, ConfigError> {
        let file = read_file(args.config.as_deref())?;
        let store = match (args.store.clone(), file.store.clone()) {
            (Some(s), _) => s,
            (None, Some(s)) => s.parse().map_err(ConfigError::Invalid)?,
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "no store given: pass --store sqlite:PATH (or `store` in the config file)"
                        .into(),
                ))
            }
        };
        let identity = match args.identity.or(file.identity).unwrap_or(IdentityArg::Jwt) {
            IdentityArg::Trusted => IdentityConfig::Trusted,
            IdentityArg::Jwt => IdentityConfig::Jwt(jwt_config(&args, &file.jwt)?),
        };
        let policy_dir = args
            .policies
            .clone()
            .or(file.policies.clone())
            .unwrap_or_else(|| "policies".into());
        let schema_dir = args
            .schema
            .clone()
            .or(file.schema.clone())
            .unwrap_or_else(|| "schemas".into());
        let mut s = Settings::trusted(store, &policy_dir, &schema_dir);
        s.identity = identity;
        s.listen = args.listen.or(file.listen).unwrap_or(default_listen);
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
        if let Some(n) = file.cache.residual_capacity {
            s.cache.residual_capacity = n;
        }
        if let Some(n) = file.cache.entity_set_capacity {
            s.cache.entity_set_capacity = n;
        }
        if let Some(n) = file.cache.residual_after {
            s.cache.residual_after = n.max(1);
        }
        if let Some(n) = file.cache.tenant_max_bytes {
            s.cache.tenant_max_bytes = n;
        }
        if let Some(n) = file.cache.document_max_bytes {
            s.cache.document_max_bytes = n;
        }
        if let Some(ms) = file.cache.max_staleness_ms {
            s.cache.max_staleness = Duration::from_millis(ms);
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
        if let Some(ms) = file.change_poll_interval_ms {
            s.change_poll_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = file.usage_flush_interval_ms {
            s.usage_flush_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = file.auth_flush_interval_ms {
            s.auth_flush_interval = Duration::from_millis(ms.max(10));
        }
        s.metrics = file.metrics;
        if let Some(f) = file.forward_auth {
            s.forward_auth = f;
        }
        if let Some(search) = file.search {
            search.check().map_err(ConfigError::Invalid)?;
            s.search = search;
        }
        audit_config(&mut s.audit, &args, &file.audit)?;
        retention_config(&mut s.retention, &file.retention);
        if let Some(avp) = file.avp {
            crate::avp::check_config(&avp.stores).map_err(ConfigError::Invalid)?;
            s.avp = avp.stores;
        }
        if let Some(console) = file.console {
            console.check().map_err(ConfigError::Invalid)?;
            s.console = console;
        }
        if let Some(secs) = file.billing.storage_sample_interval_secs {
            s.storage_sample_interval = (secs > 0).then(|| Duration::from_secs(secs));
        }
        s.stripe = file
            .billing
            .stripe
            .unwrap_or_default()
            .resolve()
            .map_err(ConfigError::Invalid)?;
        Ok(s)
    }
}

fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The retention job's configuration: defaults for `store`, then the
/// `[retention]` section of the configuration file, if one is given.
pub fn retention_settings(
    config: Option<&Path>,
    store: &StoreUrl,
) -> Result<RetentionConfig, ConfigError> {
    let file = read_file(config)?;
    let mut r = RetentionConfig::new(default_archive_dir(store));
    retention_config(&mut r, &file.retention);
    Ok(r)
}

/// The `[search]` settings of a configuration file (the defaults without
/// one).
pub fn search_settings(config: Option<&Path>) -> Result<crate::search::SearchConfig, ConfigError> {
    let search = read_file(config)?.search.unwrap_or_default();
    search.check().map_err(ConfigError::Invalid)?;
    Ok(search)
}

fn retention_config(r: &mut RetentionConfig, f: &FileRetention) {
    if let Some(d) = f.recovery_days {
        r.recovery_days = d;
    }
    if let Some(dir) = &f.archive_dir {
        r.archive_dir = dir.clone();
    }
    if let Some(secs) = f.interval_secs {
        r.interval = (secs > 0).then(|| Duration::from_secs(secs));
    }
    if let Some(e) = &f.encryption {
        r.encryption = e.clone();
    }
}

fn audit_config(a: &mut AuditConfig, args: &ServeArgs, f: &FileAudit) -> Result<(), ConfigError> {
    let ms = Duration::from_millis;
    if let Some(m) = args.audit_mode.or(f.mode) {
        a.mode = m;
    }
    if let Some(d) = args.audit_spool.clone().or(f.spool_dir.clone()) {
        a.spool_dir = d;
    }
    let positive = |name: &str, v: usize| {
        if v == 0 {
            Err(ConfigError::Invalid(format!(
                "audit.{name} must be at least 1"
            )))
        } else {
            Ok(v)
        }
    };
    if let Some(n) = f.queue_capacity {
        a.queue_capacity = positive("queue_capacity", n)?;
    }
    if let Some(n) = f.max_batch {
        a.max_batch = positive("max_batch", n)?;
    }
    if let Some(n) = f.drain_batch {
        a.drain_batch = positive("drain_batch", n)?;
    }
    if let Some(v) = f.drain_delay_ms {
        a.drain_delay = ms(v);
    }
    if let Some(n) = f.idle_drain_bytes {
        a.idle_drain_bytes = n;
    }
    if let Some(n) = f.segment_bytes {
        a.segment_bytes = n;
    }
    if let Some(v) = f.rotate_interval_ms {
        a.rotate_interval = ms(v.max(1));
    }
    if let Some(v) = f.flush_interval_ms {
        a.flush_interval = ms(v.max(1));
    }
    if let Some(n) = f.max_spool_bytes {
        a.max_spool_bytes = n;
    }
    if let Some(days) = f.retention_days {
        let floor = crate::audit::RETENTION_FLOOR_SECS as u64 / 86_400;
        if days < floor {
            return Err(ConfigError::Invalid(format!(
                "audit.retention_days = {days} is shorter than the compliance floor ({floor} days, 7 years)"
            )));
        }
        a.retention = Duration::from_secs(days.saturating_mul(86_400));
    }
    if let Some(keys) = &f.context_keys {
        a.context_keys = keys.clone();
    }
    if let Some(v) = f.shutdown_timeout_ms {
        a.shutdown_timeout = ms(v);
    }
    Ok(())
}

fn jwt_config(args: &ServeArgs, file: &FileJwt) -> Result<JwtConfig, ConfigError> {
    let jwks = match (
        args.jwks_file.clone().or(file.jwks_file.clone()),
        args.jwks_url.clone().or(file.jwks_url.clone()),
    ) {
        (Some(path), None) => JwksSource::File(path),
        (None, Some(url)) => JwksSource::Url(url),
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid(
                "give one of --jwks-file and --jwks-url, not both".into(),
            ))
        }
        (None, None) => {
            return Err(ConfigError::Invalid(
                "token identity (the default) needs the issuer's keys: pass --jwks-file or \
                 --jwks-url with --issuer and --audience (or --identity trusted for a trusted \
                 caller)"
                    .into(),
            ))
        }
    };
    let issuer = args
        .issuer
        .clone()
        .or(file.issuer.clone())
        .ok_or_else(|| ConfigError::Invalid("token identity needs --issuer".into()))?;
    let audiences = if args.audiences.is_empty() {
        file.audiences.clone()
    } else {
        args.audiences.clone()
    };
    if audiences.is_empty() {
        return Err(ConfigError::Invalid(
            "token identity needs at least one --audience (app client id)".into(),
        ));
    }
    let mut c = JwtConfig::new(jwks, issuer, audiences);
    if let Some(t) = args.token_use.or(file.token_use) {
        c.token_use = t;
    }
    let defaults = ClaimNames::default();
    c.claims = ClaimNames {
        tenant: args
            .tenant_claim
            .clone()
            .or(file.tenant_claim.clone())
            .unwrap_or(defaults.tenant),
        roles: file.roles_claim.clone().unwrap_or(defaults.roles),
        clearance: match &file.clearance_claim {
            Some(name) if name.is_empty() => None,
            Some(name) => Some(name.clone()),
            None => defaults.clearance,
        },
    };
    if let Some(s) = file.leeway_secs {
        c.leeway = Duration::from_secs(s.min(300));
    }
    if let Some(n) = file.max_token_bytes {
        c.max_token_bytes = n;
    }
    if let Some(s) = file.min_refresh_interval_secs {
        c.min_refresh_interval = Duration::from_secs(s);
    }
    c.allow_dev_keys = args.allow_dev_keys || file.allow_dev_keys.unwrap_or(false);
    Ok(c)
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
        assert!(matches!(s.identity, IdentityConfig::Trusted));
    }

    #[test]
    fn token_identity_is_the_default_and_needs_its_settings() {
        let store = Some("sqlite:x.db".parse().unwrap());
        let err = Settings::resolve(ServeArgs {
            store: store.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--jwks-file"), "{err}");
        let err = Settings::resolve(ServeArgs {
            store: store.clone(),
            jwks_file: Some("jwks.json".into()),
            issuer: Some("https://issuer".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--audience"), "{err}");
        let s = Settings::resolve(ServeArgs {
            store: store.clone(),
            jwks_file: Some("jwks.json".into()),
            issuer: Some("https://issuer".into()),
            audiences: vec!["client".into()],
            ..Default::default()
        })
        .unwrap();
        let IdentityConfig::Jwt(jwt) = s.identity else {
            panic!("token identity expected")
        };
        assert_eq!(jwt.claims.tenant, "custom:tenant_id");
        assert!(!jwt.allow_dev_keys);
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
