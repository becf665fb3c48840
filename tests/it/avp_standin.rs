//! A local stand-in for the Amazon Verified Permissions control plane
//! (real AVP cannot be reached from the tests), written from the AWS API
//! model (`verifiedpermissions` 2021-12-01, awsJson1_0): the operations the
//! policy-store puller and `cedargate policy push` call, with AWS's shapes,
//! ISO 8601 timestamps, pagination and error encoding. Signatures are not
//! checked. It counts calls and can throttle the next N.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Policy {
    /// `{"static": {...}}` or `{"templateLinked": {...}}`, as created.
    pub definition: Value,
    pub created: String,
    pub updated: String,
}

#[derive(Default, Debug)]
pub struct StoreState {
    pub policies: BTreeMap<String, Policy>,
    pub templates: BTreeMap<String, (String, String, String)>,
    /// (cedarJson, created, updated)
    pub schema: Option<(String, String, String)>,
}

#[derive(Default)]
pub struct State {
    pub stores: HashMap<String, StoreState>,
    pub calls: HashMap<String, u64>,
    pub throttle_next: u32,
    seq: u64,
}

impl State {
    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{:020}", self.seq)
    }
}

/// Distinct, increasing timestamps (AVP's have millisecond precision).
fn now(state: &mut State) -> String {
    state.seq += 1;
    let t = chrono::DateTime::from_timestamp_millis(1_780_000_000_000 + state.seq as i64 * 1000)
        .unwrap();
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Standin {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Standin {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Standin { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn create_store(&self, id: &str) {
        self.state.lock().stores.entry(id.into()).or_default();
    }

    pub fn put_schema(&self, store: &str, cedar_json: &str) {
        let mut s = self.state.lock();
        let t = now(&mut s);
        let st = s.stores.get_mut(store).unwrap();
        let created = st.schema.as_ref().map_or(t.clone(), |x| x.1.clone());
        st.schema = Some((cedar_json.into(), created, t));
    }

    pub fn add_static(&self, store: &str, statement: &str) -> String {
        let mut s = self.state.lock();
        let id = s.next_id("SP");
        let t = now(&mut s);
        s.stores.get_mut(store).unwrap().policies.insert(
            id.clone(),
            Policy {
                definition: json!({"static": {"statement": statement}}),
                created: t.clone(),
                updated: t,
            },
        );
        id
    }

    pub fn update_static(&self, store: &str, id: &str, statement: &str) {
        let mut s = self.state.lock();
        let t = now(&mut s);
        let p = s
            .stores
            .get_mut(store)
            .unwrap()
            .policies
            .get_mut(id)
            .unwrap();
        p.definition = json!({"static": {"statement": statement}});
        p.updated = t;
    }

    pub fn delete(&self, store: &str, id: &str) {
        self.state
            .lock()
            .stores
            .get_mut(store)
            .unwrap()
            .policies
            .remove(id);
    }

    pub fn add_template(&self, store: &str, statement: &str) -> String {
        let mut s = self.state.lock();
        let id = s.next_id("PT");
        let t = now(&mut s);
        s.stores
            .get_mut(store)
            .unwrap()
            .templates
            .insert(id.clone(), (statement.into(), t.clone(), t));
        id
    }

    pub fn link(&self, store: &str, template: &str, principal: Value, resource: Value) -> String {
        let mut s = self.state.lock();
        let id = s.next_id("TL");
        let t = now(&mut s);
        s.stores.get_mut(store).unwrap().policies.insert(
            id.clone(),
            Policy {
                definition: json!({"templateLinked": {
                    "policyTemplateId": template, "principal": principal, "resource": resource}}),
                created: t.clone(),
                updated: t,
            },
        );
        id
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.state.lock().calls.get(op).copied().unwrap_or(0)
    }

    pub fn throttle(&self, n: u32) {
        self.state.lock().throttle_next = n;
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    r.headers_mut().insert(
        "x-amzn-requestid",
        hyper::header::HeaderValue::from_static("standin"),
    );
    r
}

fn error(
    status: StatusCode,
    kind: &'static str,
    message: &str,
    extra: Value,
) -> Response<Full<Bytes>> {
    let mut body = extra;
    body["__type"] = json!(format!("com.amazonaws.verifiedpermissions#{kind}"));
    body["message"] = json!(message);
    let mut r = reply(status, body);
    r.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static(kind),
    );
    r
}

fn not_found(id: &str, ty: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("{ty} {id} not found"),
        json!({"resourceId": id, "resourceType": ty}),
    )
}

fn policy_type(def: &Value) -> &'static str {
    if def.get("static").is_some() {
        "STATIC"
    } else {
        "TEMPLATE_LINKED"
    }
}

/// The definition as `ListPolicies` shows it (no statement).
fn item_definition(def: &Value) -> Value {
    match def.get("static") {
        Some(s) => json!({"static": {"description": s.get("description")}}),
        None => def.clone(),
    }
}

/// A page of `items` from `nextToken` (an index).
fn page(items: Vec<Value>, input: &Value, key: &str) -> Value {
    let start: usize = input["nextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let max = input["maxResults"].as_u64().unwrap_or(10).min(50) as usize;
    let end = (start + max).min(items.len());
    let mut out = json!({ key: items[start.min(end)..end] });
    if end < items.len() {
        out["nextToken"] = json!(end.to_string());
    }
    out
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start_matches("VerifiedPermissions.")
        .to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
                json!({}),
            )
        }
    };
    let mut s = state.lock();
    *s.calls.entry(target.clone()).or_default() += 1;
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Rate exceeded",
            json!({"serviceCode": "verifiedpermissions", "quotaCode": "standin"}),
        );
    }
    let store_id = input["policyStoreId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if target == "BatchGetPolicy" {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for r in input["requests"].as_array().into_iter().flatten() {
            let sid = r["policyStoreId"].as_str().unwrap_or_default();
            let pid = r["policyId"].as_str().unwrap_or_default();
            match s.stores.get(sid).and_then(|st| st.policies.get(pid)) {
                Some(p) => results.push(json!({
                    "policyStoreId": sid, "policyId": pid,
                    "policyType": policy_type(&p.definition),
                    "definition": p.definition,
                    "createdDate": p.created, "lastUpdatedDate": p.updated,
                })),
                None => errors.push(json!({
                    "code": "POLICY_NOT_FOUND", "policyStoreId": sid, "policyId": pid,
                    "message": "not found"})),
            }
        }
        return reply(
            StatusCode::OK,
            json!({"results": results, "errors": errors}),
        );
    }
    if !s.stores.contains_key(&store_id) {
        return not_found(&store_id, "POLICY_STORE");
    }
    let t = now(&mut s);
    let fresh = s.next_id("SP");
    let st = s.stores.get_mut(&store_id).unwrap();
    match target.as_str() {
        "GetPolicyStore" => reply(
            StatusCode::OK,
            json!({"policyStoreId": store_id, "arn": format!("arn:aws:verifiedpermissions::000000000000:policy-store/{store_id}"),
                   "validationSettings": {"mode": "STRICT"}, "createdDate": t, "lastUpdatedDate": t}),
        ),
        "ListPolicies" => {
            let items: Vec<Value> = st
                .policies
                .iter()
                .map(|(id, p)| {
                    json!({
                        "policyStoreId": store_id, "policyId": id,
                        "policyType": policy_type(&p.definition),
                        "definition": item_definition(&p.definition),
                        "createdDate": p.created, "lastUpdatedDate": p.updated,
                    })
                })
                .collect();
            reply(StatusCode::OK, page(items, &input, "policies"))
        }
        "GetPolicy" => {
            let pid = input["policyId"].as_str().unwrap_or_default();
            match st.policies.get(pid) {
                Some(p) => reply(
                    StatusCode::OK,
                    json!({"policyStoreId": store_id, "policyId": pid,
                           "policyType": policy_type(&p.definition), "definition": p.definition,
                           "createdDate": p.created, "lastUpdatedDate": p.updated}),
                ),
                None => not_found(pid, "POLICY"),
            }
        }
        "ListPolicyTemplates" => {
            let items: Vec<Value> = st
                .templates
                .iter()
                .map(|(id, (_, c, u))| {
                    json!({"policyStoreId": store_id, "policyTemplateId": id,
                           "createdDate": c, "lastUpdatedDate": u})
                })
                .collect();
            reply(StatusCode::OK, page(items, &input, "policyTemplates"))
        }
        "GetPolicyTemplate" => {
            let tid = input["policyTemplateId"].as_str().unwrap_or_default();
            match st.templates.get(tid) {
                Some((text, c, u)) => reply(
                    StatusCode::OK,
                    json!({"policyStoreId": store_id, "policyTemplateId": tid, "statement": text,
                           "createdDate": c, "lastUpdatedDate": u}),
                ),
                None => not_found(tid, "POLICY_TEMPLATE"),
            }
        }
        "GetSchema" => match &st.schema {
            Some((text, c, u)) => reply(
                StatusCode::OK,
                json!({"policyStoreId": store_id, "schema": text, "createdDate": c,
                       "lastUpdatedDate": u, "namespaces": []}),
            ),
            None => not_found(&store_id, "SCHEMA"),
        },
        "PutSchema" => {
            let Some(text) = input["definition"]["cedarJson"].as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "definition.cedarJson is required",
                    json!({"fieldList": [{"path": "definition.cedarJson", "message": "required"}]}),
                );
            };
            let created = st.schema.as_ref().map_or(t.clone(), |x| x.1.clone());
            st.schema = Some((text.to_string(), created.clone(), t.clone()));
            reply(
                StatusCode::OK,
                json!({"policyStoreId": store_id, "namespaces": [], "createdDate": created, "lastUpdatedDate": t}),
            )
        }
        "CreatePolicy" | "UpdatePolicy" => {
            let Some(statement) = input["definition"]["static"]["statement"].as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "only static policies are handled here",
                    json!({}),
                );
            };
            // AVP checks the statement parses (and, in STRICT mode, validates).
            if let Err(e) = cedar_policy::Policy::parse(None, statement) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    &e.to_string(),
                    json!({"fieldList": [{"path": "definition.static.statement", "message": e.to_string()}]}),
                );
            }
            let definition = json!({"static": {
                "statement": statement,
                "description": input["definition"]["static"]["description"]}});
            let (pid, created) = if target == "CreatePolicy" {
                (fresh, t.clone())
            } else {
                let pid = input["policyId"].as_str().unwrap_or_default().to_string();
                match st.policies.get(&pid) {
                    Some(p) => (pid, p.created.clone()),
                    None => return not_found(&pid, "POLICY"),
                }
            };
            st.policies.insert(
                pid.clone(),
                Policy {
                    definition,
                    created: created.clone(),
                    updated: t.clone(),
                },
            );
            reply(
                StatusCode::OK,
                json!({"policyStoreId": store_id, "policyId": pid, "policyType": "STATIC",
                       "createdDate": created, "lastUpdatedDate": t}),
            )
        }
        "DeletePolicy" => {
            let pid = input["policyId"].as_str().unwrap_or_default();
            match st.policies.remove(pid) {
                Some(_) => reply(StatusCode::OK, json!({})),
                None => not_found(pid, "POLICY"),
            }
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("{other} is not part of the stand-in"),
            json!({}),
        ),
    }
}
