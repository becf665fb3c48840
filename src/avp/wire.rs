//! The shapes of Amazon Verified Permissions' data-plane operations, as the
//! AWS API model (`verifiedpermissions` 2021-12-01, awsJson1_0) defines
//! them, and their translation into Cedar's JSON formats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A field that failed validation: `path` names it as AWS does
/// (`requests[3].principal.entityId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityIdentifier {
    pub entity_type: String,
    pub entity_id: String,
}

impl EntityIdentifier {
    fn check(&self, path: &str) -> Result<(), FieldError> {
        length(&format!("{path}.entityType"), &self.entity_type, 200)?;
        length(&format!("{path}.entityId"), &self.entity_id, 612)
    }

    /// `{"type": …, "id": …}`, Cedar's entity reference.
    pub fn cedar(&self) -> Value {
        json!({ "type": self.entity_type, "id": self.entity_id })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionIdentifier {
    pub action_type: String,
    pub action_id: String,
}

impl ActionIdentifier {
    fn check(&self, path: &str) -> Result<(), FieldError> {
        length(&format!("{path}.actionType"), &self.action_type, 200)?;
        if !(self.action_type == "Action" || self.action_type.ends_with("::Action")) {
            return Err(FieldError::new(
                format!("{path}.actionType"),
                "must be Action or end with ::Action",
            ));
        }
        length(&format!("{path}.actionId"), &self.action_id, 512)
    }

    pub fn cedar(&self) -> Value {
        json!({ "type": self.action_type, "id": self.action_id })
    }
}

fn length(path: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > max {
        return Err(FieldError::new(
            path,
            format!("must be 1 to {max} characters long"),
        ));
    }
    Ok(())
}

/// The `AttributeValue` union: exactly one member is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_identifier: Option<EntityIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<AttributeValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<BTreeMap<String, AttributeValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipaddr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decimal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datetime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// Deepest nesting of sets and records accepted.
const MAX_DEPTH: usize = 32;

impl AttributeValue {
    /// The value in Cedar's JSON value format (`__entity`, `__extn`).
    pub fn cedar(&self, path: &str) -> Result<Value, FieldError> {
        self.cedar_at(path, 0)
    }

    fn cedar_at(&self, path: &str, depth: usize) -> Result<Value, FieldError> {
        if depth > MAX_DEPTH {
            return Err(FieldError::new(path, "nested too deeply"));
        }
        let extn = |f: &str, arg: &str| json!({ "__extn": { "fn": f, "arg": arg } });
        let mut out = Vec::with_capacity(1);
        if let Some(b) = self.boolean {
            out.push(Value::Bool(b));
        }
        if let Some(e) = &self.entity_identifier {
            e.check(&format!("{path}.entityIdentifier"))?;
            out.push(json!({ "__entity": e.cedar() }));
        }
        if let Some(n) = self.long {
            out.push(json!(n));
        }
        if let Some(s) = &self.string {
            out.push(json!(s));
        }
        if let Some(items) = &self.set {
            let items = items
                .iter()
                .enumerate()
                .map(|(i, v)| v.cedar_at(&format!("{path}.set[{i}]"), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Value::Array(items));
        }
        if let Some(fields) = &self.record {
            out.push(record(fields, &format!("{path}.record"), depth + 1)?);
        }
        if let Some(s) = &self.ipaddr {
            out.push(extn("ip", s));
        }
        if let Some(s) = &self.decimal {
            out.push(extn("decimal", s));
        }
        if let Some(s) = &self.datetime {
            out.push(extn("datetime", s));
        }
        if let Some(s) = &self.duration {
            out.push(extn("duration", s));
        }
        match out.len() {
            1 => Ok(out.pop().unwrap_or(Value::Null)),
            0 => Err(FieldError::new(path, "no member of the union is set")),
            _ => Err(FieldError::new(
                path,
                "more than one member of the union is set",
            )),
        }
    }
}

fn record(
    fields: &BTreeMap<String, AttributeValue>,
    path: &str,
    depth: usize,
) -> Result<Value, FieldError> {
    let mut map = serde_json::Map::with_capacity(fields.len());
    for (k, v) in fields {
        map.insert(k.clone(), v.cedar_at(&format!("{path}.{k}"), depth)?);
    }
    Ok(Value::Object(map))
}

/// `ContextDefinition`: a map of attribute values or Cedar JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_map: Option<BTreeMap<String, AttributeValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cedar_json: Option<String>,
}

impl ContextDefinition {
    /// The context as a Cedar JSON record.
    pub fn cedar(&self, path: &str) -> Result<Value, FieldError> {
        match (&self.context_map, &self.cedar_json) {
            (Some(map), None) => record(map, &format!("{path}.contextMap"), 0),
            (None, Some(text)) => {
                let v: Value = serde_json::from_str(text).map_err(|e| {
                    FieldError::new(format!("{path}.cedarJson"), format!("not JSON: {e}"))
                })?;
                if !v.is_object() {
                    return Err(FieldError::new(
                        format!("{path}.cedarJson"),
                        "must be a JSON object",
                    ));
                }
                Ok(v)
            }
            (None, None) => Ok(json!({})),
            (Some(_), Some(_)) => Err(FieldError::new(
                path,
                "give one of contextMap and cedarJson",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityItem {
    pub identifier: EntityIdentifier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, AttributeValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<EntityIdentifier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, AttributeValue>>,
}

/// `EntitiesDefinition`: a list of entities or Cedar JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitiesDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_list: Option<Vec<EntityItem>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cedar_json: Option<String>,
}

impl EntitiesDefinition {
    /// The entities as Cedar's entity JSON (an array).
    pub fn cedar(&self, path: &str) -> Result<Value, FieldError> {
        match (&self.entity_list, &self.cedar_json) {
            (Some(list), None) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, e) in list.iter().enumerate() {
                    let at = format!("{path}.entityList[{i}]");
                    e.identifier.check(&format!("{at}.identifier"))?;
                    let attrs = match &e.attributes {
                        Some(a) => record(a, &format!("{at}.attributes"), 0)?,
                        None => json!({}),
                    };
                    let tags = match &e.tags {
                        Some(t) => record(t, &format!("{at}.tags"), 0)?,
                        None => json!({}),
                    };
                    let parents: Vec<Value> = e
                        .parents
                        .iter()
                        .flatten()
                        .map(EntityIdentifier::cedar)
                        .collect();
                    out.push(json!({
                        "uid": e.identifier.cedar(),
                        "attrs": attrs,
                        "parents": parents,
                        "tags": tags,
                    }));
                }
                Ok(Value::Array(out))
            }
            (None, Some(text)) => {
                let v: Value = serde_json::from_str(text).map_err(|e| {
                    FieldError::new(format!("{path}.cedarJson"), format!("not JSON: {e}"))
                })?;
                if !v.is_array() {
                    return Err(FieldError::new(
                        format!("{path}.cedarJson"),
                        "must be a JSON array of entities",
                    ));
                }
                Ok(v)
            }
            (None, None) => Ok(json!([])),
            (Some(_), Some(_)) => Err(FieldError::new(
                path,
                "give one of entityList and cedarJson",
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsAuthorizedInput {
    pub policy_store_id: String,
    pub principal: Option<EntityIdentifier>,
    pub action: Option<ActionIdentifier>,
    pub resource: Option<EntityIdentifier>,
    pub context: Option<ContextDefinition>,
    pub entities: Option<EntitiesDefinition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchIsAuthorizedInputItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<EntityIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<EntityIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextDefinition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchIsAuthorizedInput {
    pub policy_store_id: String,
    pub entities: Option<EntitiesDefinition>,
    pub requests: Vec<BatchIsAuthorizedInputItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsAuthorizedWithTokenInput {
    pub policy_store_id: String,
    pub identity_token: Option<String>,
    pub access_token: Option<String>,
    pub action: Option<ActionIdentifier>,
    pub resource: Option<EntityIdentifier>,
    pub context: Option<ContextDefinition>,
    pub entities: Option<EntitiesDefinition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchIsAuthorizedWithTokenInputItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<EntityIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextDefinition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchIsAuthorizedWithTokenInput {
    pub policy_store_id: String,
    pub identity_token: Option<String>,
    pub access_token: Option<String>,
    pub entities: Option<EntitiesDefinition>,
    pub requests: Vec<BatchIsAuthorizedWithTokenInputItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeterminingPolicy {
    pub policy_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationError {
    pub error_description: String,
}

/// What every authorization output holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub decision: Decision,
    pub determining_policies: Vec<DeterminingPolicy>,
    pub errors: Vec<EvaluationError>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemOutput<R> {
    pub request: R,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Checks a policy store id as the API model constrains it.
pub fn check_store_id(id: &str) -> Result<(), FieldError> {
    length("policyStoreId", id, 200)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_'))
    {
        return Err(FieldError::new(
            "policyStoreId",
            "must match [a-zA-Z0-9-/_]*",
        ));
    }
    Ok(())
}

/// The path of field `f` of the request at `path` (`""` for the top).
pub fn field(path: &str, f: &str) -> String {
    if path.is_empty() {
        f.to_string()
    } else {
        format!("{path}.{f}")
    }
}

/// Checks the identifiers of one request.
pub fn check_request(
    path: &str,
    principal: Option<&EntityIdentifier>,
    action: Option<&ActionIdentifier>,
    resource: Option<&EntityIdentifier>,
) -> Result<(), FieldError> {
    let at = |f: &str| field(path, f);
    if let Some(p) = principal {
        p.check(&at("principal"))?;
    }
    match action {
        Some(a) => a.check(&at("action"))?,
        None => return Err(FieldError::new(at("action"), "is required")),
    }
    match resource {
        Some(r) => r.check(&at("resource")),
        None => Err(FieldError::new(at("resource"), "is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: Value) -> AttributeValue {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_member_of_the_union_translates() {
        let cases = [
            (json!({"boolean": true}), json!(true)),
            (json!({"long": -3}), json!(-3)),
            (json!({"string": "x"}), json!("x")),
            (
                json!({"entityIdentifier": {"entityType": "A::User", "entityId": "u"}}),
                json!({"__entity": {"type": "A::User", "id": "u"}}),
            ),
            (
                json!({"set": [{"long": 1}, {"string": "s"}]}),
                json!([1, "s"]),
            ),
            (
                json!({"record": {"a": {"boolean": false}}}),
                json!({"a": false}),
            ),
            (
                json!({"ipaddr": "10.0.0.0/8"}),
                json!({"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}}),
            ),
            (
                json!({"decimal": "1.5"}),
                json!({"__extn": {"fn": "decimal", "arg": "1.5"}}),
            ),
            (
                json!({"datetime": "2026-01-01"}),
                json!({"__extn": {"fn": "datetime", "arg": "2026-01-01"}}),
            ),
            (
                json!({"duration": "1h"}),
                json!({"__extn": {"fn": "duration", "arg": "1h"}}),
            ),
        ];
        for (wire, cedar) in cases {
            assert_eq!(value(wire.clone()).cedar("v").unwrap(), cedar, "{wire}");
            // And back out unchanged (batch results echo the request).
            assert_eq!(serde_json::to_value(value(wire.clone())).unwrap(), wire);
        }
    }

    #[test]
    fn a_union_needs_exactly_one_member() {
        let e = value(json!({})).cedar("context.contextMap.a").unwrap_err();
        assert_eq!(e.path, "context.contextMap.a");
        let e = value(json!({"long": 1, "string": "x"}))
            .cedar("v")
            .unwrap_err();
        assert!(e.message.contains("more than one"));
        let e = value(json!({"set": [{"long": 1}, {}]}))
            .cedar("v")
            .unwrap_err();
        assert_eq!(e.path, "v.set[1]");
    }

    #[test]
    fn store_ids_and_identifiers_are_checked() {
        assert!(check_store_id("PSEXAMPLEabcdefg111111").is_ok());
        assert!(check_store_id("").is_err());
        assert!(check_store_id("a b").is_err());
        let action = ActionIdentifier {
            action_type: "MyApp::Thing".into(),
            action_id: "x".into(),
        };
        let e = check_request("requests[2]", None, Some(&action), None).unwrap_err();
        assert_eq!(e.path, "requests[2].action.actionType");
    }
}
