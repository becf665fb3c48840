//! Reads the policy and schema files, validates them strictly, and builds a
//! [`PolicySnapshot`]. Every problem names its file, line and column.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, PolicyId, PolicySet, ResourceConstraint,
    Schema, SchemaFragment, ValidationMode, Validator,
};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use super::types::SchemaTypes;
use super::{ActionInfo, LoadError, PolicySnapshot, PolicySources, ResourceKind};

/// One problem found while loading, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single location.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// The raw text of every policy, template and schema file, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFiles {
    pub policies: Vec<(PathBuf, String)>,
    pub schemas: Vec<(PathBuf, String)>,
    /// `templates/*.cedar` under the policy directory: what tenants link.
    pub templates: Vec<(PathBuf, String)>,
}

impl SourceFiles {
    /// Reads `*.cedar` from the policy directory and `*.cedarschema` from the
    /// schema directory (not recursive: `policies/tests/` holds test suites).
    pub fn read(sources: &PolicySources) -> Result<Self, LoadError> {
        let templates = sources.policy_dir.join("templates");
        Ok(SourceFiles {
            policies: read_dir_ext(&sources.policy_dir, "cedar")?,
            schemas: read_dir_ext(&sources.schema_dir, "cedarschema")?,
            templates: if templates.is_dir() {
                read_dir_ext(&templates, "cedar")?
            } else {
                Vec::new()
            },
        })
    }

    /// A content hash of every file (names included), as a revision id.
    pub fn revision(&self) -> String {
        let mut h = Sha256::new();
        for (kind, files) in [
            ("policy", &self.policies),
            ("schema", &self.schemas),
            ("template", &self.templates),
        ] {
            for (path, text) in files {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                h.update(kind.as_bytes());
                h.update([0]);
                h.update(name.as_bytes());
                h.update([0]);
                h.update((text.len() as u64).to_le_bytes());
                h.update(text.as_bytes());
            }
        }
        format!("sha256:{}", &hex::encode(h.finalize())[..16])
    }
}

fn read_dir_ext(dir: &Path, ext: &str) -> Result<Vec<(PathBuf, String)>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            out.push((path, text));
        }
    }
    out.sort();
    Ok(out)
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Turns a diagnostic into a located problem. The diagnostic's labels are
/// byte offsets into `text`.
pub(super) fn problem(file: &Path, text: &str, d: &dyn Diagnostic, message: String) -> Problem {
    let offset = d
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let (line, column) = offset.map_or((0, 0), |o| line_col(text, o));
    let help = d.help().map(|h| format!(" ({h})")).unwrap_or_default();
    Problem {
        file: file.to_path_buf(),
        line,
        column,
        message: format!("{message}{help}"),
    }
}

/// A problem at the place `source` (a policy's or template's text) is
/// found in `text`, or without a place.
fn found(path: &Path, text: &str, source: Option<String>, message: String) -> Problem {
    let offset = source.and_then(|src| text.find(src.as_str()));
    let (line, column) = offset.map_or((0, 0), |o| line_col(text, o));
    Problem {
        file: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// The schema files as one schema in Cedar's JSON form (what Amazon
/// Verified Permissions takes, and what [`super::lint`] reads).
pub fn schema_json(files: &SourceFiles) -> Result<serde_json::Value, String> {
    let text: String = files
        .schemas
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let (fragment, _) = SchemaFragment::from_cedarschema_str(&text).map_err(|e| e.to_string())?;
    fragment.to_json_value().map_err(|e| e.to_string())
}

fn parse_schema(files: &SourceFiles, dir: &Path) -> Result<Schema, Vec<Problem>> {
    let mut fragments = Vec::new();
    let mut problems = Vec::new();
    for (path, text) in &files.schemas {
        match SchemaFragment::from_cedarschema_str(text) {
            Ok((fragment, _warnings)) => fragments.push(fragment),
            Err(e) => problems.push(problem(path, text, &e, e.to_string())),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Schema::from_schema_fragments(fragments).map_err(|e| {
        vec![Problem {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            message: format!(
                "{e}{}",
                e.help().map(|h| format!(" ({h})")).unwrap_or_default()
            ),
        }]
    })
}

/// Parses every policy file and gives each policy its `@id`.
fn parse_policies(
    files: &SourceFiles,
) -> Result<(PolicySet, HashMap<PolicyId, usize>), Vec<Problem>> {
    let mut set = PolicySet::new();
    let mut origin: HashMap<PolicyId, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (index, (path, text)) in files.policies.iter().enumerate() {
        let parsed = match PolicySet::from_str(text) {
            Ok(p) => p,
            Err(errs) => {
                for e in errs.iter() {
                    problems.push(problem(path, text, e, e.to_string()));
                }
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            problems.push(found(
                path,
                text,
                None,
                "templates (?principal/?resource) belong in templates/, not in policy files".into(),
            ));
        }
        for policy in parsed.policies() {
            let at = |message: String| found(path, text, policy.to_cedar(), message);
            let Some(id) = policy.annotation("id") else {
                problems.push(at("policy has no @id(\"...\") annotation".into()));
                continue;
            };
            if id.starts_with(super::tenant::ID_PREFIX) {
                problems.push(at(format!(
                    "policy ids starting with {:?} are tenant policies'",
                    super::tenant::ID_PREFIX
                )));
                continue;
            }
            let id = PolicyId::new(id);
            if let Some(&other) = origin.get(&id) {
                let other: &PathBuf = &files.policies[other].0;
                problems.push(at(format!(
                    "duplicate policy id {id:?} (also in {})",
                    other.display()
                )));
                continue;
            }
            origin.insert(id.clone(), index);
            if let Err(e) = set.add(policy.new_id(id)) {
                problems.push(at(e.to_string()));
            }
        }
    }
    if problems.is_empty() {
        Ok((set, origin))
    } else {
        Err(problems)
    }
}

/// Whether `p`'s action and resource scope can match `action` (in
/// `groups`) on a resource of type `resource`.
pub(super) fn scope_matches(
    p: &cedar_policy::Policy,
    action: &EntityUid,
    groups: &[EntityUid],
    resource: &EntityTypeName,
) -> bool {
    let action_ok = match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => uid == *action,
        ActionConstraint::In(list) => list.iter().any(|g| g == action || groups.contains(g)),
    };
    let resource_ok = match p.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(uid) => uid.type_name() == resource,
        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => t == *resource,
    };
    action_ok && resource_ok
}

/// The policies whose action and resource scope can match `action` on a
/// resource of type `resource`.
pub(super) fn slice(
    policies: &PolicySet,
    action: &EntityUid,
    groups: &[EntityUid],
    resource: &EntityTypeName,
) -> PolicySet {
    let mut out = PolicySet::new();
    for p in policies.policies() {
        // Ids are unique in `policies`, so adding cannot fail.
        if scope_matches(p, action, groups, resource) && out.add(p.clone()).is_err() {
            tracing::error!(policy = %p.id(), "policy could not be sliced");
        }
    }
    out
}

/// Every action of the schema with the groups it is in.
type Groups = HashMap<EntityUid, Vec<EntityUid>>;

/// Resolves every requestable action (one with an `appliesTo`) of the schema.
fn actions(
    schema: &Schema,
    policies: &PolicySet,
) -> Result<(HashMap<String, ActionInfo>, Groups), Vec<Problem>> {
    let entities: Entities = schema.action_entities().map_err(|e| {
        vec![Problem {
            file: PathBuf::from("schemas"),
            line: 0,
            column: 0,
            message: e.to_string(),
        }]
    })?;
    let mut out = HashMap::new();
    let mut all_groups = HashMap::new();
    for uid in schema.actions() {
        all_groups.insert(
            uid.clone(),
            entities
                .ancestors(uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default(),
        );
        let resources: Vec<&EntityTypeName> = schema
            .resources_for_action(uid)
            .map(|it| it.collect())
            .unwrap_or_default();
        let (resource, type_name) = match resources.as_slice() {
            [one] if one.basename() == "Document" => (ResourceKind::Document, *one),
            [one] if one.basename() == "Tenant" => (ResourceKind::Tenant, *one),
            _ => continue, // an action group, or one this sidecar cannot resolve
        };
        let Some(entity) = entities.get(uid) else {
            continue;
        };
        let groups: Vec<EntityUid> = entities
            .ancestors(uid)
            .map(|a| a.cloned().collect())
            .unwrap_or_default();
        let policies = slice(policies, uid, &groups, type_name);
        out.insert(
            uid.id().unescaped().to_string(),
            ActionInfo {
                uid: uid.clone(),
                entity: entity.clone(),
                resource,
                type_name: type_name.clone(),
                groups,
                index: super::index::PrincipalIndex::build(&policies).map(std::sync::Arc::new),
                policies,
                generation: crate::cache::next_generation(),
            },
        );
    }
    Ok((out, all_groups))
}

/// Parses and strictly validates `templates/*.cedar`: templates only, each
/// with its `@id`, none of them a tenant policy's id or a policy's.
fn templates(
    files: &SourceFiles,
    schema: &Schema,
    policies: &PolicySet,
) -> Result<PolicySet, Vec<Problem>> {
    let mut set = PolicySet::new();
    let mut origin: HashMap<PolicyId, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (index, (path, text)) in files.templates.iter().enumerate() {
        let parsed = match PolicySet::from_str(text) {
            Ok(p) => p,
            Err(errs) => {
                problems.extend(errs.iter().map(|e| problem(path, text, e, e.to_string())));
                continue;
            }
        };
        if parsed.policies().next().is_some() {
            problems.push(found(
                path,
                text,
                None,
                "a template file holds templates only (with ?principal or ?resource)".into(),
            ));
        }
        for t in parsed.templates() {
            let at = |message: String| found(path, text, Some(t.to_string()), message);
            let Some(id) = t.annotation("id") else {
                problems.push(at("template has no @id(\"...\") annotation".into()));
                continue;
            };
            let id = PolicyId::new(id);
            if origin.contains_key(&id) || policies.policy(&id).is_some() {
                problems.push(at(format!("duplicate id {id:?}")));
                continue;
            }
            origin.insert(id.clone(), index);
            if let Err(e) = set.add_template(t.new_id(id)) {
                problems.push(at(e.to_string()));
            }
        }
    }
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    problems.extend(result.validation_errors().map(|e| {
        let (path, text) = origin
            .get(e.policy_id())
            .map(|&i| &files.templates[i])
            .map_or((Path::new("policies/templates"), ""), |(p, t)| {
                (p.as_path(), t.as_str())
            });
        problem(
            path,
            text,
            e,
            format!("template {:?}: {e}", e.policy_id().to_string()),
        )
    }));
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// Reads, parses and strictly validates; the result is ready to swap in.
pub fn load(sources: &PolicySources) -> Result<PolicySnapshot, LoadError> {
    let files = SourceFiles::read(sources)?;
    build(&files, sources)
}

pub(super) fn build(
    files: &SourceFiles,
    sources: &PolicySources,
) -> Result<PolicySnapshot, LoadError> {
    if files.schemas.is_empty() {
        return Err(LoadError::Empty {
            what: "*.cedarschema",
            dir: sources.schema_dir.clone(),
        });
    }
    if files.policies.is_empty() {
        return Err(LoadError::Empty {
            what: "*.cedar",
            dir: sources.policy_dir.clone(),
        });
    }
    let schema = parse_schema(files, &sources.schema_dir).map_err(LoadError::Invalid)?;
    let (policies, origin) = parse_policies(files).map_err(LoadError::Invalid)?;

    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    let problems: Vec<Problem> = result
        .validation_errors()
        .map(|e| {
            let (path, text) = origin
                .get(e.policy_id())
                .map(|&i| &files.policies[i])
                .map_or((Path::new("policies"), ""), |(p, t)| {
                    (p.as_path(), t.as_str())
                });
            problem(
                path,
                text,
                e,
                format!("policy {:?}: {e}", e.policy_id().to_string()),
            )
        })
        .collect();
    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }
    for w in result.validation_warnings() {
        tracing::warn!(warning = %w, "policy validation warning");
    }
    let (actions, action_groups) = actions(&schema, &policies).map_err(LoadError::Invalid)?;
    let templates = templates(files, &schema, &policies).map_err(LoadError::Invalid)?;
    // The schema parsed above, so its JSON form cannot fail to come out.
    let types = schema_json(files)
        .map(|json| SchemaTypes::from_json(&json))
        .unwrap_or_default();
    let validator = Validator::new(schema.clone());
    Ok(PolicySnapshot {
        policies,
        schema,
        types,
        revision: files.revision().into(),
        actions,
        action_groups,
        templates,
        validator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "ab\ncd\nef";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (2, 2));
        assert_eq!(line_col(text, 100), (3, 3));
    }
}
