//! cedargate: a Cedar authorization sidecar for multi-tenant SaaS.
//!
//! Every request of the application asks the sidecar "may this principal do
//! this action to this resource?". The answer comes from the Cedar policies
//! in `policies/` (typed by `schemas/`), evaluated over tenant metadata and
//! document ACLs that a cache pulls from the store.
//!
//! # Layout
//!
//! - [`ids`]: identifier newtypes (`TenantId`, `DocumentId`, …), parsed once.
//! - [`identity`]: JWT verification (JWKS, Cognito claims) and dev keys.
//! - [`migrations`]: versioned, recorded, reversible store migrations.
//! - [`model`]: store records (the seed's `Tenant`, documents with ACLs).
//! - [`policy`]: loading, strict validation and hot reload of policies.
//! - [`store`]: the store trait, its SQLite and DynamoDB backends.
//! - [`usage`]: counting allowed searches into the tenant's monthly usage.
//! - [`cache`]: the bounded LRU entity cache with TTL and negative entries.
//! - [`changes`]: following the store's change log to invalidate the cache.
//! - [`audit`]: decision and management records, hash-chained per writer and
//!   tenant; the writer (bounded queue, durable spool with group commit,
//!   drain to the store, adoption of dead writers' spools); OCSF export.
//! - [`authz`]: the decision engine and entity construction.
//! - [`metrics`]: Prometheus metrics.
//! - [`sidecar`]: the hyper 1 server of the native JSON API.
//! - [`admin`]: the management REST API served by `cedargate-admin serve`.
//! - [`console`]: the admin console's web pages (`/console/`), a client of
//!   the management API: OIDC sign-in, sessions, CSRF.
//! - [`app`]: assembly of a server (sidecar or admin) from its settings.
//! - [`config`]: command-line and file configuration of the sidecar.
//! - [`demo`]: demo data for `cedargate demo`.
//! - [`export`]: the NDJSON export format with its manifest.
//! - [`import`]: import files read as a stream, in parts.
//! - [`generate`]: synthetic tenants, documents and request mixes at scale.
//! - [`retention`]: recovery windows, archive and purge of cancelled
//!   tenants, audit expiry.
//! - [`clock`]: the clock lifecycle code reads (settable in tests).
//! - [`avp`]: the Amazon Verified Permissions data plane's shapes, hosted
//!   policy stores (Git-authored or pulled from AVP), `policy push`.
//! - [`aws`]: one configuration of the AWS SDK clients.
//! - [`keys`]: per-tenant envelope encryption of archives (local keys, AWS
//!   KMS).
//! - [`search`]: search plans: the policies as Kendra, OpenSearch and SQL
//!   filters.

pub mod admin;
pub mod app;
pub mod audit;
pub mod authz;
pub mod avp;
pub mod aws;
pub mod billing;
pub mod cache;
pub mod changes;
pub mod clock;
pub mod config;
pub mod console;
pub mod demo;
pub mod export;
pub mod generate;
pub mod identity;
pub mod ids;
pub mod import;
pub mod keys;
pub mod metrics;
pub mod migrations;
pub mod model;
pub mod policy;
pub mod retention;
pub mod search;
pub mod sidecar;
pub mod store;
pub mod usage;
