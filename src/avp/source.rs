//! Keeps a copy of an Amazon Verified Permissions policy store: static and
//! template-linked policies, templates and the schema (`ListPolicies` +
//! `BatchGetPolicy`, `ListPolicyTemplates` + `GetPolicyTemplate`,
//! `GetSchema`). Each refresh lists the store and fetches only what changed
//! since (by `lastUpdatedDate`); policies keep their AVP ids, so
//! `determiningPolicies` name what AVP would name. Any error keeps the last
//! good set; throttling backs off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use aws_sdk_verifiedpermissions::error::ProvideErrorMetadata;
use aws_sdk_verifiedpermissions::error::SdkError;
use aws_sdk_verifiedpermissions::operation::batch_get_policy::{
    BatchGetPolicyError, BatchGetPolicyOutput,
};
use aws_sdk_verifiedpermissions::operation::list_policies::ListPoliciesError;
use aws_sdk_verifiedpermissions::types::PolicyItem;
use aws_sdk_verifiedpermissions::types::{
    BatchGetPolicyInputItem, EntityIdentifier as SdkEntity, PolicyDefinitionDetail,
};
use aws_sdk_verifiedpermissions::Client;
use cedar_policy::{
    EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Schema, SlotId, Template,
};

use super::PolicyStoreSet;

/// Longest wait between two attempts while throttled or failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a refresh did not produce a set.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("throttled by Verified Permissions: {0}")]
    Throttled(String),
    #[error("the policy store {0} does not exist")]
    NotFound(String),
    #[error("Verified Permissions call failed: {0}")]
    Call(String),
    #[error("the policy store's content does not parse: {0}")]
    Invalid(String),
}

fn call_error<E: ProvideErrorMetadata + std::fmt::Debug>(e: E) -> PullError {
    match e.code() {
        Some("ThrottlingException") => PullError::Throttled(crate::aws::error_text(&e)),
        Some("ResourceNotFoundException") => PullError::NotFound(crate::aws::error_text(&e)),
        _ => PullError::Call(crate::aws::error_text(&e)),
    }
}

/// A timestamp as AVP gives it, comparable.
type Stamp = (i64, u32);

fn stamp(t: &aws_sdk_verifiedpermissions::primitives::DateTime) -> Stamp {
    (t.secs(), t.subsec_nanos())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Definition {
    Static(String),
    Linked {
        template: String,
        principal: Option<(String, String)>,
        resource: Option<(String, String)>,
    },
}

fn entity(e: Option<&SdkEntity>) -> Option<(String, String)> {
    e.map(|e| (e.entity_type().to_string(), e.entity_id().to_string()))
}

/// What the last refresh saw, to fetch only what changed.
#[derive(Default)]
pub struct Puller {
    policies: HashMap<String, (Stamp, Definition)>,
    templates: HashMap<String, (Stamp, String)>,
    schema: Option<(Stamp, String)>,
    /// Whether a set was ever built.
    built: bool,
}

impl Puller {
    /// One refresh: `Some(set)` when the store changed (or on the first
    /// success), `None` when nothing did.
    pub async fn refresh(
        &mut self,
        client: &Client,
        store_id: &str,
    ) -> Result<Option<PolicyStoreSet>, PullError> {
        let mut changed = !self.built;

        // Policies: list, then fetch the new and updated ones.
        let listed: HashMap<String, Stamp> = list_policies(client, store_id)
            .await
            .map_err(call_error)?
            .iter()
            .map(|p| (p.policy_id().to_string(), stamp(p.last_updated_date())))
            .collect();
        let before = self.policies.len();
        self.policies.retain(|id, _| listed.contains_key(id));
        changed |= self.policies.len() != before;
        let wanted: Vec<String> = listed
            .iter()
            .filter(|(id, s)| self.policies.get(*id).is_none_or(|(old, _)| old != *s))
            .map(|(id, _)| id.clone())
            .collect();
        for got in get_policies(client, store_id, &wanted)
            .await
            .map_err(call_error)?
        {
            for item in got.results() {
                let def = match item.definition() {
                    Some(PolicyDefinitionDetail::Static(s)) => {
                        Definition::Static(s.statement().to_string())
                    }
                    Some(PolicyDefinitionDetail::TemplateLinked(t)) => Definition::Linked {
                        template: t.policy_template_id().to_string(),
                        principal: entity(t.principal()),
                        resource: entity(t.resource()),
                    },
                    _ => {
                        return Err(PullError::Invalid(format!(
                            "policy {} has an unknown kind",
                            item.policy_id()
                        )))
                    }
                };
                self.policies.insert(
                    item.policy_id().to_string(),
                    (stamp(item.last_updated_date()), def),
                );
                changed = true;
            }
            // A policy deleted between the listing and the fetch is gone
            // from the next listing; anything else is a failed refresh.
            if let Some(e) = got
                .errors()
                .iter()
                .find(|e| e.code().as_str() != "POLICY_NOT_FOUND")
            {
                return Err(PullError::Call(format!(
                    "{}: {}",
                    e.policy_id(),
                    e.message()
                )));
            }
        }

        // Templates.
        let mut listed: HashMap<String, Stamp> = HashMap::new();
        let mut next = None;
        loop {
            let page = client
                .list_policy_templates()
                .policy_store_id(store_id)
                .max_results(50)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(call_error)?;
            for t in page.policy_templates() {
                listed.insert(
                    t.policy_template_id().to_string(),
                    stamp(t.last_updated_date()),
                );
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        let before = self.templates.len();
        self.templates.retain(|id, _| listed.contains_key(id));
        changed |= self.templates.len() != before;
        for (id, s) in listed {
            if self.templates.get(&id).is_some_and(|(old, _)| *old == s) {
                continue;
            }
            let t = client
                .get_policy_template()
                .policy_store_id(store_id)
                .policy_template_id(&id)
                .send()
                .await
                .map_err(call_error)?;
            self.templates.insert(
                id,
                (stamp(t.last_updated_date()), t.statement().to_string()),
            );
            changed = true;
        }

        // The schema (a store may have none).
        let schema = match client.get_schema().policy_store_id(store_id).send().await {
            Ok(s) => Some((stamp(s.last_updated_date()), s.schema().to_string())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                    && self.store_exists(client, store_id).await? =>
            {
                None
            }
            Err(e) => return Err(call_error(e)),
        };
        if schema != self.schema {
            self.schema = schema;
            changed = true;
        }

        if !changed {
            return Ok(None);
        }
        let set = self.build()?;
        self.built = true;
        Ok(Some(set))
    }

    /// `GetSchema` says "not found" both for a store without a schema and
    /// for a store that does not exist; a listing tells them apart.
    async fn store_exists(&mut self, client: &Client, store_id: &str) -> Result<bool, PullError> {
        match client
            .get_policy_store()
            .policy_store_id(store_id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => Err(call_error(e)),
        }
    }

    fn build(&self) -> Result<PolicyStoreSet, PullError> {
        let invalid =
            |what: String, e: &dyn std::fmt::Display| PullError::Invalid(format!("{what}: {e}"));
        let mut set = PolicySet::new();
        for (id, (_, text)) in &self.templates {
            let t = Template::parse(Some(PolicyId::new(id)), text)
                .map_err(|e| invalid(format!("template {id}"), &e))?;
            set.add_template(t)
                .map_err(|e| invalid(format!("template {id}"), &e))?;
        }
        let mut links = Vec::new();
        for (id, (_, def)) in &self.policies {
            match def {
                Definition::Static(text) => {
                    let p = Policy::parse(Some(PolicyId::new(id)), text)
                        .map_err(|e| invalid(format!("policy {id}"), &e))?;
                    set.add(p)
                        .map_err(|e| invalid(format!("policy {id}"), &e))?;
                }
                Definition::Linked {
                    template,
                    principal,
                    resource,
                } => {
                    links.push((id, template, principal, resource));
                }
            }
        }
        for (id, template, principal, resource) in links {
            let mut values = HashMap::new();
            for (slot, e) in [
                (SlotId::principal(), principal),
                (SlotId::resource(), resource),
            ] {
                if let Some((ty, eid)) = e {
                    let ty: EntityTypeName = ty
                        .parse()
                        .map_err(|e| invalid(format!("policy {id}"), &e))?;
                    values.insert(
                        slot,
                        EntityUid::from_type_name_and_id(ty, EntityId::new(eid)),
                    );
                }
            }
            set.link(PolicyId::new(template), PolicyId::new(id), values)
                .map_err(|e| invalid(format!("policy {id}"), &e))?;
        }
        let schema = match &self.schema {
            Some((_, text)) => {
                Some(Schema::from_json_str(text).map_err(|e| invalid("schema".into(), &e))?)
            }
            None => None,
        };
        let newest = self
            .policies
            .values()
            .map(|(s, _)| *s)
            .chain(self.templates.values().map(|(s, _)| *s))
            .chain(self.schema.iter().map(|(s, _)| *s))
            .max()
            .unwrap_or_default();
        Ok(PolicyStoreSet {
            policies: set,
            schema,
            revision: format!(
                "avp:{}.{:09}:{}p{}t",
                newest.0,
                newest.1,
                self.policies.len(),
                self.templates.len()
            ),
        })
    }
}

/// Every policy of a store: `ListPolicies`, all pages.
pub(super) async fn list_policies(
    client: &Client,
    store_id: &str,
) -> Result<Vec<PolicyItem>, SdkError<ListPoliciesError>> {
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let page = client
            .list_policies()
            .policy_store_id(store_id)
            .max_results(50)
            .set_next_token(next.take())
            .send()
            .await?;
        out.extend(page.policies().iter().cloned());
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// The full definitions of `ids`: `BatchGetPolicy`, 100 at a time (AVP's
/// limit); one output per call, with its results and its errors.
pub(super) async fn get_policies(
    client: &Client,
    store_id: &str,
    ids: &[String],
) -> Result<Vec<BatchGetPolicyOutput>, SdkError<BatchGetPolicyError>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(100) {
        let items = chunk
            .iter()
            .filter_map(|id| {
                BatchGetPolicyInputItem::builder()
                    .policy_store_id(store_id)
                    .policy_id(id)
                    .build()
                    .ok()
            })
            .collect();
        out.push(
            client
                .batch_get_policy()
                .set_requests(Some(items))
                .send()
                .await?,
        );
    }
    Ok(out)
}

/// A client for the store's region and endpoint.
pub async fn client(region: Option<&str>, endpoint: Option<&str>) -> Client {
    Client::new(&crate::aws::sdk_config(region, endpoint).await)
}

/// Refreshes `slot` from the store every `interval` until `stop`; keeps the
/// last good set on any error and backs off while throttled or failing.
pub async fn follow(
    client: Client,
    store_id: String,
    slot: Arc<ArcSwapOption<PolicyStoreSet>>,
    interval: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut puller = Puller::default();
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match puller.refresh(&client, &store_id).await {
            Ok(Some(set)) => {
                metrics.avp_pull("changed");
                tracing::info!(store = %store_id, revision = %set.revision, "policy store loaded from Verified Permissions");
                slot.store(Some(Arc::new(set)));
                wait = interval;
            }
            Ok(None) => {
                metrics.avp_pull("unchanged");
                wait = interval;
            }
            Err(e) => {
                metrics.avp_pull(if matches!(e, PullError::Throttled(_)) {
                    "throttled"
                } else {
                    "failed"
                });
                wait = (wait.max(interval / 2) * 2)
                    .min(MAX_BACKOFF)
                    .max(interval.min(MAX_BACKOFF));
                if matches!(e, PullError::Throttled(_)) {
                    tracing::info!(store = %store_id, error = %e, retry_in_secs = wait.as_secs(), "backing off");
                } else {
                    tracing::warn!(store = %store_id, error = %e, retry_in_secs = wait.as_secs(), "keeping the last good policy set");
                }
            }
        }
    }
}
