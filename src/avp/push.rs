//! `cedargate policy push`: makes an AVP policy store hold the Git-authored
//! policies and schema. Each policy pushed carries its `@id` in its AVP
//! description (`cedargate:<id>`), which is how later pushes find it again:
//! a changed statement is updated, a policy gone from Git is deleted, and
//! policies without that mark (made in AVP by other means) are left alone.
//! The schema goes first, as AVP validates policies against it.

use std::collections::HashMap;

use aws_sdk_verifiedpermissions::error::ProvideErrorMetadata;
use aws_sdk_verifiedpermissions::types::{
    PolicyDefinition, PolicyDefinitionDetail, PolicyType, SchemaDefinition, StaticPolicyDefinition,
    UpdatePolicyDefinition, UpdateStaticPolicyDefinition,
};
use aws_sdk_verifiedpermissions::Client;
use serde_json::Value;

use crate::policy::SourceFiles;
use crate::policy::{PolicySnapshot, PolicySources};

/// The description prefix that marks a policy as pushed from Git.
pub const MARKER: &str = "cedargate:";

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Load(#[from] crate::policy::LoadError),
    #[error("the schema cannot be converted to JSON: {0}")]
    Schema(String),
    #[error("Verified Permissions: {0}")]
    Call(String),
}

fn call_error<E: ProvideErrorMetadata + std::fmt::Debug>(e: E) -> PushError {
    PushError::Call(crate::aws::error_text(&e))
}

/// What a push changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The schema (Cedar JSON) to put, if it differs.
    pub schema: Option<String>,
    /// `@id` and statement.
    pub create: Vec<(String, String)>,
    /// AVP id, `@id`, statement.
    pub update: Vec<(String, String, String)>,
    /// AVP id, `@id`.
    pub delete: Vec<(String, String)>,
    /// Pushed policies already up to date.
    pub unchanged: usize,
    /// Policies in the store that were not pushed from Git (left alone).
    pub unmanaged: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.schema.is_none()
            && self.create.is_empty()
            && self.update.is_empty()
            && self.delete.is_empty()
    }

    /// One line per change, then a summary.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema.is_some() {
            out.push("put schema".to_string());
        }
        out.extend(self.create.iter().map(|(id, _)| format!("create {id}")));
        out.extend(
            self.update
                .iter()
                .map(|(avp, id, _)| format!("update {id} ({avp})")),
        );
        out.extend(
            self.delete
                .iter()
                .map(|(avp, id)| format!("delete {id} ({avp})")),
        );
        out.push(format!(
            "{} to create, {} to update, {} to delete, {} unchanged, {} not managed by cedargate",
            self.create.len(),
            self.update.len(),
            self.delete.len(),
            self.unchanged,
            self.unmanaged
        ));
        out
    }
}

/// The Git policies (`@id` → statement) and the schema as Cedar JSON.
pub fn git_side(sources: &PolicySources) -> Result<(Vec<(String, String)>, Value), PushError> {
    let snapshot: PolicySnapshot = crate::policy::load(sources)?;
    let mut policies: Vec<(String, String)> = snapshot
        .policies
        .policies()
        .map(|p| (p.id().to_string(), p.to_string()))
        .collect();
    policies.sort();
    let files = SourceFiles::read(sources)?;
    let json = crate::policy::schema_json(&files).map_err(PushError::Schema)?;
    Ok((policies, json))
}

/// Compares Git with the store.
pub async fn plan(
    client: &Client,
    store_id: &str,
    policies: &[(String, String)],
    schema: &Value,
) -> Result<Plan, PushError> {
    let mut plan = Plan::default();
    let current = match client.get_schema().policy_store_id(store_id).send().await {
        Ok(s) => serde_json::from_str::<Value>(s.schema()).ok(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            // No schema yet — or no such store, which the listing says.
            None
        }
        Err(e) => return Err(call_error(e)),
    };
    if current.as_ref() != Some(schema) {
        plan.schema = Some(schema.to_string());
    }

    let mut statics = Vec::new();
    for p in super::source::list_policies(client, store_id)
        .await
        .map_err(call_error)?
    {
        if p.policy_type() == &PolicyType::Static {
            statics.push(p.policy_id().to_string());
        } else {
            plan.unmanaged += 1;
        }
    }
    // @id → (AVP id, statement) of the pushed ones.
    let mut pushed: HashMap<String, (String, String)> = HashMap::new();
    for got in super::source::get_policies(client, store_id, &statics)
        .await
        .map_err(call_error)?
    {
        for item in got.results() {
            let Some(PolicyDefinitionDetail::Static(s)) = item.definition() else {
                plan.unmanaged += 1;
                continue;
            };
            match s.description().and_then(|d| d.strip_prefix(MARKER)) {
                Some(git_id) => {
                    if let Some((dup, _)) = pushed.insert(
                        git_id.to_string(),
                        (item.policy_id().to_string(), s.statement().to_string()),
                    ) {
                        // Two AVP policies claim one @id: keep one.
                        plan.delete.push((dup, git_id.to_string()));
                    }
                }
                None => plan.unmanaged += 1,
            }
        }
    }
    for (id, statement) in policies {
        match pushed.remove(id) {
            None => plan.create.push((id.clone(), statement.clone())),
            Some((avp, old)) if old != *statement => {
                plan.update.push((avp, id.clone(), statement.clone()));
            }
            Some(_) => plan.unchanged += 1,
        }
    }
    let mut gone: Vec<(String, String)> =
        pushed.into_iter().map(|(id, (avp, _))| (avp, id)).collect();
    gone.sort();
    plan.delete.extend(gone);
    Ok(plan)
}

/// Carries the plan out: schema, creations and updates, then deletions.
pub async fn apply(client: &Client, store_id: &str, plan: &Plan) -> Result<(), PushError> {
    if let Some(schema) = &plan.schema {
        client
            .put_schema()
            .policy_store_id(store_id)
            .definition(SchemaDefinition::CedarJson(schema.clone()))
            .send()
            .await
            .map_err(call_error)?;
    }
    let description = |id: &str| format!("{MARKER}{id}");
    for (id, statement) in &plan.create {
        let def = StaticPolicyDefinition::builder()
            .statement(statement)
            .description(description(id))
            .build()
            .map_err(|e| PushError::Call(e.to_string()))?;
        client
            .create_policy()
            .policy_store_id(store_id)
            .client_token(uuid::Uuid::now_v7().to_string())
            .definition(PolicyDefinition::Static(def))
            .send()
            .await
            .map_err(|e| PushError::Call(format!("create {id}: {}", call_error(e))))?;
    }
    for (avp, id, statement) in &plan.update {
        let def = UpdateStaticPolicyDefinition::builder()
            .statement(statement)
            .description(description(id))
            .build()
            .map_err(|e| PushError::Call(e.to_string()))?;
        client
            .update_policy()
            .policy_store_id(store_id)
            .policy_id(avp)
            .definition(UpdatePolicyDefinition::Static(def))
            .send()
            .await
            .map_err(|e| PushError::Call(format!("update {id}: {}", call_error(e))))?;
    }
    for (avp, id) in &plan.delete {
        client
            .delete_policy()
            .policy_store_id(store_id)
            .policy_id(avp)
            .send()
            .await
            .map_err(|e| PushError::Call(format!("delete {id}: {}", call_error(e))))?;
    }
    Ok(())
}
