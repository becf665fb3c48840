//! Identifier newtypes. Each is built only through `parse`, which enforces the
//! character set and length, so an unchecked string can never reach a store
//! key or a Cedar entity id.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// The rules one kind of identifier follows.
struct Rules {
    kind: &'static str,
    max_len: usize,
    /// Characters allowed besides ASCII letters and digits.
    extra: &'static str,
}

fn check(rules: &Rules, value: &str) -> Result<(), IdError> {
    let fail = |reason| IdError {
        kind: rules.kind,
        value: value.chars().take(80).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(fail("must not be empty"));
    }
    if value.len() > rules.max_len {
        return Err(fail("too long"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || rules.extra.contains(c))
    {
        return Err(fail("contains a character that is not allowed"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:literal, $extra:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            const RULES: Rules = Rules { kind: $kind, max_len: $max, extra: $extra };

            /// Checks `value` and wraps it.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check(&Self::RULES, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A tenant, as named by the `custom:tenant_id` claim.
    TenantId, "tenant id", 64, "-_."
);
id_type!(
    /// A user: the token's `sub` (a Cognito UUID, or any OIDC subject).
    UserId, "user id", 128, "-_.@+:|"
);
id_type!(
    /// A document, unique inside its tenant.
    DocumentId, "document id", 256, "-_.:/@+="
);
id_type!(
    /// A role: one of the caller's `cognito:groups`.
    RoleName, "role", 128, "-_.:"
);
id_type!(
    /// A tenant policy, unique inside its tenant.
    PolicyName, "policy id", 64, "-_."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        assert_eq!(TenantId::parse("t-1_a.b").unwrap().as_str(), "t-1_a.b");
        assert!(UserId::parse("3f1c2a9e-0b7d-4c1e-9a55-1e2f3a4b5c6d").is_ok());
        assert!(DocumentId::parse("reports/2026/q1.pdf").is_ok());
        assert!(RoleName::parse("platform-admin").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a".repeat(65)).is_err());
        assert!(TenantId::parse("t1/../t2").is_err());
        assert!(UserId::parse("alice bob").is_err());
        assert!(DocumentId::parse("doc\"1").is_err());
        assert!(RoleName::parse("admin\n").is_err());
        let err = TenantId::parse("t 1").unwrap_err();
        assert_eq!(err.kind, "tenant id");
    }

    #[test]
    fn deserialize_checks() {
        let ok: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(ok.as_str(), "acme");
        assert!(serde_json::from_str::<TenantId>("\"a b\"").is_err());
    }
}
