//! The records the store keeps: the seed's `Tenant` shape (field names kept,
//! camelCase on the wire) and a document with its access-control list. Enums
//! and ranges are checked when a record is deserialized, so a record in hand
//! is a valid record.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, RoleName, TenantId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    Trial,
    Cancelled,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Trial => "trial",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Basic,
    Pro,
    Enterprise,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    pub tier: Tier,
    pub start_date: NaiveDate,
    #[serde(default)]
    pub features: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    pub max_documents: u32,
    pub max_users: u32,
    #[serde(rename = "maxStorageGB")]
    pub max_storage_gb: u32,
    pub max_queries_per_month: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Usage {
    pub documents: u32,
    pub users: u32,
    #[serde(rename = "storageGB")]
    pub storage_gb: u32,
    pub queries_this_month: u32,
    /// The month (`YYYY-MM`, UTC) `queriesThisMonth` counts; none for a
    /// record that predates counting (taken as the current month).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// The bytes behind `storageGB` (its exact value); none for a record
    /// that predates tracking (then `storageGB` is the starting point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

/// Bytes in a GB (`storageGB` is decimal, rounded up).
pub const GB: u64 = 1_000_000_000;

impl Usage {
    /// The stored bytes: exact when tracked, else `storageGB` in bytes.
    pub fn stored_bytes(&self) -> u64 {
        self.storage_bytes
            .unwrap_or(u64::from(self.storage_gb) * GB)
    }

    /// Adds (or removes) stored bytes; `storageGB` follows, rounded up.
    pub fn add_storage(&mut self, delta: i64) {
        let bytes = self.stored_bytes().saturating_add_signed(delta);
        self.storage_bytes = Some(bytes);
        self.storage_gb = u32::try_from(bytes.div_ceil(GB)).unwrap_or(u32::MAX);
    }

    /// Queries counted in `month`: none once the month has turned.
    pub fn queries_in(&self, month: &str) -> u32 {
        match &self.month {
            Some(m) if m != month => 0,
            _ => self.queries_this_month,
        }
    }
}

/// The current month, `YYYY-MM` in UTC.
pub fn current_month() -> String {
    Utc::now().format("%Y-%m").to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// How long a cancelled tenant's data is kept before it is archived and
    /// purged (audit records keep their own 7-year expiry).
    pub data_retention_days: u32,
    #[serde(default)]
    pub allowed_file_types: BTreeSet<String>,
    /// How long a soft-deleted document stays restorable before it is
    /// deleted for good; none: the service's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window_days: Option<u32>,
}

/// The seed's `Tenant` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub tenant_id: TenantId,
    pub created_at: DateTime<Utc>,
    pub name: String,
    pub status: TenantStatus,
    pub subscription: Subscription,
    pub limits: Limits,
    #[serde(default)]
    pub usage: Usage,
    pub settings: Settings,
    /// When the tenant was cancelled: its retention period counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When its data was archived and purged; the record stays, so the id
    /// is never reused and its audit records keep one owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<DateTime<Utc>>,
    /// Where the tenant is billed (docs/billing.md); changed by platform
    /// administrators only (`UpdateTenantBilling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
}

/// A tenant's billing account: the integration point for a billing
/// provider. Ids are the provider's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Billing {
    pub provider: BillingProvider,
    /// The provider's customer (Stripe: `cus_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The provider's subscription (Stripe: `sub_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The price or plan billed (Stripe: `price_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_id: Option<String>,
    /// When the paid period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_status: Option<PaymentStatus>,
    /// When the newest provider event applied to the tenant was created
    /// (older events arriving later change nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// The ids of the last provider events applied (a replay changes
    /// nothing), at most [`crate::billing::stripe::RECENT_EVENTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_event_ids: Vec<String>,
    /// The billing integration suspended the tenant (unpaid, or no
    /// subscription left) and reopens it when paid; a suspension by an
    /// administrator is never lifted by a payment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended_for_payment: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingProvider {
    Stripe,
    /// Invoiced outside any provider (contracts).
    Manual,
}

/// The subscription's payment state, in Stripe's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Paused,
}

impl Billing {
    /// An account with `provider` and its customer, nothing else known yet.
    pub fn new(provider: BillingProvider, customer_id: Option<String>) -> Self {
        Billing {
            provider,
            customer_id,
            subscription_id: None,
            price_id: None,
            current_period_end: None,
            payment_status: None,
            last_event_at: None,
            recent_event_ids: Vec::new(),
            suspended_for_payment: false,
        }
    }

    /// What serde cannot check: the provider's id formats.
    pub fn check(&self) -> Result<(), String> {
        let ids = [
            ("customerId", &self.customer_id, "cus_"),
            ("subscriptionId", &self.subscription_id, "sub_"),
            ("priceId", &self.price_id, "price_"),
        ];
        for (name, value, prefix) in ids {
            let Some(v) = value else { continue };
            let charset = !v.is_empty()
                && v.len() <= 255
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !charset {
                return Err(format!(
                    "`billing.{name}` must be 1 to 255 letters, digits, `_` or `-`"
                ));
            }
            if self.provider == BillingProvider::Stripe
                && !v.starts_with(prefix)
                && !(name == "priceId" && v.starts_with("plan_"))
            {
                return Err(format!("`billing.{name}` of Stripe starts with `{prefix}`"));
            }
        }
        if self.recent_event_ids.len() > crate::billing::stripe::RECENT_EVENTS {
            return Err(format!(
                "`billing.recentEventIds` holds at most {} ids",
                crate::billing::stripe::RECENT_EVENTS
            ));
        }
        if let Some(bad) = self.recent_event_ids.iter().find(|id| {
            id.is_empty()
                || id.len() > 255
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            return Err(format!(
                "`billing.recentEventIds`: `{bad}` is not an event id"
            ));
        }
        if self.provider == BillingProvider::Stripe && self.customer_id.is_none() {
            return Err("`billing.customerId` is required with Stripe".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Shared,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Shared => "shared",
            Self::Public => "public",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Edit,
}

/// Who a document is shared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    User(UserId),
    Role(RoleName),
}

/// One entry of `sharedWith`: exactly one of `userId` or `role`, and a
/// permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ShareWire", into = "ShareWire")]
pub struct Share {
    pub grantee: Grantee,
    pub permission: Permission,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ShareWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<RoleName>,
    permission: Permission,
}

impl TryFrom<ShareWire> for Share {
    type Error = &'static str;
    fn try_from(w: ShareWire) -> Result<Self, Self::Error> {
        let grantee = match (w.user_id, w.role) {
            (Some(u), None) => Grantee::User(u),
            (None, Some(r)) => Grantee::Role(r),
            _ => return Err("a share names exactly one of `userId` or `role`"),
        };
        Ok(Share {
            grantee,
            permission: w.permission,
        })
    }
}

impl From<Share> for ShareWire {
    fn from(s: Share) -> Self {
        let (user_id, role) = match s.grantee {
            Grantee::User(u) => (Some(u), None),
            Grantee::Role(r) => (None, Some(r)),
        };
        ShareWire {
            user_id,
            role,
            permission: s.permission,
        }
    }
}

/// Classification (of a document) or clearance (of a user): 0 public,
/// 1 internal, 2 confidential, 3 restricted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Level(u8);

impl Level {
    pub const MAX: u8 = 3;

    pub fn new(level: u8) -> Result<Self, String> {
        if level <= Self::MAX {
            Ok(Level(level))
        } else {
            Err(format!("level {level} is out of range 0..={}", Self::MAX))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Level {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Level::new(v)
    }
}

impl From<Level> for u8 {
    fn from(l: Level) -> u8 {
        l.0
    }
}

/// A document's access-control record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub tenant_id: TenantId,
    pub document_id: DocumentId,
    pub owner_id: UserId,
    pub visibility: Visibility,
    #[serde(default)]
    pub classification: Level,
    pub file_type: String,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub shared_with: Vec<Share>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The import (and, later, export) file: tenants and their documents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub documents: Vec<Document>,
    /// Tenants' own policies ([`crate::policy::tenant`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<crate::policy::tenant::TenantPolicy>,
}

impl DataSet {
    /// Checks what serde cannot: every document belongs to a tenant that is
    /// in the file or already known, and no key appears twice.
    pub fn check(&self, mut known_tenant: impl FnMut(&TenantId) -> bool) -> Result<(), String> {
        let mut tenants = BTreeSet::new();
        for t in &self.tenants {
            if t.tenant_id.as_str().starts_with('_') {
                return Err(format!(
                    "tenant id {}: ids starting with `_` are reserved",
                    t.tenant_id
                ));
            }
            if let Some(b) = &t.billing {
                b.check()
                    .map_err(|e| format!("tenant {}: {e}", t.tenant_id))?;
            }
            if !tenants.insert(&t.tenant_id) {
                return Err(format!("tenant {} appears twice", t.tenant_id));
            }
        }
        let mut docs = BTreeSet::new();
        for d in &self.documents {
            if !tenants.contains(&d.tenant_id) && !known_tenant(&d.tenant_id) {
                return Err(format!(
                    "document {} belongs to unknown tenant {}",
                    d.document_id, d.tenant_id
                ));
            }
            if !docs.insert((&d.tenant_id, &d.document_id)) {
                return Err(format!(
                    "document {} of tenant {} appears twice",
                    d.document_id, d.tenant_id
                ));
            }
        }
        let mut policies = BTreeSet::new();
        for p in &self.policies {
            if !tenants.contains(&p.tenant_id) && !known_tenant(&p.tenant_id) {
                return Err(format!(
                    "policy {} belongs to unknown tenant {}",
                    p.policy_id, p.tenant_id
                ));
            }
            if !policies.insert((&p.tenant_id, &p.policy_id)) {
                return Err(format!(
                    "policy {} of tenant {} appears twice",
                    p.policy_id, p.tenant_id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"tenants": [{"tenantId": "t1", "createdAt": "2026-01-01T00:00:00Z", "name": "Acme", "status": "active",
      "subscription": {"tier": "pro", "startDate": "2026-01-01", "features": ["export"]},
      "limits": {"maxDocuments": 100, "maxUsers": 10, "maxStorageGB": 5, "maxQueriesPerMonth": 1000},
      "usage": {"documents": 3, "users": 2, "storageGB": 0, "queriesThisMonth": 10},
      "settings": {"dataRetentionDays": 365, "allowedFileTypes": ["pdf", "docx"]}}],
     "documents": [{"tenantId": "t1", "documentId": "doc-1", "ownerId": "alice", "visibility": "shared",
      "classification": 1, "fileType": "pdf", "sizeBytes": 1024,
      "sharedWith": [{"userId": "bob", "permission": "read"}, {"role": "editor", "permission": "edit"}],
      "deletedAt": null}]}"#;

    #[test]
    fn parses_the_documented_import_format() {
        let ds: DataSet = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(ds.tenants[0].limits.max_storage_gb, 5);
        assert_eq!(ds.tenants[0].status, TenantStatus::Active);
        let doc = &ds.documents[0];
        assert_eq!(doc.classification.get(), 1);
        assert_eq!(
            doc.shared_with[1].grantee,
            Grantee::Role(RoleName::parse("editor").unwrap())
        );
        ds.check(|_| false).unwrap();
        // Round trip keeps every field.
        let again: DataSet = serde_json::from_str(&serde_json::to_string(&ds).unwrap()).unwrap();
        assert_eq!(again, ds);
    }

    #[test]
    fn rejects_bad_records() {
        let bad_status = SAMPLE.replace("\"active\"", "\"paused\"");
        assert!(serde_json::from_str::<DataSet>(&bad_status).is_err());
        let bad_level = SAMPLE.replace("\"classification\": 1", "\"classification\": 7");
        assert!(serde_json::from_str::<DataSet>(&bad_level).is_err());
        let negative = SAMPLE.replace("\"maxDocuments\": 100", "\"maxDocuments\": -1");
        assert!(serde_json::from_str::<DataSet>(&negative).is_err());
        let both = SAMPLE.replace(
            "{\"userId\": \"bob\", \"permission\": \"read\"}",
            "{\"userId\": \"bob\", \"role\": \"x\", \"permission\": \"read\"}",
        );
        assert!(serde_json::from_str::<DataSet>(&both).is_err());
        let unknown_field = SAMPLE.replace("\"name\": \"Acme\"", "\"nme\": \"Acme\"");
        assert!(serde_json::from_str::<DataSet>(&unknown_field).is_err());
    }

    #[test]
    fn check_finds_orphans_and_duplicates() {
        let mut ds: DataSet = serde_json::from_str(SAMPLE).unwrap();
        ds.documents.push(ds.documents[0].clone());
        assert!(ds.check(|_| false).unwrap_err().contains("twice"));
        ds.documents.pop();
        ds.tenants.clear();
        assert!(ds.check(|_| false).unwrap_err().contains("unknown tenant"));
        assert!(ds.check(|_| true).is_ok());
    }
}
