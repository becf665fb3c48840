//! The attribute contract between cedargate and a search index: which of a
//! document's Cedar attributes are indexed, under which field names, with
//! which types; a document's values for the indexer; and the index
//! configuration (Kendra metadata fields, an OpenSearch mapping, SQL
//! tables). Values come from the same Cedar entity the policies see, so
//! the index and the decisions cannot read a document differently.

use std::collections::BTreeMap;

use cedar_policy::{Entity, EvalResult};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::policy::types::{SchemaTypes, Ty};

/// `[search]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Field names are this prefix and the attribute in snake case
    /// (`readerRoles` → `cg_reader_roles`) unless `fields` names them.
    #[serde(default = "default_prefix")]
    pub field_prefix: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Every plan is scoped to the caller's tenant and to live documents
    /// through these attributes, whatever the policies say.
    #[serde(default = "default_tenant_attribute")]
    pub tenant_attribute: String,
    #[serde(default = "default_deleted_attribute")]
    pub deleted_attribute: String,
    /// The relational layout the SQL filter is written for.
    #[serde(default)]
    pub sql: SqlConfig,
    /// Forward-auth answers to `Search` routes carry the plan's filter in
    /// this format (`x-cedargate-search-filter`); none: no header.
    pub forward_auth_filter: Option<FilterFormat>,
    /// The largest header value forward-auth sends; a larger filter denies.
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    /// Plans remembered by everything they depend on.
    #[serde(default = "default_plan_capacity")]
    pub plan_capacity: usize,
}

/// The tables a SQL filter reads: one row per document with its
/// single-valued attributes, and one row per value of its set attributes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    #[serde(default = "default_table")]
    pub table: String,
    #[serde(default = "default_id_column")]
    pub id_column: String,
    #[serde(default = "default_values_table")]
    pub values_table: String,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            table: default_table(),
            id_column: default_id_column(),
            values_table: default_values_table(),
        }
    }
}

/// A filter format a caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterFormat {
    Kendra,
    Opensearch,
    Sql,
}

fn default_prefix() -> String {
    "cg_".into()
}
fn default_tenant_attribute() -> String {
    "tenant".into()
}
fn default_deleted_attribute() -> String {
    "deleted".into()
}
/// Below nginx's default `proxy_buffer_size` (4 KiB), which must hold all
/// of the auth answer's headers.
fn default_max_header() -> usize {
    3 * 1024
}
fn default_plan_capacity() -> usize {
    4096
}
fn default_table() -> String {
    "documents".into()
}
fn default_id_column() -> String {
    "document_id".into()
}
fn default_values_table() -> String {
    "document_values".into()
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            field_prefix: default_prefix(),
            fields: BTreeMap::new(),
            tenant_attribute: default_tenant_attribute(),
            deleted_attribute: default_deleted_attribute(),
            sql: SqlConfig::default(),
            forward_auth_filter: None,
            max_header_bytes: default_max_header(),
            plan_capacity: default_plan_capacity(),
        }
    }
}

fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

impl SearchConfig {
    /// Names that are safe as field names and SQL identifiers; the scoping
    /// attributes exist.
    pub fn check(&self) -> Result<(), String> {
        let sql = [&self.sql.table, &self.sql.id_column, &self.sql.values_table];
        for name in self.fields.values().chain(sql).chain([&self.field_prefix]) {
            if !name.is_empty() && !identifier(name) {
                return Err(format!(
                    "search: {name:?} is not a field name (letters, digits, _; at most 63)"
                ));
            }
        }
        Ok(())
    }

    /// The field of attribute `attr`.
    pub fn field(&self, attr: &str) -> String {
        if let Some(f) = self.fields.get(attr) {
            return f.clone();
        }
        let mut out = self.field_prefix.clone();
        for c in attr.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// How an attribute is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Long,
    Bool,
    /// A list of strings (a set of entities or strings).
    StringList,
}

/// One indexed attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub attr: String,
    pub name: String,
    pub kind: Kind,
}

/// Every indexed attribute of a resource type, by attribute name.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub BTreeMap<String, Field>);

impl Fields {
    /// The indexable attributes of `resource` (strings, numbers, booleans,
    /// entities, and sets of strings or entities; records and extension
    /// values are not indexed).
    pub fn new(config: &SearchConfig, types: &SchemaTypes, resource: &str) -> Self {
        let mut out = BTreeMap::new();
        let attrs = types.entities.get(resource).map(|e| &e.attrs);
        for (attr, (ty, _)) in attrs.into_iter().flatten() {
            let kind = match ty {
                Ty::String | Ty::Entity(_) => Kind::String,
                Ty::Long => Kind::Long,
                Ty::Bool => Kind::Bool,
                Ty::Set(elem) if matches!(**elem, Ty::String | Ty::Entity(_)) => Kind::StringList,
                _ => continue,
            };
            out.insert(
                attr.clone(),
                Field {
                    attr: attr.clone(),
                    name: config.field(attr),
                    kind,
                },
            );
        }
        Fields(out)
    }

    pub fn get(&self, attr: &str) -> Option<&Field> {
        self.0.get(attr)
    }

    /// A document's indexed values, read from its Cedar entity: entities as
    /// their ids, booleans as booleans.
    pub fn values(&self, entity: &Entity) -> BTreeMap<String, Json> {
        let scalar = |r: &EvalResult| -> Option<Json> {
            Some(match r {
                EvalResult::Bool(b) => json!(b),
                EvalResult::Long(n) => json!(n),
                EvalResult::String(s) => json!(s),
                EvalResult::EntityUid(u) => json!(u.id().unescaped()),
                _ => return None,
            })
        };
        let mut out = BTreeMap::new();
        for f in self.0.values() {
            let Some(Ok(v)) = entity.attr(&f.attr) else {
                continue;
            };
            let value = match (&v, f.kind) {
                (EvalResult::Set(items), Kind::StringList) => {
                    let mut list: Vec<Json> = items.iter().filter_map(scalar).collect();
                    list.sort_by_key(Json::to_string);
                    Json::Array(list)
                }
                (other, _) => match scalar(other) {
                    Some(v) => v,
                    None => continue,
                },
            };
            out.insert(f.name.clone(), value);
        }
        out
    }

    /// The document as Kendra's `Attributes` of `BatchPutDocument`.
    pub fn kendra_attributes(&self, entity: &Entity) -> Json {
        let values = self.values(entity);
        let attrs: Vec<Json> = self
            .0
            .values()
            .filter_map(|f| {
                let v = values.get(&f.name)?;
                Some(json!({ "Key": f.name, "Value": kendra_value(f.kind, v) }))
            })
            .collect();
        Json::Array(attrs)
    }

    /// Kendra's `DocumentMetadataConfigurationUpdates` for `UpdateIndex`:
    /// the fields, typed, used for filtering only.
    pub fn kendra_index_config(&self) -> Json {
        let fields: Vec<Json> = self
            .0
            .values()
            .map(|f| {
                json!({
                    "Name": f.name,
                    "Type": match f.kind {
                        Kind::Long => "LONG_VALUE",
                        Kind::StringList => "STRING_LIST_VALUE",
                        Kind::String | Kind::Bool => "STRING_VALUE",
                    },
                    "Search": {"Facetable": false, "Searchable": false, "Displayable": false, "Sortable": false},
                })
            })
            .collect();
        json!({ "DocumentMetadataConfigurationUpdates": fields })
    }

    /// An OpenSearch mapping of the fields (keywords match exactly).
    pub fn opensearch_mapping(&self) -> Json {
        let props: serde_json::Map<String, Json> = self
            .0
            .values()
            .map(|f| {
                let ty = match f.kind {
                    Kind::Long => "long",
                    Kind::Bool => "boolean",
                    Kind::String | Kind::StringList => "keyword",
                };
                (f.name.clone(), json!({ "type": ty }))
            })
            .collect();
        json!({ "mappings": { "properties": props } })
    }

    /// The SQL tables a SQL filter reads (portable DDL): documents keyed by
    /// tenant and id, set values keyed the same way.
    pub fn sql_ddl(&self, sql: &SqlConfig, tenant_field: &str) -> String {
        let mut cols = vec![format!("  \"{}\" VARCHAR(128) NOT NULL", sql.id_column)];
        for f in self.0.values().filter(|f| f.kind != Kind::StringList) {
            let ty = match f.kind {
                Kind::Long => "BIGINT",
                Kind::Bool => "SMALLINT",
                _ => "VARCHAR(256)",
            };
            cols.push(format!("  \"{}\" {ty} NOT NULL", f.name));
        }
        cols.push(format!(
            "  PRIMARY KEY (\"{tenant_field}\", \"{}\")",
            sql.id_column
        ));
        format!(
            "CREATE TABLE \"{t}\" (\n{cols}\n);\nCREATE TABLE \"{v}\" (\n  \"tenant\" VARCHAR(128) NOT NULL,\n  \"document_id\" VARCHAR(128) NOT NULL,\n  \"attribute\" VARCHAR(64) NOT NULL,\n  \"value\" VARCHAR(256) NOT NULL\n);\nCREATE INDEX \"{v}_by_document\" ON \"{v}\" (\"tenant\", \"document_id\", \"attribute\", \"value\");\n",
            t = sql.table,
            v = sql.values_table,
            cols = cols.join(",\n"),
        )
    }
}

/// A value as a Kendra `DocumentAttributeValue` (booleans as the strings
/// `true` and `false`: Kendra has no boolean type).
pub fn kendra_value(kind: Kind, v: &Json) -> Json {
    match (kind, v) {
        (Kind::Long, v) => json!({ "LongValue": v }),
        (Kind::StringList, Json::Array(items)) => json!({ "StringListValue": items }),
        (Kind::StringList, v) => json!({ "StringListValue": [v] }),
        (_, Json::Bool(b)) => json!({ "StringValue": b.to_string() }),
        (_, Json::String(s)) => json!({ "StringValue": s }),
        (_, other) => json!({ "StringValue": other.to_string() }),
    }
}
