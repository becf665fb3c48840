//! Policy test suites (`policies/tests/*.yaml`) and `explain`: requests
//! decided by the real engine — the same code the sidecar runs — over
//! tenants and documents the suite states, with the expected decisions.
//!
//! ```yaml
//! name: visibility
//! data: data/fixture.json          # tenants and documents (relative; optional)
//! documents: []                    # more, inline (the import shapes)
//! principals:
//!   rita: {id: rita, tenant: acme, roles: [viewer], clearance: 1}
//! tenant_policies:                 # tenants' own policies (optional)
//!   - tenant: acme
//!     id: contractors-read
//!     static: {statement: "permit (principal in CedarGate::Role::\"contractor\", ...);"}
//!   - tenant: acme
//!     id: no-sharing
//!     templateLinked: {policyTemplateId: role-cannot-share,
//!                      principal: {entityType: CedarGate::Role, entityId: contractor}}
//! tests:
//!   - name: a viewer reads a public document
//!     principal: rita
//!     action: Read
//!     resource: Document::memo
//!     expect: Allow
//!     policies: [visibility.public-read]   # optional: the determining policies, exactly
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::authz::{AuthzRequest, Decision, Effect, Engine};
use crate::cache::{CacheConfig, EntityCache};
use crate::metrics::Metrics;
use crate::model::{DataSet, Document, Tenant};
use crate::policy::{PolicyHandle, PolicySnapshot};
use crate::sidecar::wire::{AuthorizeWire, PrincipalWire, ResourceWire};
use crate::store::{self, StoreUrl};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A data file (the import format, JSON), relative to the suite.
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub documents: Vec<Document>,
    pub principals: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub tenant_policies: Vec<SuitePolicy>,
    pub tests: Vec<Case>,
}

/// A tenant policy in a suite: its tenant, id and definition.
#[derive(Debug, Deserialize)]
pub struct SuitePolicy {
    pub tenant: crate::ids::TenantId,
    pub id: crate::ids::PolicyName,
    #[serde(flatten)]
    pub definition: super::tenant::Definition,
}

impl SuitePolicy {
    fn record(&self) -> super::tenant::TenantPolicy {
        super::tenant::TenantPolicy {
            tenant_id: self.tenant.clone(),
            policy_id: self.id.clone(),
            definition: self.definition.clone(),
            description: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            updated_by: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// A key of `principals`.
    pub principal: String,
    pub action: String,
    /// `Document::<id>` or `Tenant::<id>`.
    pub resource: String,
    #[serde(default)]
    pub context: serde_json::Value,
    pub expect: Expected,
    /// The determining policies, exactly (in any order).
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Expected {
    Allow,
    Deny,
}

/// A case's outcome.
#[derive(Debug)]
pub struct Failure {
    pub suite: String,
    pub case: String,
    pub message: String,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub suites: usize,
    pub passed: usize,
    pub failures: Vec<Failure>,
    /// Policies that determined at least one decision.
    pub determining: BTreeSet<String>,
}

/// An engine over the given policies and data, in memory.
pub struct Harness {
    engine: Engine,
    planner: crate::search::Planner,
    pub snapshot: Arc<PolicySnapshot>,
}

impl Harness {
    pub async fn new(snapshot: PolicySnapshot, data: &DataSet) -> Result<Self, String> {
        let store = store::open(&StoreUrl::Sqlite(PathBuf::from(":memory:")))
            .await
            .map_err(|e| e.to_string())?;
        store.import(data).await.map_err(|e| e.to_string())?;
        let snapshot = Arc::new(snapshot);
        let handle: PolicyHandle = Arc::new(arc_swap::ArcSwap::new(snapshot.clone()));
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(EntityCache::new(
            store,
            CacheConfig::default(),
            metrics.tenant_cache.clone(),
            metrics.document_cache.clone(),
        ));
        Ok(Harness {
            engine: Engine::new(handle, cache, metrics, 0),
            planner: crate::search::Planner::new(Default::default()),
            snapshot,
        })
    }

    /// Decides a request given as the native API's trusted-mode body
    /// parts.
    pub async fn decide(
        &self,
        principal: serde_json::Value,
        action: &str,
        resource: &str,
        context: serde_json::Value,
    ) -> Result<Decision, String> {
        let (kind, id) = resource.split_once("::").ok_or_else(|| {
            format!("resource {resource:?}: write Document::<id> or Tenant::<id>")
        })?;
        let principal: PrincipalWire =
            serde_json::from_value(principal).map_err(|e| format!("principal: {e}"))?;
        let wire = AuthorizeWire {
            principal: Some(principal),
            action: action.to_string(),
            resource: ResourceWire {
                kind: kind.to_string(),
                id: id.trim_matches('"').to_string(),
            },
            context,
        };
        let request: AuthzRequest = wire.into_request(None).map_err(|e| e.message)?;
        self.engine
            .decide(&request)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Harness {
    /// The text of a policy a decision named: a global one, or a tenant's
    /// own as it is evaluated (with its confinement).
    pub async fn policy_text(&self, id: &str) -> Option<String> {
        self.engine.policy_text(&self.snapshot, id).await
    }
}

/// The search plan of a principal given as the native API's trusted-mode
/// body part.
pub async fn plan_of(
    harness: &Harness,
    principal: serde_json::Value,
    action: &str,
    context: &serde_json::Value,
) -> Result<Arc<crate::search::Plan>, String> {
    let p: PrincipalWire =
        serde_json::from_value(principal).map_err(|e| format!("principal: {e}"))?;
    let principal = crate::authz::entities::Principal {
        id: p.id,
        tenant: p.tenant,
        roles: p.roles,
        clearance: p.clearance,
    };
    harness
        .planner
        .plan(&harness.engine, &principal, action, context)
        .await
        .map_err(|e| e.to_string())
}

/// Reads a suite and its data.
pub fn read(path: &Path) -> Result<(Suite, DataSet), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let suite: Suite =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut data = match &suite.data {
        Some(rel) => {
            let file = path.parent().unwrap_or(Path::new(".")).join(rel);
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            serde_json::from_str::<DataSet>(&text)
                .map_err(|e| format!("{}: {e}", file.display()))?
        }
        None => DataSet::default(),
    };
    data.tenants.extend(suite.tenants.iter().cloned());
    data.documents.extend(suite.documents.iter().cloned());
    data.policies
        .extend(suite.tenant_policies.iter().map(SuitePolicy::record));
    Ok((suite, data))
}

/// Runs every `*.yaml` suite in `dir` against `snapshot`.
pub async fn run(
    dir: &Path,
    load: impl Fn() -> Result<PolicySnapshot, String>,
) -> Result<Report, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.yaml test suites in {}", dir.display()));
    }
    let mut report = Report::default();
    for file in files {
        let (suite, data) = read(&file)?;
        let harness = Harness::new(load()?, &data).await?;
        report.suites += 1;
        // A tenant policy that does not compile is a failure of its own
        // (the engine would leave it out, or fail closed).
        for p in &data.policies {
            if let Err(problems) = super::tenant::compile(&harness.snapshot, p) {
                report.failures.push(Failure {
                    suite: suite.name.clone(),
                    case: format!("tenant policy {}", p.cedar_id()),
                    message: problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
        }
        for case in &suite.tests {
            let fail = |message: String| Failure {
                suite: suite.name.clone(),
                case: case.name.clone(),
                message,
            };
            let Some(principal) = suite.principals.get(&case.principal) else {
                report
                    .failures
                    .push(fail(format!("unknown principal {:?}", case.principal)));
                continue;
            };
            let d = match harness
                .decide(
                    principal.clone(),
                    &case.action,
                    &case.resource,
                    case.context.clone(),
                )
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    report.failures.push(fail(format!("not decided: {e}")));
                    continue;
                }
            };
            report
                .determining
                .extend(d.determining_policies.iter().cloned());
            let got = match d.decision {
                Effect::Allow => Expected::Allow,
                Effect::Deny => Expected::Deny,
            };
            let mut problems = Vec::new();
            if got != case.expect {
                problems.push(format!("expected {:?}, got {got:?}", case.expect));
            }
            if let Some(want) = &case.policies {
                let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
                let have: BTreeSet<&str> =
                    d.determining_policies.iter().map(String::as_str).collect();
                if want != have {
                    problems.push(format!("expected determining policies {want:?}"));
                }
            }
            if problems.is_empty() {
                report.passed += 1;
            } else {
                report.failures.push(fail(format!(
                    "{}; determining policies: {:?}{}{}",
                    problems.join("; "),
                    d.determining_policies,
                    d.reason
                        .map(|r| format!("; reason: {}", r.as_str()))
                        .unwrap_or_default(),
                    if d.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; errors: {:?}", d.errors)
                    }
                )));
            }
        }
    }
    Ok(report)
}
