//! The schema's types as the tools on top of the policies read them (the
//! fail-closed check, search planning): each entity type's attributes with
//! their types, which types an entity may be a member of, and the types the
//! actions apply to. Read from the schema in Cedar's JSON form, which
//! `cedar-policy` produces ([`super::schema_json`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// An attribute's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Long,
    String,
    /// An entity of this type (qualified name).
    Entity(String),
    Set(Box<Ty>),
    /// A record: its attributes with (type, required).
    Record(BTreeMap<String, (Ty, bool)>),
    /// An extension type (`ipaddr`, `decimal`, …).
    Extension(String),
    Unknown,
}

/// One entity type: its attributes and the types it may be a member of.
#[derive(Debug, Clone, Default)]
pub struct EntityType {
    pub attrs: BTreeMap<String, (Ty, bool)>,
    pub member_of: BTreeSet<String>,
}

/// Every entity type of the schema, and the principal and resource types
/// its actions apply to.
#[derive(Debug, Clone, Default)]
pub struct SchemaTypes {
    pub entities: HashMap<String, EntityType>,
    pub principals: BTreeSet<String>,
    pub resources: BTreeSet<String>,
}

fn qualify(ns: &str, name: &str) -> String {
    if ns.is_empty() || name.contains("::") {
        name.to_string()
    } else {
        format!("{ns}::{name}")
    }
}

const EXTENSIONS: [&str; 4] = ["ipaddr", "decimal", "datetime", "duration"];

impl SchemaTypes {
    /// From the schema in Cedar's JSON form.
    pub fn from_json(json: &Value) -> Self {
        let mut t = SchemaTypes::default();
        for (ns, body) in json.as_object().into_iter().flatten() {
            let names: BTreeSet<&str> = body["entityTypes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, _)| n.as_str())
                .collect();
            let scope = Scope {
                ns,
                common: &body["commonTypes"],
                entities: &names,
            };
            for (name, entity) in body["entityTypes"].as_object().into_iter().flatten() {
                let attrs = match scope.ty(&entity["shape"], 0) {
                    Ty::Record(a) => a,
                    _ => BTreeMap::new(),
                };
                let member_of = entity["memberOfTypes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|n| qualify(ns, n))
                    .collect();
                t.entities
                    .insert(qualify(ns, name), EntityType { attrs, member_of });
            }
            for (_, action) in body["actions"].as_object().into_iter().flatten() {
                let applies = &action["appliesTo"];
                for (key, out) in [
                    ("principalTypes", &mut t.principals),
                    ("resourceTypes", &mut t.resources),
                ] {
                    for n in applies[key].as_array().into_iter().flatten() {
                        out.extend(n.as_str().map(|n| qualify(ns, n)));
                    }
                }
            }
        }
        t
    }

    /// The type and requiredness of attribute `attr` of entity type `ty`.
    pub fn attr(&self, ty: &str, attr: &str) -> Option<&(Ty, bool)> {
        self.entities.get(ty)?.attrs.get(attr)
    }
}

/// Where a type name is resolved: its namespace, the namespace's common
/// types and entity type names.
struct Scope<'a> {
    ns: &'a str,
    common: &'a Value,
    entities: &'a BTreeSet<&'a str>,
}

impl Scope<'_> {
    fn named(&self, name: &str, depth: usize) -> Ty {
        let bare = name.strip_prefix("__cedar::").unwrap_or(name);
        match bare {
            "Bool" | "Boolean" => Ty::Bool,
            "Long" => Ty::Long,
            "String" => Ty::String,
            e if EXTENSIONS.contains(&e) => Ty::Extension(e.to_string()),
            _ if self.common.get(name).is_some() => self.ty(&self.common[name], depth + 1),
            _ if self.entities.contains(name) || name.contains("::") => {
                Ty::Entity(qualify(self.ns, name))
            }
            _ => Ty::Unknown,
        }
    }

    fn ty(&self, v: &Value, depth: usize) -> Ty {
        if depth > 32 {
            return Ty::Unknown;
        }
        let name = v["name"].as_str().unwrap_or_default();
        match v["type"].as_str().unwrap_or_default() {
            "Record" => Ty::Record(
                v["attributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, a)| {
                        let required = a["required"].as_bool().unwrap_or(true);
                        (k.clone(), (self.ty(a, depth + 1), required))
                    })
                    .collect(),
            ),
            "Set" => Ty::Set(Box::new(self.ty(&v["element"], depth + 1))),
            "Entity" => Ty::Entity(qualify(self.ns, name)),
            "Extension" => Ty::Extension(name.to_string()),
            "EntityOrCommon" => self.named(name, depth),
            other => self.named(other, depth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::SchemaFragment;

    #[test]
    fn reads_the_shipped_schema() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cedargate.cedarschema"),
        )
        .unwrap();
        let (fragment, _) = SchemaFragment::from_cedarschema_str(&text).unwrap();
        let t = SchemaTypes::from_json(&fragment.to_json_value().unwrap());
        let doc = "CedarGate::Document";
        assert_eq!(t.attr(doc, "classification").unwrap().0, Ty::Long);
        assert_eq!(t.attr(doc, "deleted").unwrap().0, Ty::Bool);
        assert_eq!(t.attr(doc, "visibility").unwrap().0, Ty::String);
        assert_eq!(
            t.attr(doc, "tenant").unwrap().0,
            Ty::Entity("CedarGate::Tenant".into())
        );
        assert_eq!(
            t.attr(doc, "readerRoles").unwrap().0,
            Ty::Set(Box::new(Ty::Entity("CedarGate::Role".into())))
        );
        let Ty::Record(limits) = &t.attr("CedarGate::Tenant", "limits").unwrap().0 else {
            panic!("limits is a record")
        };
        assert_eq!(limits["maxDocuments"], (Ty::Long, true));
        assert_eq!(
            t.entities["CedarGate::User"].member_of,
            ["CedarGate::Role".to_string()].into()
        );
        assert!(t.resources.contains(doc) && t.principals.contains("CedarGate::User"));
    }
}
