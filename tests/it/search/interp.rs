//! Interpreters of the filters the plans carry, written from the services'
//! documented semantics, to tell which documents a filter selects without
//! the services themselves. Each rule names where it comes from.

use serde_json::Value;

/// A document as Kendra holds it: its `Attributes` (Key → DocumentAttributeValue).
pub type KendraDoc = Vec<(String, Value)>;

/// Whether Kendra's `AttributeFilter` `f` selects `doc`.
///
/// Amazon Kendra API reference, AttributeFilter
/// (https://docs.aws.amazon.com/kendra/latest/APIReference/API_AttributeFilter.html):
/// - `AndAllFilters`: "Performs a logical AND operation on all filters that
///   you specify"; `OrAllFilters`: "… logical OR …"; `NotFilter`: "Performs a
///   logical NOT operation on all filters that you specify".
/// - `EqualsTo`: "Performs an equals operation on document attributes/fields
///   and their values".
/// - `ContainsAny`: "Returns true when a document contains any of the
///   specified document attributes/fields"; "only applicable to
///   StringListValue" (the document's list and the filter's list share a
///   value).
/// - `LessThan`, `LessThanOrEquals`, `GreaterThan`, `GreaterThanOrEquals`:
///   "Use with the following document attributes/fields types: Date or
///   Long".
/// - Exactly one member of the filter is set (the shape is a union), and a
///   filter on an attribute the document lacks does not hold.
pub fn kendra(f: &Value, doc: &KendraDoc) -> bool {
    let obj = f.as_object().expect("a filter is an object");
    assert_eq!(obj.len(), 1, "exactly one member of AttributeFilter: {f}");
    let (op, body) = obj.iter().next().unwrap();
    let list = || body.as_array().expect("a list of filters");
    let attr = || {
        let key = body["Key"].as_str().expect("Key");
        doc.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    };
    let long = |v: &Value| v["LongValue"].as_i64();
    match op.as_str() {
        "AndAllFilters" => list().iter().all(|g| kendra(g, doc)),
        "OrAllFilters" => list().iter().any(|g| kendra(g, doc)),
        "NotFilter" => !kendra(body, doc),
        "EqualsTo" => attr().is_some_and(|v| v == &body["Value"]),
        "ContainsAny" => {
            let want = body["Value"]["StringListValue"]
                .as_array()
                .expect("ContainsAny takes a StringListValue");
            attr()
                .and_then(|v| v["StringListValue"].as_array())
                .is_some_and(|have| have.iter().any(|h| want.contains(h)))
        }
        "LessThan" | "LessThanOrEquals" | "GreaterThan" | "GreaterThanOrEquals" => {
            let (Some(have), Some(want)) = (attr().and_then(long), long(&body["Value"])) else {
                return false;
            };
            match op.as_str() {
                "LessThan" => have < want,
                "LessThanOrEquals" => have <= want,
                "GreaterThan" => have > want,
                _ => have >= want,
            }
        }
        other => panic!("not a Kendra filter operation: {other}"),
    }
}

/// Whether the OpenSearch query `q` matches `doc` (field → value, lists for
/// multi-valued fields), over keyword, long and boolean fields.
///
/// OpenSearch query DSL (https://opensearch.org/docs/latest/query-dsl/):
/// - `bool`: "filter": every clause must match; "should" with
///   "minimum_should_match": 1: at least one must; "must_not": none may
///   (Boolean query).
/// - `term`: "Returns documents that contain an exact term in a provided
///   field"; on a field holding an array, a document matches when any of its
///   values is the term (Term-level queries; arrays: "Array values … are
///   indexed as multiple values of the field").
/// - `terms`: "Returns documents that contain one or more exact terms in a
///   provided field".
/// - `range`: `gt`, `gte`, `lt`, `lte` on the field's value.
/// - `match_all`, `match_none`.
pub fn opensearch(q: &Value, doc: &serde_json::Map<String, Value>) -> bool {
    let obj = q.as_object().expect("a query is an object");
    assert_eq!(obj.len(), 1, "one query type per object: {q}");
    let (op, body) = obj.iter().next().unwrap();
    let values = |field: &str| -> Vec<Value> {
        match doc.get(field) {
            Some(Value::Array(items)) => items.clone(),
            Some(v) => vec![v.clone()],
            None => vec![],
        }
    };
    let one = |b: &Value| {
        let m = b.as_object().expect("field: value");
        assert_eq!(m.len(), 1);
        let (k, v) = m.iter().next().unwrap();
        (k.clone(), v.clone())
    };
    match op.as_str() {
        "match_all" => true,
        "match_none" => false,
        "bool" => {
            let clauses = |k: &str| {
                body.get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let filter = clauses("filter").iter().all(|c| opensearch(c, doc));
            let must_not = clauses("must_not").iter().any(|c| opensearch(c, doc));
            let should = clauses("should");
            let min = body["minimum_should_match"].as_u64().unwrap_or(0) as usize;
            let hits = should.iter().filter(|c| opensearch(c, doc)).count();
            filter && !must_not && hits >= min
        }
        "term" => {
            let (field, want) = one(body);
            values(&field).contains(&want)
        }
        "terms" => {
            let (field, want) = one(body);
            let want = want.as_array().expect("terms takes a list").clone();
            values(&field).iter().any(|v| want.contains(v))
        }
        "range" => {
            let (field, bounds) = one(body);
            values(&field).iter().filter_map(Value::as_i64).any(|v| {
                bounds.as_object().unwrap().iter().all(|(k, b)| {
                    let b = b.as_i64().expect("a numeric bound");
                    match k.as_str() {
                        "gt" => v > b,
                        "gte" => v >= b,
                        "lt" => v < b,
                        "lte" => v <= b,
                        other => panic!("range bound {other}"),
                    }
                })
            })
        }
        other => panic!("not a supported OpenSearch query: {other}"),
    }
}
