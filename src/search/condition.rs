//! The store-neutral condition of a search plan: a small tree over the
//! resource's attributes, and its translation from Cedar's residual
//! policies (partial evaluation with the resource unknown).
//!
//! Translation is exact or it fails: a residual that uses anything this
//! module does not translate is an error naming the policy and the
//! construct, never a looser condition.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value as Json;

use crate::policy::types::{SchemaTypes, Ty};

/// A value a condition compares an attribute with. Entities are their ids
/// (the attribute's type says which type they are).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Long(i64),
    String(String),
}

/// A comparison of a `Long` attribute with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// `!(a op v)` as `a op' v`.
    fn negated(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Ge,
            Cmp::Le => Cmp::Gt,
            Cmp::Gt => Cmp::Le,
            Cmp::Ge => Cmp::Lt,
        }
    }

    /// `v op a` as `a op' v`.
    fn flipped(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
        }
    }

    pub fn holds(self, a: i64, v: i64) -> bool {
        match self {
            Cmp::Lt => a < v,
            Cmp::Le => a <= v,
            Cmp::Gt => a > v,
            Cmp::Ge => a >= v,
        }
    }
}

/// The condition a resource must meet. Its JSON form (`op`, `attr`,
/// `value`/`values`, `args`/`arg`) is documented in docs/search.md.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cond {
    True,
    False,
    And {
        args: Vec<Cond>,
    },
    Or {
        args: Vec<Cond>,
    },
    Not {
        arg: Box<Cond>,
    },
    /// A single-valued attribute equals the value.
    Eq {
        attr: String,
        value: Value,
    },
    /// A single-valued attribute is one of the values.
    In {
        attr: String,
        values: Vec<Value>,
    },
    /// A set attribute holds at least one of the values.
    ContainsAny {
        attr: String,
        values: Vec<Value>,
    },
    /// A `Long` attribute compared with a value.
    Compare {
        attr: String,
        cmp: Cmp,
        value: i64,
    },
}

impl Serialize for Cond {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        let v = match self {
            Cond::True => json!({ "op": "true" }),
            Cond::False => json!({ "op": "false" }),
            Cond::And { args } => json!({ "op": "and", "args": args }),
            Cond::Or { args } => json!({ "op": "or", "args": args }),
            Cond::Not { arg } => json!({ "op": "not", "arg": arg }),
            Cond::Eq { attr, value } => json!({ "op": "eq", "attr": attr, "value": value }),
            Cond::In { attr, values } => json!({ "op": "in", "attr": attr, "values": values }),
            Cond::ContainsAny { attr, values } => {
                json!({ "op": "contains_any", "attr": attr, "values": values })
            }
            Cond::Compare { attr, cmp, value } => {
                json!({ "op": cmp, "attr": attr, "value": value })
            }
        };
        v.serialize(s)
    }
}

/// Why a residual cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy:?}: {construct} cannot be turned into a search filter")]
pub struct Untranslatable {
    pub policy: String,
    pub construct: String,
}

impl Cond {
    pub fn and(args: Vec<Cond>) -> Cond {
        Cond::And { args }.simplified()
    }

    pub fn or(args: Vec<Cond>) -> Cond {
        Cond::Or { args }.simplified()
    }

    #[allow(clippy::should_implement_trait)]
    pub fn not(c: Cond) -> Cond {
        Cond::Not { arg: Box::new(c) }.simplified()
    }

    /// The condition where the single-valued attribute `attr` is known to
    /// be `value` (what a plan's scope fixes: its tenant), simplified. Exact
    /// under that assumption: a tenant policy's confinement
    /// (`resource.tenant == <its tenant>`) becomes true, and takes no
    /// filter depth.
    pub fn assuming(self, attr: &str, value: &Value) -> Cond {
        match self {
            Cond::Eq { attr: a, value: v } if a == attr => {
                if &v == value {
                    Cond::True
                } else {
                    Cond::False
                }
            }
            Cond::In { attr: a, values } if a == attr => {
                if values.contains(value) {
                    Cond::True
                } else {
                    Cond::False
                }
            }
            Cond::And { args } => {
                Cond::and(args.into_iter().map(|c| c.assuming(attr, value)).collect())
            }
            Cond::Or { args } => {
                Cond::or(args.into_iter().map(|c| c.assuming(attr, value)).collect())
            }
            Cond::Not { arg } => Cond::not(arg.assuming(attr, value)),
            other => other,
        }
    }

    /// Constants folded, nested `and`/`or` flattened, duplicates dropped,
    /// negations pushed down to the leaves where a leaf can take them
    /// (comparisons flip; a boolean attribute's equality flips).
    pub fn simplified(self) -> Cond {
        match self {
            Cond::And { args } => {
                let mut out = BTreeSet::new();
                for a in args.into_iter().map(Cond::simplified) {
                    match a {
                        Cond::False => return Cond::False,
                        Cond::True => {}
                        Cond::And { args } => out.extend(args),
                        other => {
                            out.insert(other);
                        }
                    }
                }
                match out.len() {
                    0 => Cond::True,
                    1 => out.into_iter().next().unwrap_or(Cond::True),
                    _ => Cond::And {
                        args: out.into_iter().collect(),
                    },
                }
            }
            Cond::Or { args } => {
                let mut out = BTreeSet::new();
                for a in args.into_iter().map(Cond::simplified) {
                    match a {
                        Cond::True => return Cond::True,
                        Cond::False => {}
                        Cond::Or { args } => out.extend(args),
                        other => {
                            out.insert(other);
                        }
                    }
                }
                match out.len() {
                    0 => Cond::False,
                    1 => out.into_iter().next().unwrap_or(Cond::False),
                    _ => Cond::Or {
                        args: out.into_iter().collect(),
                    },
                }
            }
            Cond::Not { arg } => match arg.simplified() {
                Cond::True => Cond::False,
                Cond::False => Cond::True,
                Cond::Not { arg } => *arg,
                Cond::And { args } => Cond::or(args.into_iter().map(Cond::not).collect()),
                Cond::Or { args } => Cond::and(args.into_iter().map(Cond::not).collect()),
                Cond::Compare { attr, cmp, value } => Cond::Compare {
                    attr,
                    cmp: cmp.negated(),
                    value,
                },
                Cond::Eq {
                    attr,
                    value: Value::Bool(b),
                } => Cond::Eq {
                    attr,
                    value: Value::Bool(!b),
                },
                other => Cond::Not {
                    arg: Box::new(other),
                },
            },
            Cond::In { attr, mut values } => {
                values.sort();
                values.dedup();
                match values.len() {
                    0 => Cond::False,
                    1 => Cond::Eq {
                        attr,
                        value: values.remove(0),
                    },
                    _ => Cond::In { attr, values },
                }
            }
            Cond::ContainsAny { attr, mut values } => {
                values.sort();
                values.dedup();
                if values.is_empty() {
                    Cond::False
                } else {
                    Cond::ContainsAny { attr, values }
                }
            }
            leaf => leaf,
        }
    }

    /// The same condition as an AND of ORs of leaves (or negated leaves):
    /// the shape a search service with shallow filters (Kendra: two levels)
    /// can take. `None` when it would take more than `max` clauses.
    pub fn cnf(&self, max: usize) -> Option<Vec<Vec<Cond>>> {
        match self {
            Cond::True => Some(vec![]),
            Cond::False => Some(vec![vec![]]),
            Cond::And { args } => {
                let mut out = Vec::new();
                for a in args {
                    out.extend(a.cnf(max)?);
                    if out.len() > max {
                        return None;
                    }
                }
                Some(out)
            }
            Cond::Or { args } => {
                // (a1 ∧ a2) ∨ (b1 ∧ b2) = ∧ over every pick of one clause each.
                let mut acc: Vec<Vec<Cond>> = vec![vec![]];
                for a in args {
                    let clauses = a.cnf(max)?;
                    let mut next = Vec::new();
                    for left in &acc {
                        for right in &clauses {
                            let mut c = left.clone();
                            c.extend(right.iter().cloned());
                            c.sort();
                            c.dedup();
                            next.push(c);
                        }
                    }
                    next.sort();
                    next.dedup();
                    if next.len() > max {
                        return None;
                    }
                    acc = next;
                }
                Some(acc)
            }
            leaf => Some(vec![vec![leaf.clone()]]),
        }
    }
}

/// An attribute of a concrete resource, as [`Cond::holds`] reads it:
/// entities are their ids, as in [`Value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    One(Value),
    /// A set's elements, sorted.
    Set(Vec<Value>),
    /// A record or an extension value: no condition reads one.
    Other,
}

/// A concrete resource's attributes by name.
pub type AttrView = HashMap<String, AttrValue>;

/// The attributes of a Cedar entity, as [`Cond::holds`] reads them.
pub fn view_of(entity: &cedar_policy::Entity) -> AttrView {
    use cedar_policy::EvalResult;
    fn scalar(v: &EvalResult) -> Option<Value> {
        Some(match v {
            EvalResult::Bool(b) => Value::Bool(*b),
            EvalResult::Long(n) => Value::Long(*n),
            EvalResult::String(s) => Value::String(s.clone()),
            EvalResult::EntityUid(u) => Value::String(u.id().unescaped().to_string()),
            _ => return None,
        })
    }
    entity
        .attrs()
        .map(|(name, value)| {
            let value = match value {
                Ok(EvalResult::Set(items)) => {
                    let mut out = Vec::new();
                    let mut whole = true;
                    for item in items.iter() {
                        match scalar(item) {
                            Some(v) => out.push(v),
                            None => whole = false,
                        }
                    }
                    out.sort();
                    if whole {
                        AttrValue::Set(out)
                    } else {
                        AttrValue::Other
                    }
                }
                Ok(v) => scalar(&v).map_or(AttrValue::Other, AttrValue::One),
                Err(_) => AttrValue::Other,
            };
            (name.to_string(), value)
        })
        .collect()
}

impl Cond {
    /// Whether a resource with these attributes meets the condition. `None`
    /// when the condition reads an attribute the resource does not have, or
    /// not as the type it has: the caller then asks Cedar, which would
    /// report an error where this cannot.
    pub fn holds(&self, view: &AttrView) -> Option<bool> {
        let one = |attr: &str| match view.get(attr) {
            Some(AttrValue::One(v)) => Some(v),
            _ => None,
        };
        Some(match self {
            Cond::True => true,
            Cond::False => false,
            Cond::And { args } => {
                let mut all = true;
                for a in args {
                    all &= a.holds(view)?;
                }
                all
            }
            Cond::Or { args } => {
                let mut any = false;
                for a in args {
                    any |= a.holds(view)?;
                }
                any
            }
            Cond::Not { arg } => !arg.holds(view)?,
            Cond::Eq { attr, value } => {
                let v = one(attr)?;
                if std::mem::discriminant(v) != std::mem::discriminant(value) {
                    return None;
                }
                v == value
            }
            Cond::In { attr, values } => {
                let v = one(attr)?;
                values.contains(v)
            }
            Cond::ContainsAny { attr, values } => match view.get(attr) {
                Some(AttrValue::Set(items)) => {
                    values.iter().any(|v| items.binary_search(v).is_ok())
                }
                _ => return None,
            },
            Cond::Compare { attr, cmp, value } => match one(attr)? {
                Value::Long(a) => cmp.holds(*a, *value),
                _ => return None,
            },
        })
    }
}

/// The ancestors (type, id) of an entity (type, id).
pub type Ancestors<'a> = &'a dyn Fn(&str, &str) -> Vec<(String, String)>;

/// Translates residual policy conditions (Cedar's JSON policy form) of one
/// policy into a [`Cond`].
pub struct Translator<'a> {
    pub types: &'a SchemaTypes,
    /// The resource's entity type (qualified).
    pub resource: &'a str,
    /// The ancestors of each known entity (the principal's roles), for
    /// `E in resource.attr`.
    pub ancestors: Ancestors<'a>,
    pub policy: &'a str,
}

/// An entity literal of Cedar's JSON form: (type, id).
fn entity(v: &Json) -> Option<(String, String)> {
    let e = v.get("Value")?.get("__entity")?;
    Some((
        e["type"].as_str()?.to_string(),
        e["id"].as_str()?.to_string(),
    ))
}

impl Translator<'_> {
    fn fail<T>(&self, construct: impl Into<String>) -> Result<T, Untranslatable> {
        Err(Untranslatable {
            policy: self.policy.to_string(),
            construct: construct.into(),
        })
    }

    /// The attribute `e` reads directly off the resource, with its type.
    fn resource_attr(&self, e: &Json) -> Option<(String, Ty, bool)> {
        let dot = e.get(".")?;
        if dot["left"]["Var"].as_str() != Some("resource") {
            return None;
        }
        let attr = dot["attr"].as_str()?;
        let (ty, required) = self.types.attr(self.resource, attr)?;
        Some((attr.to_string(), ty.clone(), *required))
    }

    /// A literal as a value of type `ty`; `Ok(None)` when a literal of
    /// another type can never equal it.
    fn literal(&self, v: &Json, ty: &Ty) -> Result<Option<Value>, Untranslatable> {
        let lit = &v["Value"];
        Ok(match (ty, lit) {
            (Ty::Bool, Json::Bool(b)) => Some(Value::Bool(*b)),
            (Ty::Long, Json::Number(n)) => n.as_i64().map(Value::Long),
            (Ty::String, Json::String(s)) => Some(Value::String(s.clone())),
            (Ty::Entity(t), _) => match entity(v) {
                Some((ty, id)) if &ty == t => Some(Value::String(id)),
                Some(_) => None,
                None => return self.fail("a comparison of an entity with a non-entity"),
            },
            _ => return self.fail(format!("a literal {lit} compared with a {ty:?} attribute")),
        })
    }

    pub fn translate(&self, e: &Json) -> Result<Cond, Untranslatable> {
        let Some((op, body)) = e.as_object().and_then(|m| m.iter().next()) else {
            return self.fail("an empty expression");
        };
        match op.as_str() {
            "Value" => match body {
                Json::Bool(true) => Ok(Cond::True),
                Json::Bool(false) => Ok(Cond::False),
                other => self.fail(format!("the literal {other} as a condition")),
            },
            // A boolean attribute as a condition.
            "." => match self.resource_attr(e) {
                Some((attr, Ty::Bool, _)) => Ok(Cond::Eq {
                    attr,
                    value: Value::Bool(true),
                }),
                _ => {
                    self.fail("an attribute that is not a boolean of the resource, as a condition")
                }
            },
            "&&" => Ok(Cond::and(vec![
                self.translate(&body["left"])?,
                self.translate(&body["right"])?,
            ])),
            "||" => Ok(Cond::or(vec![
                self.translate(&body["left"])?,
                self.translate(&body["right"])?,
            ])),
            "!" => Ok(Cond::not(self.translate(&body["arg"])?)),
            "if-then-else" => {
                let c = self.translate(&body["if"])?;
                Ok(Cond::or(vec![
                    Cond::and(vec![c.clone(), self.translate(&body["then"])?]),
                    Cond::and(vec![Cond::not(c), self.translate(&body["else"])?]),
                ]))
            }
            "==" | "!=" => {
                let eq = self.equality(&body["left"], &body["right"])?;
                Ok(if op == "==" { eq } else { Cond::not(eq) })
            }
            "<" | "<=" | ">" | ">=" => {
                let cmp = match op.as_str() {
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let (l, r) = (&body["left"], &body["right"]);
                match (self.resource_attr(l), self.resource_attr(r)) {
                    (Some((attr, Ty::Long, _)), None) => self.compare(attr, cmp, r),
                    (None, Some((attr, Ty::Long, _))) => self.compare(attr, cmp.flipped(), l),
                    _ => self.fail(format!(
                        "`{op}` other than a Long attribute against a number"
                    )),
                }
            }
            "has" => {
                if body["left"]["Var"].as_str() != Some("resource") {
                    return self.fail("`has` on something other than the resource");
                }
                match self
                    .types
                    .attr(self.resource, body["attr"].as_str().unwrap_or(""))
                {
                    // Every indexed document carries its required
                    // attributes (the attribute contract).
                    Some((_, true)) => Ok(Cond::True),
                    Some((_, false)) => self.fail("`has` of an optional attribute"),
                    None => Ok(Cond::False),
                }
            }
            "is" => {
                if body["left"]["Var"].as_str() != Some("resource") || body.get("in").is_some() {
                    return self.fail("`is` other than `resource is T`");
                }
                Ok(if body["entity_type"].as_str() == Some(self.resource) {
                    Cond::True
                } else {
                    Cond::False
                })
            }
            "in" => self.membership(&body["left"], &body["right"]),
            "contains" | "containsAny" | "containsAll" => {
                let Some((attr, Ty::Set(elem), _)) = self.resource_attr(&body["left"]) else {
                    return self.fail(format!("`{op}` on something other than a set attribute"));
                };
                let items: Vec<&Json> = match (op.as_str(), &body["right"]) {
                    ("contains", item) => vec![item],
                    (_, r) => match r.get("Set").and_then(Json::as_array) {
                        Some(items) => items.iter().collect(),
                        None => match r["Value"].as_array() {
                            Some(_) => vec![r],
                            None => {
                                return self
                                    .fail(format!("`{op}` of something other than a literal set"))
                            }
                        },
                    },
                };
                let mut values = Vec::new();
                for item in items {
                    match item["Value"].as_array() {
                        Some(list) => {
                            for v in list {
                                values.extend(
                                    self.literal(&serde_json::json!({ "Value": v }), &elem)?,
                                );
                            }
                        }
                        None => values.extend(self.literal(item, &elem)?),
                    }
                }
                Ok(match op.as_str() {
                    "containsAll" => Cond::and(
                        values
                            .into_iter()
                            .map(|v| Cond::ContainsAny {
                                attr: attr.clone(),
                                values: vec![v],
                            })
                            .collect(),
                    ),
                    _ => Cond::ContainsAny { attr, values }.simplified(),
                })
            }
            other => self.fail(format!("`{other}`")),
        }
    }

    fn compare(&self, attr: String, cmp: Cmp, v: &Json) -> Result<Cond, Untranslatable> {
        match v["Value"].as_i64() {
            Some(value) => Ok(Cond::Compare { attr, cmp, value }),
            None => self.fail("a comparison with something other than a number"),
        }
    }

    fn equality(&self, l: &Json, r: &Json) -> Result<Cond, Untranslatable> {
        let (attr, ty, lit) = match (self.resource_attr(l), self.resource_attr(r)) {
            (Some((a, t, _)), None) => (a, t, r),
            (None, Some((a, t, _))) => (a, t, l),
            _ => {
                return self.fail("`==` other than a resource attribute against a literal");
            }
        };
        if matches!(
            ty,
            Ty::Set(_) | Ty::Record(_) | Ty::Extension(_) | Ty::Unknown
        ) {
            return self.fail(format!("`==` on the {ty:?} attribute {attr}"));
        }
        Ok(match self.literal(lit, &ty)? {
            Some(value) => Cond::Eq { attr, value },
            None => Cond::False,
        })
    }

    /// `E in resource.attr`: the attribute (an entity, or a set of them)
    /// holds E or one of E's ancestors.
    fn membership(&self, l: &Json, r: &Json) -> Result<Cond, Untranslatable> {
        let Some((ty, id)) = entity(l) else {
            return self.fail("`in` with something other than a known entity on its left");
        };
        let Some((attr, attr_ty, _)) = self.resource_attr(r) else {
            return self.fail("`in` with something other than a resource attribute on its right");
        };
        let mut candidates = vec![(ty.clone(), id.clone())];
        candidates.extend((self.ancestors)(&ty, &id));
        let pick = |target: &str| -> Vec<Value> {
            candidates
                .iter()
                .filter(|(t, _)| t == target)
                .map(|(_, id)| Value::String(id.clone()))
                .collect()
        };
        match attr_ty {
            Ty::Set(elem) => match *elem {
                Ty::Entity(target) => Ok(Cond::ContainsAny {
                    attr,
                    values: pick(&target),
                }
                .simplified()),
                _ => self.fail(format!("`in` on the set attribute {attr} of non-entities")),
            },
            Ty::Entity(target) => Ok(Cond::In {
                attr,
                values: pick(&target),
            }
            .simplified()),
            other => self.fail(format!("`in` on the {other:?} attribute {attr}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(attr: &str, v: &str) -> Cond {
        Cond::Eq {
            attr: attr.into(),
            value: Value::String(v.into()),
        }
    }

    #[test]
    fn simplification_folds_flattens_and_pushes_negations_down() {
        let a = eq("visibility", "public");
        let b = eq("owner", "bob");
        assert_eq!(Cond::and(vec![Cond::True, a.clone()]), a);
        assert_eq!(Cond::or(vec![Cond::False, Cond::False]), Cond::False);
        assert_eq!(Cond::and(vec![a.clone(), Cond::False]), Cond::False);
        assert_eq!(
            Cond::and(vec![Cond::and(vec![a.clone(), b.clone()]), a.clone()]),
            Cond::And {
                args: vec![b.clone(), a.clone()]
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
        );
        assert_eq!(
            Cond::not(Cond::Compare {
                attr: "c".into(),
                cmp: Cmp::Gt,
                value: 1
            }),
            Cond::Compare {
                attr: "c".into(),
                cmp: Cmp::Le,
                value: 1
            }
        );
        assert_eq!(
            Cond::not(Cond::Eq {
                attr: "deleted".into(),
                value: Value::Bool(true)
            }),
            Cond::Eq {
                attr: "deleted".into(),
                value: Value::Bool(false)
            }
        );
        assert_eq!(Cond::not(Cond::not(a.clone())), a);
        assert_eq!(
            Cond::not(Cond::or(vec![a.clone(), b.clone()])),
            Cond::and(vec![Cond::not(a.clone()), Cond::not(b.clone())])
        );
    }

    #[test]
    fn cnf_distributes_or_over_and() {
        let (a, b, c) = (eq("x", "a"), eq("x", "b"), eq("x", "c"));
        let f = Cond::or(vec![a.clone(), Cond::and(vec![b.clone(), c.clone()])]);
        let cnf = f.cnf(10).unwrap();
        assert_eq!(cnf.len(), 2);
        assert!(cnf.contains(&vec![a.clone(), b.clone()]));
        assert!(cnf.contains(&vec![a.clone(), c.clone()]));
        // Too many clauses: refused, not truncated.
        let wide = Cond::or(
            (0..6)
                .map(|i| Cond::and(vec![eq("p", &i.to_string()), eq("q", &i.to_string())]))
                .collect(),
        );
        assert!(wide.cnf(10).is_none());
    }
}
