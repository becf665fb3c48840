//! From verified claims to the principal: `sub`, the tenant claim, groups as
//! roles, an optional clearance claim; and the audience rules of Cognito ID
//! and access tokens.

use serde_json::Value;

use super::{JwtConfig, TokenError, TokenUse};
use crate::authz::entities::Principal;
use crate::ids::{RoleName, TenantId, UserId};
use crate::model::Level;

/// Names of the claims the principal is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The tenant (default `custom:tenant_id`).
    pub tenant: String,
    /// Roles, an array of strings (default `cognito:groups`).
    pub roles: String,
    /// Clearance 0–3, a number or a numeric string (Cognito custom
    /// attributes are strings); absent means 0. Off when `None`.
    pub clearance: Option<String>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            tenant: "custom:tenant_id".into(),
            roles: "cognito:groups".into(),
            clearance: Some("custom:clearance".into()),
        }
    }
}

fn claim_err(name: &str, what: &str) -> TokenError {
    TokenError::Claim(format!("{name} {what}"))
}

/// `token_use` and audience, per the configured token type.
pub(super) fn check_audience(cfg: &JwtConfig, claims: &Value) -> Result<(), TokenError> {
    let token_use = claims.get("token_use").and_then(Value::as_str);
    let audience_claim = match (cfg.token_use, token_use) {
        (TokenUse::Id, Some("id")) | (TokenUse::Any, Some("id")) => "aud",
        (TokenUse::Access, Some("access")) | (TokenUse::Any, Some("access")) => "client_id",
        (TokenUse::Oidc, _) => "aud",
        _ => return Err(TokenError::TokenUse),
    };
    let accepted = |s: &str| cfg.audiences.iter().any(|a| a == s);
    let ok = match claims.get(audience_claim) {
        Some(Value::String(s)) => accepted(s),
        Some(Value::Array(items)) if audience_claim == "aud" => {
            items.iter().filter_map(Value::as_str).any(accepted)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::Audience)
    }
}

/// The principal named by verified claims.
pub(super) fn principal(names: &ClaimNames, claims: &Value) -> Result<Principal, TokenError> {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) => {
            UserId::parse(s.as_str()).map_err(|_| claim_err("sub", "is not a valid user id"))?
        }
        _ => return Err(claim_err("sub", "is missing or not a string")),
    };
    let tenant = match claims.get(&names.tenant) {
        Some(Value::String(s)) => TenantId::parse(s.as_str())
            .map_err(|_| claim_err(&names.tenant, "is not a valid tenant id"))?,
        Some(_) => return Err(claim_err(&names.tenant, "is not a string")),
        None => return Err(claim_err(&names.tenant, "is missing")),
    };
    let roles = match claims.get(&names.roles) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| RoleName::parse(s).ok())
                    .ok_or_else(|| claim_err(&names.roles, "holds a value that is not a role name"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(claim_err(&names.roles, "is not an array")),
    };
    let clearance = match names
        .clearance
        .as_ref()
        .and_then(|n| claims.get(n).map(|v| (n, v)))
    {
        None => Level::default(),
        Some((name, v)) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            n.and_then(|n| u8::try_from(n).ok())
                .and_then(|n| Level::new(n).ok())
                .ok_or_else(|| claim_err(name, "is not a clearance level 0-3"))?
        }
    };
    Ok(Principal {
        id: sub,
        tenant,
        roles,
        clearance,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::{JwksSource, JwtConfig};

    fn cfg(token_use: TokenUse) -> JwtConfig {
        let mut c = JwtConfig::new(JwksSource::File("x".into()), "iss", vec!["client-a".into()]);
        c.token_use = token_use;
        c
    }

    #[test]
    fn audience_rules_per_token_type() {
        let id = json!({"token_use": "id", "aud": "client-a"});
        let access = json!({"token_use": "access", "client_id": "client-a"});
        assert!(check_audience(&cfg(TokenUse::Any), &id).is_ok());
        assert!(check_audience(&cfg(TokenUse::Any), &access).is_ok());
        assert_eq!(
            check_audience(&cfg(TokenUse::Access), &id),
            Err(TokenError::TokenUse)
        );
        assert_eq!(
            check_audience(&cfg(TokenUse::Id), &access),
            Err(TokenError::TokenUse)
        );
        // An access token's `aud` does not count; its `client_id` does.
        let access_aud = json!({"token_use": "access", "aud": "client-a", "client_id": "other"});
        assert_eq!(
            check_audience(&cfg(TokenUse::Access), &access_aud),
            Err(TokenError::Audience)
        );
        assert!(check_audience(&cfg(TokenUse::Oidc), &json!({"aud": ["x", "client-a"]})).is_ok());
        assert_eq!(
            check_audience(&cfg(TokenUse::Oidc), &json!({"aud": "x"})),
            Err(TokenError::Audience)
        );
        assert_eq!(
            check_audience(&cfg(TokenUse::Any), &json!({"aud": "client-a"})),
            Err(TokenError::TokenUse)
        );
    }

    #[test]
    fn claims_to_principal() {
        let names = ClaimNames::default();
        let p = principal(
            &names,
            &json!({"sub": "u-1", "custom:tenant_id": "acme", "cognito:groups": ["admin", "editor"], "custom:clearance": "2"}),
        )
        .unwrap();
        assert_eq!(p.tenant.as_str(), "acme");
        assert_eq!(p.roles.len(), 2);
        assert_eq!(p.clearance.get(), 2);
        let p = principal(&names, &json!({"sub": "u-1", "custom:tenant_id": "acme"})).unwrap();
        assert!(p.roles.is_empty());
        assert_eq!(p.clearance.get(), 0);

        for bad in [
            json!({"sub": "u-1"}),
            json!({"sub": "u-1", "custom:tenant_id": 7}),
            json!({"sub": "u-1", "custom:tenant_id": "a b"}),
            json!({"sub": "u-1", "custom:tenant_id": "acme", "cognito:groups": "admin"}),
            json!({"sub": "u-1", "custom:tenant_id": "acme", "cognito:groups": [1]}),
            json!({"sub": "u-1", "custom:tenant_id": "acme", "custom:clearance": "9"}),
            json!({"custom:tenant_id": "acme"}),
        ] {
            assert!(principal(&names, &bad).is_err(), "{bad}");
        }
    }
}
