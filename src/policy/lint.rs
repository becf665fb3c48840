//! A check that `cedargate policy validate` adds to Cedar's strict
//! validation: forbids that an evaluation error could switch off.
//!
//! Cedar skips a policy whose condition fails to evaluate. For a `permit`
//! that denies (fail closed); for a `forbid` it lets the request through
//! unless something else denies it. The native API treats any error as a
//! Deny, but the same policies also run under Amazon Verified Permissions
//! (`cedargate policy push`, pulled stores), where an erroring forbid is
//! simply skipped. So each forbid is read for expressions that can fail on
//! data that conforms to the schema:
//!
//! - an attribute of an entity (`principal.tenant`, `resource.usage`,
//!   `principal.tenant.status`): the entity may be absent from the request,
//!   unless an enclosing `&&`, `||` or `if` has tested `e has attr` first;
//! - arithmetic (`+`, `-`, `*`, negation): it can overflow;
//! - an extension function applied to something other than literals (an
//!   `ip("…")` or `decimal("…")` of a value can fail to parse);
//! - `getTag` without `hasTag` first.
//!
//! Records and context are typed by the schema and validated with the
//! request, so reading their required attributes cannot fail. The fail-
//! closed shape is the request's good case in `unless`, behind `has`:
//! `unless { principal has tenant && resource == principal.tenant }`.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{Effect, PolicySet};
use serde_json::Value;

use super::types::{self, SchemaTypes};

/// A forbid that an error could switch off, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub policy: String,
    pub site: String,
    pub why: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "forbid {:?} can be switched off by an evaluation error at `{}`: {}",
            self.policy, self.site, self.why
        )
    }
}

/// What an expression is, as far as this check needs it.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    /// An entity of one of these types (qualified names).
    Entity(BTreeSet<String>),
    /// A record with its attributes: (type, required).
    Record(BTreeMap<String, (types::Ty, bool)>),
    /// Typed by the request's validation (the context).
    Context,
    Other,
}

impl From<&types::Ty> for Ty {
    fn from(t: &types::Ty) -> Self {
        match t {
            types::Ty::Entity(e) => Ty::Entity([e.clone()].into()),
            types::Ty::Record(attrs) => Ty::Record(attrs.clone()),
            _ => Ty::Other,
        }
    }
}

/// The operators of Cedar's JSON policy form whose operands are walked
/// as they are; any other key with an array is an extension function.
const UNARY: [&str; 3] = ["!", "isEmpty", "neg"];
const BINARY: [&str; 16] = [
    "==",
    "!=",
    "in",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "+",
    "-",
    "*",
    "contains",
    "containsAll",
    "containsAny",
    "hasTag",
];

/// Extension functions that can fail at run time: the constructors (on a
/// string that does not parse) and datetime arithmetic (overflow). Their
/// comparisons and predicates (`lessThan`, `isInRange`, …) cannot.
const FALLIBLE_CALLS: [&str; 6] = [
    "ip",
    "decimal",
    "datetime",
    "duration",
    "offset",
    "durationSince",
];

/// `has` tests known to hold: (the tested expression, the attribute).
type Facts = Vec<(Value, String)>;

struct Walk<'a> {
    types: &'a SchemaTypes,
    principal: Ty,
    resource: Ty,
    policy: String,
    found: Vec<Finding>,
}

impl Walk<'_> {
    fn report(&mut self, site: String, why: &'static str) {
        if !self.found.iter().any(|f| f.site == site) {
            self.found.push(Finding {
                policy: self.policy.clone(),
                site,
                why,
            });
        }
    }

    /// The type of `e`, as far as attribute chains from the variables go.
    fn type_of(&self, e: &Value) -> Ty {
        if let Some(var) = e["Var"].as_str() {
            return match var {
                "principal" => self.principal.clone(),
                "resource" => self.resource.clone(),
                "context" => Ty::Context,
                _ => Ty::Other,
            };
        }
        if let Some(lit) = e.get("Value") {
            return match lit["__entity"]["type"].as_str() {
                Some(t) => Ty::Entity([t.to_string()].into()),
                None => Ty::Other,
            };
        }
        if let Some(dot) = e.get(".") {
            let attr = dot["attr"].as_str().unwrap_or_default();
            return match self.type_of(&dot["left"]) {
                Ty::Entity(types) => types
                    .iter()
                    .find_map(|t| self.types.attr(t, attr))
                    .map_or(Ty::Other, |(t, _)| t.into()),
                Ty::Record(attrs) => attrs.get(attr).map_or(Ty::Other, |(t, _)| t.into()),
                _ => Ty::Other,
            };
        }
        Ty::Other
    }

    fn walk(&mut self, e: &Value, facts: &Facts) {
        let Some((op, body)) = e.as_object().and_then(|m| m.iter().next()) else {
            return;
        };
        match op.as_str() {
            "Value" | "Var" | "Slot" | "Unknown" => {}
            "." => {
                let left = &body["left"];
                let attr = body["attr"].as_str().unwrap_or_default();
                self.walk(left, facts);
                let guarded = facts.iter().any(|(x, a)| x == left && a == attr);
                let fallible = match self.type_of(left) {
                    Ty::Entity(_) => true,
                    Ty::Record(attrs) => !attrs.get(attr).is_some_and(|(_, req)| *req),
                    Ty::Context => false,
                    Ty::Other => true,
                };
                if fallible && !guarded {
                    self.report(
                        render(e),
                        "an entity's attribute (the entity may be absent from the request); test it with `has` first",
                    );
                }
            }
            "has" | "like" => self.walk(&body["left"], facts),
            "is" => {
                self.walk(&body["left"], facts);
                if let Some(within) = body.get("in") {
                    self.walk(within, facts);
                }
            }
            "&&" => {
                self.walk(&body["left"], facts);
                let mut more = facts.clone();
                has_facts(&body["left"], &mut more);
                self.walk(&body["right"], &more);
            }
            "||" => {
                self.walk(&body["left"], facts);
                let mut more = facts.clone();
                if let Some(inner) = body["left"].get("!") {
                    has_facts(&inner["arg"], &mut more);
                }
                self.walk(&body["right"], &more);
            }
            "if-then-else" => {
                self.walk(&body["if"], facts);
                let mut then = facts.clone();
                has_facts(&body["if"], &mut then);
                self.walk(&body["then"], &then);
                let mut other = facts.clone();
                if let Some(inner) = body["if"].get("!") {
                    has_facts(&inner["arg"], &mut other);
                }
                self.walk(&body["else"], &other);
            }
            "+" | "-" | "*" | "neg" => {
                for child in children(body) {
                    self.walk(child, facts);
                }
                self.report(render(e), "arithmetic, which can overflow");
            }
            "getTag" => {
                let guarded = facts.iter().any(|(x, a)| {
                    x == &body["left"] && body["right"]["Value"].as_str() == Some(a.as_str())
                });
                if !guarded {
                    self.report(
                        render(e),
                        "a tag that may be absent; test it with `hasTag` first",
                    );
                }
                self.walk(&body["left"], facts);
            }
            op if UNARY.contains(&op) || BINARY.contains(&op) => {
                for child in children(body) {
                    self.walk(child, facts);
                }
            }
            "Set" => body
                .as_array()
                .into_iter()
                .flatten()
                .for_each(|c| self.walk(c, facts)),
            "Record" => body
                .as_object()
                .into_iter()
                .flatten()
                .for_each(|(_, c)| self.walk(c, facts)),
            // An extension function or method.
            _ => {
                let args = body.as_array().map(Vec::as_slice).unwrap_or_default();
                args.iter().for_each(|a| self.walk(a, facts));
                let literal = args.iter().all(|a| a.get("Value").is_some());
                if FALLIBLE_CALLS.contains(&op.as_str()) && !literal {
                    self.report(
                        format!("{op}(…)"),
                        "an extension function that can fail on a value (a parse, an overflow)",
                    );
                }
            }
        }
    }
}

/// The operands of a unary or binary operator.
fn children(body: &Value) -> Vec<&Value> {
    ["arg", "left", "right"]
        .iter()
        .filter_map(|k| body.get(*k))
        .collect()
}

/// The `has` tests that hold when `e` is true (its `&&` conjuncts).
fn has_facts(e: &Value, out: &mut Facts) {
    if let Some(h) = e.get("has") {
        if let Some(attr) = h["attr"].as_str() {
            out.push((h["left"].clone(), attr.to_string()));
        }
    } else if let Some(h) = e.get("hasTag") {
        if let Some(tag) = h["right"]["Value"].as_str() {
            out.push((h["left"].clone(), tag.to_string()));
        }
    } else if let Some(and) = e.get("&&") {
        has_facts(&and["left"], out);
        has_facts(&and["right"], out);
    }
}

/// An attribute chain in Cedar syntax (`principal.tenant.status`).
fn render(e: &Value) -> String {
    if let Some(v) = e["Var"].as_str() {
        return v.to_string();
    }
    if let Some(dot) = e.get(".") {
        return format!(
            "{}.{}",
            render(&dot["left"]),
            dot["attr"].as_str().unwrap_or("?")
        );
    }
    if let Some((op, body)) = e.as_object().and_then(|m| m.iter().next()) {
        if let (Some(l), Some(r)) = (body.get("left"), body.get("right")) {
            return format!("{} {op} {}", render(l), render(r));
        }
        if let Some(v) = body.as_i64() {
            return v.to_string();
        }
    }
    "…".into()
}

/// The types a scope constraint allows for a variable.
fn scope_types(constraint: &Value, all: &BTreeSet<String>) -> BTreeSet<String> {
    match constraint["op"].as_str() {
        Some("is") => constraint["entity_type"]
            .as_str()
            .map(|t| [t.to_string()].into())
            .unwrap_or_else(|| all.clone()),
        Some("==") => constraint["entity"]["type"]
            .as_str()
            .map(|t| [t.to_string()].into())
            .unwrap_or_else(|| all.clone()),
        _ => all.clone(),
    }
}

/// Every forbid of `policies` that an evaluation error could switch off,
/// given the schema's types.
pub fn fallible_forbids(policies: &PolicySet, types: &SchemaTypes) -> Vec<Finding> {
    let mut found = Vec::new();
    for p in policies.policies().filter(|p| p.effect() == Effect::Forbid) {
        let Ok(json) = p.to_json() else { continue };
        let id = p
            .annotation("id")
            .map_or_else(|| p.id().to_string(), str::to_string);
        let mut w = Walk {
            types,
            principal: Ty::Entity(scope_types(&json["principal"], &types.principals)),
            resource: Ty::Entity(scope_types(&json["resource"], &types.resources)),
            policy: id,
            found: Vec::new(),
        };
        // Conditions are conjoined in order: what a `when` clause tested
        // with `has` holds in the clauses after it.
        let mut facts = Facts::new();
        for c in json["conditions"].as_array().into_iter().flatten() {
            w.walk(&c["body"], &facts);
            if c["kind"] == "when" {
                has_facts(&c["body"], &mut facts);
            }
        }
        found.extend(w.found);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::SchemaFragment;
    use std::str::FromStr;

    const SCHEMA: &str = r#"
        namespace N {
          type Limits = { max: Long, soft?: Long };
          entity Tenant = { status: String, limits: Limits };
          entity User = { tenant: Tenant, level: Long, ip: String };
          entity Doc = { tenant: Tenant, level: Long };
          action Read appliesTo { principal: User, resource: Doc, context: { size: Long } };
        }"#;

    fn lint(text: &str) -> Vec<String> {
        let (fragment, _) = SchemaFragment::from_cedarschema_str(SCHEMA).unwrap();
        let schema = fragment.to_json_value().unwrap();
        let set = PolicySet::from_str(text).unwrap();
        fallible_forbids(&set, &SchemaTypes::from_json(&schema))
            .into_iter()
            .map(|f| f.site)
            .collect()
    }

    #[test]
    fn flags_what_can_fail_in_a_forbid() {
        // The shapes this project's policies had before they were written
        // to fail closed.
        assert_eq!(
            lint("forbid(principal, action, resource is N::Doc) unless { resource.tenant == principal.tenant };"),
            vec!["resource.tenant", "principal.tenant"]
        );
        assert_eq!(
            lint("forbid(principal, action, resource) when { principal.tenant.status == \"x\" };"),
            vec!["principal.tenant", "principal.tenant.status"]
        );
        assert_eq!(
            lint("forbid(principal, action, resource is N::Doc) when { context.size + 1 > 2 };"),
            vec!["context.size + 1"]
        );
        assert_eq!(
            lint("forbid(principal is N::User, action, resource) when { ip(principal.ip).isLoopback() };"),
            vec!["principal.ip", "ip(…)"]
        );
    }

    #[test]
    fn has_guards_records_and_permits_pass() {
        for ok in [
            "forbid(principal, action, resource is N::Doc) unless { principal has tenant && resource has tenant && resource.tenant == principal.tenant };",
            "forbid(principal, action, resource) unless { principal has tenant && principal.tenant has status && principal.tenant.status == \"x\" };",
            "forbid(principal, action, resource is N::Doc) when { principal has tenant } unless { principal.tenant has limits && context.size <= principal.tenant.limits.max };",
            "forbid(principal, action, resource is N::Doc) unless { !(resource has level) || resource.level < 2 };",
            "forbid(principal, action, resource is N::Doc) unless { if resource has level then resource.level < 2 else false };",
            "forbid(principal, action, resource is N::Doc) when { context.size > 2 && ip(\"127.0.0.1\").isLoopback() };",
            "permit(principal, action, resource is N::Doc) when { resource.tenant == principal.tenant && context.size + 1 > 0 };",
        ] {
            assert_eq!(lint(ok), Vec::<String>::new(), "{ok}");
        }
        // An optional record attribute needs its test too; a test in an
        // `unless` clause does not carry to the next clause.
        assert_eq!(
            lint("forbid(principal, action, resource is N::Doc) unless { resource has tenant && resource.tenant has limits && resource.tenant.limits has soft && resource.tenant.limits.soft > 1 };"),
            Vec::<String>::new()
        );
        assert_eq!(
            lint("forbid(principal, action, resource is N::Doc) unless { resource has level } when { resource.level > 1 };"),
            vec!["resource.level"]
        );
    }
}
