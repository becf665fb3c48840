//! Authentication events: `Authenticate` records of refused tokens and of
//! sign-ins (the first verified use of a token), on every surface that
//! takes a bearer token.
//!
//! - **Refused tokens** are counted per (partition, source IP, reason) and
//!   written once per interval as one record with a `count`, so a flood of
//!   bad tokens costs at most one record per key per interval, never a
//!   write per request. At most [`MAX_KEYS`] keys are kept; past that, a
//!   refusal is counted under the source `*` of its partition and reason.
//!   Requests never wait for these records.
//! - **Partition**: a refusal is filed under the token's tenant only when
//!   its signature verified (an expired token, a wrong audience or issuer);
//!   otherwise under [`PLATFORM_PARTITION`], so nobody can write into a
//!   tenant's log by inventing claims. Claims of an unverified token are
//!   kept as `claimedSub` / `claimedTenant` with `verified: false`.
//! - **Sign-ins**: the first verified use of a token (the verifier's cache
//!   of verified tokens did not know it) leaves one record in the token's
//!   tenant: user, token id (`jti`, else a hash of the token), issued-at,
//!   expiry, client id. A token the cache forgot (10,000 most recent) and
//!   meets again signs in again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::writer::AuditLog;
use super::{AuditEvent, RequestMeta};
use crate::identity::{SignIn, TokenError};

/// The partition of records about no verified tenant.
pub use super::PLATFORM_TENANT as PLATFORM_PARTITION;
/// Distinct (partition, source, reason) keys counted between two flushes.
pub const MAX_KEYS: usize = 10_000;
/// The resource of authentication records.
const RESOURCE: &str = "CedarGate::Token";

/// The reason code of a refusal, as recorded.
pub fn reason_code(e: &TokenError) -> &'static str {
    match e {
        TokenError::Missing => "missing",
        TokenError::Oversized(_) => "oversized",
        TokenError::Malformed => "malformed",
        TokenError::Algorithm(_) => "algorithm",
        TokenError::NoKeyId => "no_key_id",
        TokenError::UnknownKey => "unknown_key",
        TokenError::Signature => "bad_signature",
        TokenError::Expired => "expired",
        TokenError::NotYetValid => "not_yet_valid",
        TokenError::Issuer => "issuer",
        TokenError::Audience => "audience",
        TokenError::TokenUse => "token_use",
        TokenError::Claim(_) => "claim",
        TokenError::KeysUnavailable => "keys_unavailable",
    }
}

/// Whether a refusal comes after the signature was checked and found good
/// (the checks made on verified claims).
fn signature_verified(e: &TokenError) -> bool {
    matches!(
        e,
        TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::Issuer
            | TokenError::Audience
            | TokenError::TokenUse
            | TokenError::Claim(_)
    )
}

/// `sub` and the tenant claim of a token, read without verifying it.
fn claimed(token: &str, tenant_claim: &str) -> (Option<String>, Option<String>) {
    use base64::Engine;
    let claims: Option<Value> = token.split('.').nth(1).and_then(|p| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    });
    let text = |name: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(128).collect::<String>())
    };
    (text("sub"), text(tenant_claim))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    partition: String,
    source: String,
    reason: &'static str,
}

#[derive(Debug, Clone)]
struct Count {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    surface: &'static str,
    user_agent: Option<String>,
    claimed_sub: Option<String>,
    claimed_tenant: Option<String>,
    verified: bool,
    message: String,
}

/// Counts refusals and writes authentication records (module docs).
pub struct AuthEvents {
    log: AuditLog,
    tenant_claim: String,
    pending: Mutex<HashMap<Key, Count>>,
    /// Records that could not be written (the spool full or closed).
    pub dropped: AtomicU64,
}

impl AuthEvents {
    pub fn new(log: AuditLog, tenant_claim: impl Into<String>) -> Arc<Self> {
        Arc::new(AuthEvents {
            log,
            tenant_claim: tenant_claim.into(),
            pending: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        })
    }

    /// Counts a refused token (`token`: the bearer token, when one came).
    pub fn refused(
        &self,
        e: &TokenError,
        token: Option<&str>,
        meta: &RequestMeta,
        surface: &'static str,
        now: DateTime<Utc>,
    ) {
        let (sub, tenant) = token
            .map(|t| claimed(t, &self.tenant_claim))
            .unwrap_or_default();
        let verified = signature_verified(e);
        let partition = match &tenant {
            Some(t) if verified && crate::ids::TenantId::parse(t.as_str()).is_ok() => t.clone(),
            _ => PLATFORM_PARTITION.to_string(),
        };
        let reason = reason_code(e);
        let mut key = Key {
            partition,
            source: meta.ip_address.clone().unwrap_or_default(),
            reason,
        };
        let mut pending = self.pending.lock();
        if !pending.contains_key(&key) && pending.len() >= MAX_KEYS {
            key.source = "*".into();
        }
        pending
            .entry(key)
            .and_modify(|c| {
                c.count += 1;
                c.last = now;
            })
            .or_insert_with(|| Count {
                count: 1,
                first: now,
                last: now,
                surface,
                user_agent: meta.user_agent.clone(),
                claimed_sub: sub,
                claimed_tenant: tenant,
                verified,
                message: e.to_string(),
            });
    }

    /// Writes a sign-in record (without waiting for it).
    pub fn signed_in(
        &self,
        principal: &crate::authz::entities::Principal,
        sign_in: &SignIn,
        meta: &RequestMeta,
        surface: &'static str,
        now: DateTime<Utc>,
    ) {
        let roles = principal.roles.iter().map(|r| r.as_str().to_string());
        self.sign_in_record(
            principal.tenant.as_str(),
            principal.id.as_str(),
            roles.collect(),
            sign_in,
            meta,
            surface,
            now,
        );
    }

    /// [`AuthEvents::signed_in`] for a token mapped as Amazon Verified
    /// Permissions maps a Cognito identity (no native principal): filed
    /// under the token's tenant claim (its signature verified), else the
    /// platform partition; `user`: the mapped principal's id.
    pub fn signed_in_claims(
        &self,
        claims: &Value,
        user: &str,
        sign_in: &SignIn,
        meta: &RequestMeta,
        surface: &'static str,
        now: DateTime<Utc>,
    ) {
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .filter(|t| crate::ids::TenantId::parse(*t).is_ok())
            .unwrap_or(PLATFORM_PARTITION);
        let groups = claims
            .get(crate::avp::GROUPS_CLAIM)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        self.sign_in_record(tenant, user, groups, sign_in, meta, surface, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn sign_in_record(
        &self,
        tenant: &str,
        user: &str,
        roles: Vec<String>,
        sign_in: &SignIn,
        meta: &RequestMeta,
        surface: &'static str,
        now: DateTime<Utc>,
    ) {
        if !self.log.is_on() {
            return;
        }
        let mut e = AuditEvent::new(
            uuid::Uuid::now_v7().to_string(),
            now,
            tenant,
            "Authenticate",
            RESOURCE,
            json!({
                "kind": "authentication",
                "event": "sign-in",
                "surface": surface,
                "tokenId": sign_in.token_id,
                "issuedAt": sign_in.issued_at,
                "expiresAt": sign_in.expires_at,
                "clientId": sign_in.client_id,
                "roles": roles,
            }),
        );
        e.user_id = Some(user.to_string());
        e.ip_address = meta.ip_address.clone();
        e.user_agent = meta.user_agent.clone();
        let log = self.log.clone();
        tokio::spawn(async move {
            if let Err(err) = log.record(e).await {
                tracing::warn!(error = %err, "sign-in record not written");
            }
        });
    }

    /// Writes one record per key counted since the last flush, and waits
    /// until they are written.
    pub async fn flush(&self) {
        let pending = std::mem::take(&mut *self.pending.lock());
        for (key, c) in pending {
            let mut e = AuditEvent::new(
                uuid::Uuid::now_v7().to_string(),
                c.last,
                key.partition,
                "Authenticate",
                RESOURCE,
                json!({
                    "kind": "authentication",
                    "event": "refused",
                    "reason": key.reason,
                    "count": c.count,
                    "firstAt": c.first,
                    "lastAt": c.last,
                    "surface": c.surface,
                    "claimedSub": c.claimed_sub,
                    "claimedTenant": c.claimed_tenant,
                    "verified": c.verified,
                }),
            );
            e.success = false;
            e.error_message = Some(c.message);
            e.ip_address = (!key.source.is_empty()).then_some(key.source);
            e.user_agent = c.user_agent;
            if c.verified {
                e.user_id = c.claimed_sub;
            }
            if let Err(err) = self.log.record(e).await {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "authentication record not written");
            }
        }
    }

    /// Flushes every `interval` until `stop`, then once more.
    pub async fn flush_loop(
        self: Arc<Self>,
        interval: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                () = &mut stop => break,
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ip: &str) -> RequestMeta {
        RequestMeta {
            ip_address: Some(ip.into()),
            user_agent: Some("ua".into()),
            request_id: None,
        }
    }

    #[test]
    fn claims_are_read_without_trusting_them() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(r#"{"sub":"mallory","custom:tenant_id":"t1"}"#);
        let token = format!("e30.{body}.sig");
        assert_eq!(
            claimed(&token, "custom:tenant_id"),
            (Some("mallory".into()), Some("t1".into()))
        );
        assert_eq!(claimed("garbage", "custom:tenant_id"), (None, None));
    }

    #[test]
    fn refusals_are_counted_per_key_and_bounded() {
        let events = AuthEvents::new(AuditLog::off(), "custom:tenant_id");
        let now = Utc::now();
        for i in 0..(MAX_KEYS + 500) {
            events.refused(
                &TokenError::Signature,
                None,
                &meta(&format!("10.0.{}.{}", i / 256, i % 256)),
                "sidecar",
                now,
            );
        }
        for _ in 0..7 {
            events.refused(
                &TokenError::Signature,
                None,
                &meta("10.0.0.0"),
                "sidecar",
                now,
            );
        }
        let pending = events.pending.lock();
        assert_eq!(pending.len(), MAX_KEYS + 1);
        let overflow = pending
            .iter()
            .find(|(k, _)| k.source == "*")
            .map(|(_, c)| c.count);
        assert_eq!(overflow, Some(500));
        let first = pending
            .iter()
            .find(|(k, _)| k.source == "10.0.0.0")
            .map(|(_, c)| c.count);
        assert_eq!(first, Some(8));
        assert!(pending.keys().all(|k| k.partition == PLATFORM_PARTITION));
    }
}
