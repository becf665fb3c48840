//! A principal index over an action's policies: evaluate only the policies
//! whose principal scope can match the request's principal.
//!
//! A policy scoped `principal == X` applies only to X; one scoped
//! `principal in X` (or `principal is T in X`) only to X and the entities
//! below X in the hierarchy; the rest (`principal`, `principal is T`) may
//! apply to anyone. Cedar checks a policy's scope before its conditions, so
//! a policy whose scope cannot match is never satisfied and never reports
//! an error: leaving it out changes neither the decision, nor the
//! determining policies, nor the errors.
//!
//! The set for a principal is the general policies plus those keyed by the
//! principal itself and its ancestors (its roles); sets are built once per
//! combination of matched keys and remembered. An action whose slice has
//! few entity-scoped policies is not indexed: its slice is already small.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use cedar_policy::{EntityUid, Policy, PolicySet, PrincipalConstraint};
use lru::LruCache;
use parking_lot::Mutex;

/// Index an action's slice when at least this many of its policies name a
/// principal entity in their scope.
pub const MIN_INDEXED: usize = 32;

/// How many policy sets (combinations of matched keys) are remembered per
/// action.
const SETS: usize = 1024;

/// Which scope a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scope {
    /// `principal == X`.
    Eq,
    /// `principal in X`, `principal is T in X`.
    In,
}

/// A principal scope's entity: `principal == X` or `principal in X`.
type Key = (Scope, EntityUid);

pub struct PrincipalIndex {
    /// Policies that may apply to any principal.
    general: Vec<Policy>,
    by_key: HashMap<Key, Vec<Policy>>,
    /// Policy sets by the sorted keys a principal matched.
    sets: Mutex<LruCache<Vec<Key>, Arc<PolicySet>>>,
}

impl std::fmt::Debug for PrincipalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalIndex")
            .field("general", &self.general.len())
            .field("keys", &self.by_key.len())
            .finish()
    }
}

impl PrincipalIndex {
    /// Indexes `slice`, or none when it names few principal entities.
    pub fn build(slice: &PolicySet) -> Option<Self> {
        Self::build_with(slice, MIN_INDEXED, SETS)
    }

    /// Indexes `slice` when at least `min` of its policies name a principal
    /// entity, remembering up to `sets` policy sets.
    pub fn build_with(slice: &PolicySet, min: usize, sets: usize) -> Option<Self> {
        let mut general = Vec::new();
        let mut by_key: HashMap<Key, Vec<Policy>> = HashMap::new();
        let mut keyed = 0;
        for p in slice.policies() {
            let key = match p.principal_constraint() {
                PrincipalConstraint::Eq(uid) => Some((Scope::Eq, uid)),
                PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => {
                    Some((Scope::In, uid))
                }
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
            };
            match key {
                Some(k) => {
                    keyed += 1;
                    by_key.entry(k).or_default().push(p.clone());
                }
                None => general.push(p.clone()),
            }
        }
        (keyed >= min).then(|| PrincipalIndex {
            general,
            by_key,
            sets: Mutex::new(LruCache::new(
                NonZeroUsize::new(sets).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// The policies that can apply to `principal`, whose ancestors in the
    /// request's entities are `ancestors`.
    pub fn policies_for<'a>(
        &self,
        principal: &EntityUid,
        ancestors: impl Iterator<Item = &'a EntityUid>,
    ) -> Arc<PolicySet> {
        let mut key: Vec<Key> = Vec::new();
        let mut matched = |k: Key| {
            if self.by_key.contains_key(&k) {
                key.push(k);
            }
        };
        matched((Scope::Eq, principal.clone()));
        // `principal in X` holds for X itself too.
        matched((Scope::In, principal.clone()));
        for a in ancestors {
            matched((Scope::In, a.clone()));
        }
        key.sort_unstable();
        key.dedup();
        if let Some(set) = self.sets.lock().get(&key) {
            return set.clone();
        }
        let mut set = PolicySet::new();
        let chosen = key.iter().filter_map(|k| self.by_key.get(k)).flatten();
        for p in self.general.iter().chain(chosen) {
            // Ids are unique in the slice, so adding cannot fail.
            if set.add(p.clone()).is_err() {
                tracing::error!(policy = %p.id(), "policy could not be indexed");
            }
        }
        let set = Arc::new(set);
        self.sets.lock().put(key, set.clone());
        set
    }

    /// How many policy sets are remembered.
    pub fn remembered(&self) -> usize {
        self.sets.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    fn set(n: usize) -> PolicySet {
        let mut text = String::from(
            "@id(\"any\") permit (principal, action, resource);\n\
             @id(\"is\") permit (principal is User, action, resource);\n\
             @id(\"eq\") permit (principal == User::\"u1\", action, resource);\n",
        );
        for i in 0..n {
            text.push_str(&format!(
                "@id(\"r{i}\") permit (principal in Role::\"r{i}\", action, resource);\n"
            ));
        }
        let parsed = PolicySet::from_str(&text).unwrap();
        let mut out = PolicySet::new();
        for p in parsed.policies() {
            let id = p.annotation("id").unwrap().to_string();
            out.add(p.new_id(cedar_policy::PolicyId::new(id))).unwrap();
        }
        out
    }

    fn ids(set: &PolicySet) -> Vec<String> {
        let mut ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_principal_gets_the_general_policies_and_its_own() {
        assert!(
            PrincipalIndex::build(&set(MIN_INDEXED - 2)).is_none(),
            "few: not indexed"
        );
        let index = PrincipalIndex::build(&set(100)).unwrap();
        let roles = [
            uid("Role::\"r7\""),
            uid("Role::\"r42\""),
            uid("Role::\"editor\""),
        ];
        let got = index.policies_for(&uid("User::\"u1\""), roles.iter());
        assert_eq!(ids(&got), ["any", "eq", "is", "r42", "r7"]);
        let other = index.policies_for(&uid("User::\"u2\""), std::iter::empty());
        assert_eq!(ids(&other), ["any", "is"]);
        // The same combination is built once, whatever the order.
        let again = index.policies_for(&uid("User::\"u1\""), roles.iter().rev());
        assert!(Arc::ptr_eq(&got, &again));
        assert_eq!(index.remembered(), 2);
        // `principal in X` matches X itself.
        let role = index.policies_for(&uid("Role::\"r3\""), std::iter::empty());
        assert_eq!(ids(&role), ["any", "is", "r3"]);
    }
}
