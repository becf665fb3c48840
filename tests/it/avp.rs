//! The Amazon Verified Permissions data plane on the sidecar, called
//! through the real AWS SDK for Rust (`endpoint_url` set to the sidecar):
//! the same answers as the native API, batches in order, and errors as AWS
//! clients read them.

use aws_sdk_verifiedpermissions::types::{
    ActionIdentifier, AttributeValue, BatchIsAuthorizedInputItem, ContextDefinition,
    EntitiesDefinition, EntityIdentifier, EntityItem,
};
use aws_sdk_verifiedpermissions::Client;
use cedar_policy::Entities;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;
use cedargate::authz::entities::{document_entity, tenant_entity, user_entity, Principal};
use cedargate::ids::{RoleName, TenantId, UserId};
use cedargate::model::{DataSet, Level};

pub async fn sdk_client(addr: std::net::SocketAddr) -> Client {
    let config =
        cedargate::aws::sdk_config(Some("us-east-1"), Some(&format!("http://{addr}"))).await;
    Client::new(&config)
}

fn ent(ty: &str, id: &str) -> EntityIdentifier {
    EntityIdentifier::builder()
        .entity_type(ty)
        .entity_id(id)
        .build()
        .unwrap()
}

fn action(id: &str) -> ActionIdentifier {
    ActionIdentifier::builder()
        .action_type("CedarGate::Action")
        .action_id(id)
        .build()
        .unwrap()
}

fn principal(id: &str, tenant: &str, roles: &[&str], clearance: u8) -> Principal {
    Principal {
        id: UserId::parse(id).unwrap(),
        tenant: TenantId::parse(tenant).unwrap(),
        roles: roles.iter().map(|r| RoleName::parse(*r).unwrap()).collect(),
        clearance: Level::new(clearance).unwrap(),
    }
}

/// The entities the native engine would use for `p` reading `doc`, as
/// Cedar JSON text: the user, every tenant, the document.
fn entities_json(data: &DataSet, p: &Principal, doc: &str) -> String {
    let mut list = vec![user_entity(p)];
    list.extend(data.tenants.iter().map(tenant_entity));
    list.extend(
        data.documents
            .iter()
            .filter(|d| d.document_id.as_str() == doc)
            .map(document_entity),
    );
    Entities::from_entities(list, None)
        .unwrap()
        .to_json_value()
        .unwrap()
        .to_string()
}

/// [`entities_json`] for one of [`people`], by id.
pub fn entities_for(data: &DataSet, who: &str, doc: &str) -> String {
    let p = people()
        .into_iter()
        .find(|p| p.id.as_str() == who)
        .expect("one of people()");
    entities_json(data, &p, doc)
}

fn people() -> Vec<Principal> {
    vec![
        principal("alice", "t1", &["editor"], 2),
        principal("bob", "t1", &["viewer"], 1),
        principal("carol", "t1", &["viewer"], 3),
        principal("vic", "t1", &["viewer"], 0),
        principal("ada", "t1", &["admin"], 3),
        principal("mallory", "t2", &["admin"], 3),
    ]
}

/// Every user × document × action, asked natively and through the SDK:
/// the same decision, and the same determining policies.
#[tokio::test]
async fn the_sdk_gets_the_native_answers() {
    let app = spawn_app().await;
    let client = sdk_client(app.addr).await;
    let data = fixture();
    let mut compared = 0;
    let mut allowed = 0;
    for p in people() {
        for d in &data.documents {
            for act in ["Read", "Update", "Delete", "Share"] {
                let native = app
                    .post(
                        "/v1/authorize",
                        &json!({
                            "principal": {"id": p.id.as_str(), "tenant": p.tenant.as_str(),
                                "roles": p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                                "clearance": p.clearance.get()},
                            "action": act,
                            "resource": {"type": "Document", "id": d.document_id.as_str()}
                        }),
                    )
                    .await
                    .json();
                let out = client
                    .is_authorized()
                    .policy_store_id("cedargate")
                    .principal(ent("CedarGate::User", p.id.as_str()))
                    .action(action(act))
                    .resource(ent("CedarGate::Document", d.document_id.as_str()))
                    .entities(EntitiesDefinition::CedarJson(entities_json(
                        &data,
                        &p,
                        d.document_id.as_str(),
                    )))
                    .send()
                    .await
                    .unwrap();
                let decision = match out.decision() {
                    aws_sdk_verifiedpermissions::types::Decision::Allow => "Allow",
                    _ => "Deny",
                };
                let what = format!("{} {act} {}", p.id.as_str(), d.document_id.as_str());
                assert_eq!(decision, native["decision"], "{what}: {native}");
                allowed += usize::from(decision == "Allow");
                assert!(out.errors().is_empty(), "{what}: {:?}", out.errors());
                // Another tenant's document is "not found" natively (no
                // policy) and denied by the isolation forbid here.
                if d.tenant_id == p.tenant {
                    let ids: Vec<&str> = out
                        .determining_policies()
                        .iter()
                        .map(|x| x.policy_id())
                        .collect();
                    let want: Vec<&str> = native["determining_policies"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    assert_eq!(ids, want, "{what}");
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 6 * 8 * 4);
    let metrics = app.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "cedargate_avp_decisions_total{decision=\"allow\"}"
        ) as usize,
        allowed
    );
    assert!(
        allowed > 10 && allowed < compared - 10,
        "{allowed} of {compared} allowed"
    );
    app.shutdown().await;
}

/// `entityList` and `contextMap` with the attribute-value union decide like
/// the same entities given as Cedar JSON; a batch answers in order and
/// echoes each request.
#[tokio::test]
async fn entity_lists_contexts_and_batches() {
    let app = spawn_app().await;
    let client = sdk_client(app.addr).await;
    let s = |v: &str| AttributeValue::String(v.into());
    let l = |v: i64| AttributeValue::Long(v);
    let e = |t: &str, i: &str| AttributeValue::EntityIdentifier(ent(t, i));
    let set = |items: Vec<AttributeValue>| AttributeValue::Set(items);
    let record = |fields: Vec<(&str, AttributeValue)>| {
        AttributeValue::Record(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    };
    let tenant = EntityItem::builder()
        .identifier(ent("CedarGate::Tenant", "t1"))
        .attributes("name", s("Acme"))
        .attributes("status", s("active"))
        .attributes(
            "subscription",
            record(vec![
                ("tier", s("pro")),
                ("startDate", s("2026-01-01")),
                ("features", set(vec![s("export")])),
            ]),
        )
        .attributes(
            "limits",
            record(vec![
                ("maxDocuments", l(10)),
                ("maxUsers", l(10)),
                ("maxStorageGB", l(5)),
                ("maxQueriesPerMonth", l(100)),
            ]),
        )
        .attributes(
            "usage",
            record(vec![
                ("documents", l(1)),
                ("users", l(1)),
                ("storageGB", l(0)),
                ("queriesThisMonth", l(0)),
            ]),
        )
        .attributes(
            "settings",
            record(vec![
                ("dataRetentionDays", l(30)),
                ("allowedFileTypes", set(vec![s("pdf")])),
            ]),
        )
        .attributes(
            "remaining",
            record(vec![
                ("documents", l(9)),
                ("storageBytes", l(5 << 30)),
                ("queriesThisMonth", l(100)),
            ]),
        )
        .build();
    let user = |id: &str, role: &str| {
        EntityItem::builder()
            .identifier(ent("CedarGate::User", id))
            .attributes("tenant", e("CedarGate::Tenant", "t1"))
            .attributes("clearance", l(1))
            .parents(ent("CedarGate::Role", role))
            .build()
    };
    let doc = EntityItem::builder()
        .identifier(ent("CedarGate::Document", "memo"))
        .attributes("tenant", e("CedarGate::Tenant", "t1"))
        .attributes("owner", e("CedarGate::User", "olga"))
        .attributes("visibility", s("shared"))
        .attributes("classification", l(1))
        .attributes("fileType", s("pdf"))
        .attributes("sizeBytes", l(10))
        .attributes("readers", set(vec![e("CedarGate::User", "rita")]))
        .attributes("editors", set(vec![]))
        .attributes("readerRoles", set(vec![]))
        .attributes("editorRoles", set(vec![]))
        .attributes("deleted", AttributeValue::Boolean(false))
        .build();
    let entities = EntitiesDefinition::EntityList(vec![
        tenant,
        user("rita", "viewer"),
        user("olga", "editor"),
        user("nina", "viewer"),
        doc,
    ]);
    let item = |who: &str, act: &str| {
        BatchIsAuthorizedInputItem::builder()
            .principal(ent("CedarGate::User", who))
            .action(action(act))
            .resource(ent("CedarGate::Document", "memo"))
            .context(ContextDefinition::ContextMap(Default::default()))
            .build()
    };
    // Same resource throughout; answers in the order asked.
    let asked = [
        ("rita", "Read"),
        ("nina", "Read"),
        ("olga", "Delete"),
        ("rita", "Delete"),
    ];
    let out = client
        .batch_is_authorized()
        .policy_store_id("cedargate")
        .entities(entities.clone())
        .set_requests(Some(asked.iter().map(|(w, a)| item(w, a)).collect()))
        .send()
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = out
        .results()
        .iter()
        .map(|r| {
            let req = r.request().unwrap();
            (
                req.principal().unwrap().entity_id().to_string(),
                req.action().unwrap().action_id().to_string(),
                r.decision().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("rita".into(), "Read".into(), "ALLOW".into()),
            ("nina".into(), "Read".into(), "DENY".into()),
            ("olga".into(), "Delete".into(), "ALLOW".into()),
            ("rita".into(), "Delete".into(), "DENY".into()),
        ]
    );
    // Each as a single call decides the same.
    for (r, (who, act)) in out.results().iter().zip(asked) {
        let one = client
            .is_authorized()
            .policy_store_id("cedargate")
            .principal(ent("CedarGate::User", who))
            .action(action(act))
            .resource(ent("CedarGate::Document", "memo"))
            .entities(entities.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(one.decision(), r.decision());
        assert_eq!(one.determining_policies(), r.determining_policies());
    }
    // A context of the wrong shape for the action is a validation error.
    let bad = client
        .is_authorized()
        .policy_store_id("cedargate")
        .principal(ent("CedarGate::User", "rita"))
        .action(action("Read"))
        .resource(ent("CedarGate::Document", "memo"))
        .context(ContextDefinition::ContextMap(
            [("unexpected".to_string(), l(1))].into_iter().collect(),
        ))
        .entities(entities)
        .send()
        .await
        .unwrap_err();
    let service = bad.into_service_error();
    assert!(service.is_validation_exception(), "{service:?}");
    app.shutdown().await;
}

/// Errors as the SDK reads them.
#[tokio::test]
async fn errors_read_as_aws_errors() {
    let app = spawn_app().await;
    let client = sdk_client(app.addr).await;
    let unknown = client
        .is_authorized()
        .policy_store_id("PSnope")
        .principal(ent("CedarGate::User", "u"))
        .action(action("Read"))
        .resource(ent("CedarGate::Document", "d"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(unknown.is_resource_not_found_exception(), "{unknown:?}");

    let item = |who: &str, doc: &str| {
        BatchIsAuthorizedInputItem::builder()
            .principal(ent("CedarGate::User", who))
            .action(action("Read"))
            .resource(ent("CedarGate::Document", doc))
            .build()
    };
    let too_many = client
        .batch_is_authorized()
        .policy_store_id("cedargate")
        .set_requests(Some((0..31).map(|_| item("u", "d")).collect()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    match &too_many {
        aws_sdk_verifiedpermissions::operation::batch_is_authorized::BatchIsAuthorizedError::ValidationException(v) => {
            assert_eq!(v.field_list()[0].path(), "requests", "{v:?}");
        }
        other => panic!("{other:?}"),
    }
    let mixed = client
        .batch_is_authorized()
        .policy_store_id("cedargate")
        .set_requests(Some(vec![item("u", "d1"), item("v", "d2")]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(mixed.is_validation_exception(), "{mixed:?}");

    let bad_action = client
        .is_authorized()
        .policy_store_id("cedargate")
        .principal(ent("CedarGate::User", "u"))
        .action(
            ActionIdentifier::builder()
                .action_type("CedarGate::Thing")
                .action_id("Read")
                .build()
                .unwrap(),
        )
        .resource(ent("CedarGate::Document", "d"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    match &bad_action {
        aws_sdk_verifiedpermissions::operation::is_authorized::IsAuthorizedError::ValidationException(v) => {
            assert_eq!(v.field_list()[0].path(), "action.actionType");
        }
        other => panic!("{other:?}"),
    }
    let no_identity = client
        .is_authorized_with_token()
        .policy_store_id("cedargate")
        .identity_token("a.b.c")
        .action(action("Read"))
        .resource(ent("CedarGate::Document", "d"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(no_identity.is_validation_exception(), "{no_identity:?}");

    // Below the SDK: the raw protocol.
    let raw = |target: &str, body: &str| {
        let target = target.to_string();
        let body = body.to_string();
        let app = &app;
        async move {
            app.send_with(
                Method::POST,
                "/",
                &[
                    ("x-amz-target", target.as_str()),
                    ("content-type", "application/x-amz-json-1.0"),
                ],
                body,
            )
            .await
        }
    };
    let r = raw("VerifiedPermissions.IsAuthorized", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.headers["x-amzn-errortype"], "SerializationException");
    assert!(r.headers.contains_key("x-amzn-requestid"));
    assert_eq!(
        r.json()["__type"],
        "com.amazonaws.verifiedpermissions#SerializationException"
    );
    let r = raw("VerifiedPermissions.CreatePolicy", "{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.headers["x-amzn-errortype"], "UnknownOperationException");
    let r = raw(
        "VerifiedPermissions.IsAuthorized",
        r#"{"policyStoreId":"cedargate","principal":{"entityType":"CedarGate::User","entityId":"u"},"action":{"actionType":"CedarGate::Action","actionId":"Read"},"resource":{"entityType":"CedarGate::Document","entityId":"d"},"context":{"contextMap":{"a":{}}}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        r.json()["fieldList"][0]["path"],
        "context.contextMap.a",
        "{}",
        r.body
    );
    // The native API is where it was; the errors are counted by type.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await.body;
    for (kind, at_least) in [
        ("ResourceNotFoundException", 1),
        ("ValidationException", 5),
        ("SerializationException", 1),
        ("UnknownOperationException", 1),
    ] {
        let n = metric(
            &metrics,
            &format!("cedargate_avp_errors_total{{type=\"{kind}\"}}"),
        );
        assert!(n >= at_least, "{kind}: {n}\n{metrics}");
    }
    app.shutdown().await;
}

/// Decisions through this API are audited like the native ones.
#[tokio::test]
async fn avp_decisions_are_recorded() {
    let app = spawn_app().await;
    let client = sdk_client(app.addr).await;
    let data = fixture();
    let p = principal("vic", "t1", &["viewer"], 0);
    client
        .is_authorized()
        .policy_store_id("cedargate")
        .principal(ent("CedarGate::User", "vic"))
        .action(action("Read"))
        .resource(ent("CedarGate::Document", "d-public"))
        .entities(EntitiesDefinition::CedarJson(entities_json(
            &data, &p, "d-public",
        )))
        .send()
        .await
        .unwrap();
    let store = app.store.clone();
    app.shutdown().await;
    let records = store
        .all_audit_events(&cedargate::store::AuditQuery::new(
            TenantId::parse("_avp.cedargate").unwrap(),
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::days(1),
            100,
        ))
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.details["policyStoreId"], "cedargate");
    assert_eq!(r.details["decision"], json!("ALLOW"));
    assert_eq!(r.user_id.as_deref(), Some("CedarGate::User::\"vic\""));
    assert!(r.success);
    assert!(!r.details["determiningPolicies"]
        .as_array()
        .unwrap()
        .is_empty());
}
