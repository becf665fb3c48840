//! Policies and schema: loading `policies/*.cedar` and `schemas/*.cedarschema`,
//! strict validation, and the immutable [`PolicySnapshot`] every decision
//! reads. A new snapshot is built completely and then swapped in
//! ([`watch`]); a load that fails keeps the last good one.

pub mod index;
pub mod lint;
mod load;
pub mod suite;
pub mod tenant;
pub mod types;
pub mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{Entity, EntityTypeName, EntityUid, PolicySet, Schema};

pub use load::{load, schema_json, Problem, SourceFiles};

/// Which kind of resource an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Document,
    Tenant,
}

/// A requestable action, resolved against the schema.
#[derive(Debug, Clone)]
pub struct ActionInfo {
    pub uid: EntityUid,
    /// The action entity with all its groups as ancestors.
    pub entity: Entity,
    pub resource: ResourceKind,
    /// The resource's entity type.
    pub type_name: EntityTypeName,
    /// The action groups it is in (transitively).
    pub groups: Vec<EntityUid>,
    /// The policies whose scope can match this action and its resource
    /// type. Evaluating only these gives the same decision, determining
    /// policies and errors as the whole set: a policy whose scope does not
    /// match is never satisfied and never evaluates its conditions.
    pub policies: PolicySet,
    /// The slice indexed by principal, when it names many principals in
    /// its scopes ([`index::PrincipalIndex`]).
    pub index: Option<Arc<index::PrincipalIndex>>,
    /// Unique across every snapshot ever built (see
    /// [`crate::cache::next_generation`]).
    pub generation: u64,
}

/// One complete, validated policy set with its schema.
#[derive(Debug)]
pub struct PolicySnapshot {
    pub policies: PolicySet,
    pub schema: Schema,
    /// The schema's types as the tools on top of the policies read them.
    pub types: types::SchemaTypes,
    /// Content hash of every policy and schema file.
    pub revision: Arc<str>,
    /// Requestable actions by their short name (`Read`, `CreateDocument`, …).
    pub actions: HashMap<String, ActionInfo>,
    /// Every action group of the schema with the groups it is in.
    pub action_groups: HashMap<EntityUid, Vec<EntityUid>>,
    /// The templates tenants link (`policies/templates/*.cedar`).
    pub templates: PolicySet,
    /// A validator over `schema`, for tenant policies.
    pub validator: cedar_policy::Validator,
}

pub use crate::authz::entities::action_uid;

/// The shared, swappable current snapshot.
pub type PolicyHandle = Arc<ArcSwap<PolicySnapshot>>;

/// Where policies and schema are read from.
#[derive(Debug, Clone)]
pub struct PolicySources {
    pub policy_dir: PathBuf,
    pub schema_dir: PathBuf,
}

/// Why a policy set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no {what} files found in {dir}")]
    Empty { what: &'static str, dir: PathBuf },
    #[error("{} problem(s):\n{}", .0.len(), Problems(.0))]
    Invalid(Vec<Problem>),
}

struct Problems<'a>(&'a [Problem]);

impl std::fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}
