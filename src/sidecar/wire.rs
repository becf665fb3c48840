//! The native JSON API's request shapes, and their conversion into engine
//! requests. Ids are parsed here, so a malformed id is a 400 before anything
//! else happens.

use serde::Deserialize;

use crate::authz::entities::{Principal, NAMESPACE};
use crate::authz::{AuthzRequest, ResourceRef};
use crate::ids::{DocumentId, RoleName, TenantId, UserId};
use crate::model::Level;

use super::http::ApiError;

/// The principal's claims, as a trusted caller states them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalWire {
    pub id: UserId,
    pub tenant: TenantId,
    #[serde(default)]
    pub roles: Vec<RoleName>,
    #[serde(default)]
    pub clearance: Level,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceWire {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeWire {
    pub principal: Option<PrincipalWire>,
    pub action: String,
    pub resource: ResourceWire,
    #[serde(default)]
    pub context: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchWire {
    pub requests: Vec<serde_json::Value>,
}

impl ResourceWire {
    fn into_ref(self) -> Result<ResourceRef, ApiError> {
        let kind = self
            .kind
            .strip_prefix(NAMESPACE)
            .and_then(|k| k.strip_prefix("::"))
            .unwrap_or(&self.kind);
        let bad_id = |e: crate::ids::IdError| ApiError::bad_request("invalid_id", e.to_string());
        match kind {
            "Document" => Ok(ResourceRef::Document(
                DocumentId::parse(self.id).map_err(bad_id)?,
            )),
            "Tenant" => Ok(ResourceRef::Tenant(
                TenantId::parse(self.id).map_err(bad_id)?,
            )),
            other => Err(ApiError::bad_request(
                "unknown_resource_type",
                format!("unknown resource type {other:?}: expected Document or Tenant"),
            )),
        }
    }
}

impl AuthorizeWire {
    /// Builds the engine request. `verified` is the token's principal (token
    /// mode); without it the principal comes from the body (trusted mode).
    pub fn into_request(self, verified: Option<Principal>) -> Result<AuthzRequest, ApiError> {
        let principal =
            match (verified, self.principal) {
                (Some(p), None) => p,
                (None, Some(p)) => Principal {
                    id: p.id,
                    tenant: p.tenant,
                    roles: p.roles,
                    clearance: p.clearance,
                },
                (Some(_), Some(_)) => return Err(ApiError::bad_request(
                    "principal_not_allowed",
                    "the principal comes from the bearer token; remove `principal` from the body",
                )),
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "missing_principal",
                        "trusted mode needs a `principal`",
                    ))
                }
            };
        if !(self.context.is_null() || self.context.is_object()) {
            return Err(ApiError::bad_request(
                "invalid_context",
                "`context` must be a JSON object",
            ));
        }
        Ok(AuthzRequest {
            principal,
            action: self.action,
            resource: self.resource.into_ref()?,
            context: self.context,
        })
    }
}
