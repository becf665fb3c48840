//! A plan's condition as the filters search services take: Amazon Kendra's
//! `AttributeFilter`, an OpenSearch `bool` query, a SQL `WHERE` fragment
//! with bound parameters. Each renders the condition exactly or fails.

use serde::Serialize;
use serde_json::{json, Value as Json};

use super::condition::{Cmp, Cond, Value};
use super::fields::{kendra_value, Fields, Kind, SqlConfig};

/// Why a condition cannot be rendered in a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::Long(n) => json!(n),
        Value::String(s) => json!(s),
    }
}

fn field<'a>(fields: &'a Fields, attr: &str) -> Result<&'a super::fields::Field, RenderError> {
    fields
        .get(attr)
        .ok_or_else(|| RenderError(format!("the attribute {attr} is not indexed")))
}

/// Kendra allows two levels of `AndAllFilters`/`OrAllFilters`/`NotFilter`
/// and ten filters a list ("AttributeFilter cannot have a depth of more
/// than 2", "… a length of more than 10"; Kendra API reference,
/// AttributeFilter).
pub const KENDRA_MAX_DEPTH: usize = 2;
pub const KENDRA_MAX_LIST: usize = 10;

fn kendra_leaf(fields: &Fields, c: &Cond) -> Result<Vec<Json>, RenderError> {
    let attr = |key: &str, op: &str, kind: Kind, v: Json| {
        let mut f = serde_json::Map::new();
        f.insert(
            op.into(),
            json!({ "Key": key, "Value": kendra_value(kind, &v) }),
        );
        Json::Object(f)
    };
    Ok(match c {
        Cond::Eq { attr: a, value } => {
            let f = field(fields, a)?;
            vec![attr(&f.name, "EqualsTo", f.kind, value_json(value))]
        }
        // A single-valued attribute in a list: one EqualsTo each (OR-ed
        // by the clause the leaf sits in); ContainsAny is for lists only.
        Cond::In { attr: a, values } => {
            let f = field(fields, a)?;
            values
                .iter()
                .map(|v| attr(&f.name, "EqualsTo", f.kind, value_json(v)))
                .collect()
        }
        Cond::ContainsAny { attr: a, values } => {
            let f = field(fields, a)?;
            let list = Json::Array(values.iter().map(value_json).collect());
            vec![attr(&f.name, "ContainsAny", Kind::StringList, list)]
        }
        Cond::Compare {
            attr: a,
            cmp,
            value,
        } => {
            let f = field(fields, a)?;
            let op = match cmp {
                Cmp::Lt => "LessThan",
                Cmp::Le => "LessThanOrEquals",
                Cmp::Gt => "GreaterThan",
                Cmp::Ge => "GreaterThanOrEquals",
            };
            vec![attr(&f.name, op, Kind::Long, json!(value))]
        }
        Cond::Not { arg } => {
            let inner = kendra_leaf(fields, arg)?;
            match inner.as_slice() {
                [one] => vec![json!({ "NotFilter": one })],
                _ => vec![json!({ "NotFilter": { "OrAllFilters": inner } })],
            }
        }
        other => return Err(RenderError(format!("{other:?} is not a Kendra leaf"))),
    })
}

fn depth(f: &Json) -> usize {
    let Some((k, v)) = f.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match k.as_str() {
        "AndAllFilters" | "OrAllFilters" => {
            1 + v
                .as_array()
                .into_iter()
                .flatten()
                .map(depth)
                .max()
                .unwrap_or(0)
        }
        "NotFilter" => 1 + depth(v),
        _ => 0,
    }
}

fn longest_list(f: &Json) -> usize {
    let Some((k, v)) = f.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match k.as_str() {
        "AndAllFilters" | "OrAllFilters" => {
            let items = v.as_array().map_or(&[][..], Vec::as_slice);
            items.iter().map(longest_list).fold(items.len(), usize::max)
        }
        "NotFilter" => longest_list(v),
        _ => 0,
    }
}

/// Kendra's `AttributeFilter`: the condition as an AND of ORs, within
/// Kendra's depth and length limits.
pub fn kendra(cond: &Cond, fields: &Fields) -> Result<Json, RenderError> {
    let too_big = || {
        RenderError(format!(
            "the filter needs more than Kendra's {KENDRA_MAX_LIST} filters a list or {KENDRA_MAX_DEPTH} levels"
        ))
    };
    let clauses = cond.cnf(KENDRA_MAX_LIST).ok_or_else(too_big)?;
    let mut rendered = Vec::new();
    for clause in &clauses {
        let mut leaves = Vec::new();
        for lit in clause {
            leaves.extend(kendra_leaf(fields, lit)?);
        }
        rendered.push(match leaves.len() {
            0 => return Err(RenderError("an empty clause (nothing can match)".into())),
            1 => leaves.remove(0),
            _ => json!({ "OrAllFilters": leaves }),
        });
    }
    let filter = match rendered.len() {
        0 => return Err(RenderError("no condition (everything matches)".into())),
        1 => rendered.remove(0),
        _ => json!({ "AndAllFilters": rendered }),
    };
    if depth(&filter) > KENDRA_MAX_DEPTH || longest_list(&filter) > KENDRA_MAX_LIST {
        return Err(too_big());
    }
    Ok(filter)
}

/// An OpenSearch query (`bool` with `filter`, `should`, `must_not`;
/// `term`, `terms`, `range`), over keyword, long and boolean fields.
pub fn opensearch(cond: &Cond, fields: &Fields) -> Result<Json, RenderError> {
    Ok(match cond {
        Cond::True => json!({ "match_all": {} }),
        Cond::False => json!({ "match_none": {} }),
        Cond::And { args } => {
            let q: Result<Vec<Json>, _> = args.iter().map(|a| opensearch(a, fields)).collect();
            json!({ "bool": { "filter": q? } })
        }
        Cond::Or { args } => {
            let q: Result<Vec<Json>, _> = args.iter().map(|a| opensearch(a, fields)).collect();
            json!({ "bool": { "should": q?, "minimum_should_match": 1 } })
        }
        Cond::Not { arg } => json!({ "bool": { "must_not": [opensearch(arg, fields)?] } }),
        Cond::Eq { attr, value } => {
            json!({ "term": { field(fields, attr)?.name.clone(): value_json(value) } })
        }
        Cond::In { attr, values } | Cond::ContainsAny { attr, values } => {
            let list: Vec<Json> = values.iter().map(value_json).collect();
            json!({ "terms": { field(fields, attr)?.name.clone(): list } })
        }
        Cond::Compare { attr, cmp, value } => {
            let op = match cmp {
                Cmp::Lt => "lt",
                Cmp::Le => "lte",
                Cmp::Gt => "gt",
                Cmp::Ge => "gte",
            };
            json!({ "range": { field(fields, attr)?.name.clone(): { op: value } } })
        }
    })
}

/// A SQL `WHERE` fragment and its parameters (`?` placeholders, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlFilter {
    #[serde(rename = "where")]
    pub where_: String,
    pub params: Vec<Json>,
}

/// A parameter as SQL binds it: booleans as 0 and 1.
fn sql_param(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(i64::from(*b)),
        other => value_json(other),
    }
}

/// The SQL `WHERE` fragment over the tables of [`Fields::sql_ddl`].
pub fn sql(
    cond: &Cond,
    fields: &Fields,
    config: &SqlConfig,
    tenant_attr: &str,
) -> Result<SqlFilter, RenderError> {
    let mut params = Vec::new();
    let where_ = sql_expr(cond, fields, config, tenant_attr, &mut params)?;
    Ok(SqlFilter { where_, params })
}

fn sql_expr(
    cond: &Cond,
    fields: &Fields,
    cfg: &SqlConfig,
    tenant_attr: &str,
    params: &mut Vec<Json>,
) -> Result<String, RenderError> {
    let col = |attr: &str| -> Result<String, RenderError> {
        Ok(format!(
            "\"{}\".\"{}\"",
            cfg.table,
            field(fields, attr)?.name
        ))
    };
    let join = |args: &[Cond], op: &str, params: &mut Vec<Json>| -> Result<String, RenderError> {
        let parts: Result<Vec<String>, _> = args
            .iter()
            .map(|a| sql_expr(a, fields, cfg, tenant_attr, params))
            .collect();
        Ok(format!("({})", parts?.join(op)))
    };
    Ok(match cond {
        Cond::True => "1 = 1".into(),
        Cond::False => "1 = 0".into(),
        Cond::And { args } => join(args, " AND ", params)?,
        Cond::Or { args } => join(args, " OR ", params)?,
        Cond::Not { arg } => format!("NOT ({})", sql_expr(arg, fields, cfg, tenant_attr, params)?),
        Cond::Eq { attr, value } => {
            params.push(sql_param(value));
            format!("{} = ?", col(attr)?)
        }
        Cond::In { attr, values } => {
            params.extend(values.iter().map(sql_param));
            format!("{} IN ({})", col(attr)?, vec!["?"; values.len()].join(", "))
        }
        Cond::ContainsAny { attr, values } => {
            let f = field(fields, attr)?;
            params.push(json!(f.name));
            params.extend(values.iter().map(sql_param));
            format!(
                "EXISTS (SELECT 1 FROM \"{v}\" WHERE \"{v}\".\"tenant\" = {tenant} AND \"{v}\".\"document_id\" = \"{t}\".\"{id}\" AND \"{v}\".\"attribute\" = ? AND \"{v}\".\"value\" IN ({list}))",
                v = cfg.values_table,
                t = cfg.table,
                id = cfg.id_column,
                tenant = col(tenant_attr)?,
                list = vec!["?"; values.len()].join(", "),
            )
        }
        Cond::Compare { attr, cmp, value } => {
            params.push(json!(value));
            let op = match cmp {
                Cmp::Lt => "<",
                Cmp::Le => "<=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
            };
            format!("{} {op} ?", col(attr)?)
        }
    })
}
