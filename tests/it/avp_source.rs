//! Policy stores pulled from Verified Permissions (here: the local stand-in
//! of its control plane, `avp_standin.rs`), the token calls mapped as AVP
//! maps a Cognito identity source, and `cedargate policy push`.

use std::process::Command;
use std::time::Duration;

use aws_sdk_verifiedpermissions::types::{
    ActionIdentifier, BatchIsAuthorizedWithTokenInputItem, Decision, EntitiesDefinition,
    EntityIdentifier,
};
use cedargate::avp::{IdentitySourceConfig, SourceKind, StoreConfig};
use serde_json::json;

use crate::avp::sdk_client;
use crate::avp_standin::Standin;
use crate::helpers::*;

const POOL: &str = "us-east-1_TEST";
const STORE: &str = "PSmyapp";

const SCHEMA: &str = r#"
namespace MyApp {
  entity UserGroup;
  entity User in [UserGroup] = { email?: String };
  entity Photo = { public: Bool };
  action view, edit appliesTo { principal: User, resource: Photo, context: {} };
}
"#;

fn schema_json() -> String {
    let (f, _) = cedar_policy::SchemaFragment::from_cedarschema_str(SCHEMA).unwrap();
    f.to_json_string().unwrap()
}

fn ent(ty: &str, id: &str) -> EntityIdentifier {
    EntityIdentifier::builder()
        .entity_type(ty)
        .entity_id(id)
        .build()
        .unwrap()
}

fn act(id: &str) -> ActionIdentifier {
    ActionIdentifier::builder()
        .action_type("MyApp::Action")
        .action_id(id)
        .build()
        .unwrap()
}

fn photos() -> EntitiesDefinition {
    EntitiesDefinition::CedarJson(
        json!([
            {"uid": {"type": "MyApp::Photo", "id": "p-public"}, "attrs": {"public": true}, "parents": []},
            {"uid": {"type": "MyApp::Photo", "id": "p-private"}, "attrs": {"public": false}, "parents": []},
        ])
        .to_string(),
    )
}

struct Ids {
    admins: String,
    public: String,
    scope: String,
    email: String,
    link: String,
}

fn seed(standin: &Standin) -> Ids {
    standin.create_store(STORE);
    standin.put_schema(STORE, &schema_json());
    let admins = standin.add_static(
        STORE,
        &format!("permit (principal in MyApp::UserGroup::\"{POOL}|admins\", action, resource);"),
    );
    let public = standin.add_static(
        STORE,
        "permit (principal, action == MyApp::Action::\"view\", resource) when { resource.public };",
    );
    let scope = standin.add_static(
        STORE,
        "permit (principal, action == MyApp::Action::\"edit\", resource) when { context has token && context.token has scope && context.token.scope like \"*photos/write*\" };",
    );
    let email = standin.add_static(
        STORE,
        "permit (principal, action == MyApp::Action::\"view\", resource) when { principal has email && principal.email like \"*@example.com\" };",
    );
    let template = standin.add_template(
        STORE,
        "permit (principal == ?principal, action, resource == ?resource);",
    );
    let link = standin.link(
        STORE,
        &template,
        json!({"entityType": "MyApp::User", "entityId": format!("{POOL}|zed")}),
        json!({"entityType": "MyApp::Photo", "entityId": "p-private"}),
    );
    Ids {
        admins,
        public,
        scope,
        email,
        link,
    }
}

/// A sidecar hosting the Git store and the stand-in's store, with dev-key
/// tokens as the identity source.
async fn sidecar(standin: &Standin, jwks: &std::path::Path) -> TestApp {
    let endpoint = standin.endpoint();
    let jwks = jwks.to_path_buf();
    spawn_app_with(move |s| {
        s.avp = vec![
            StoreConfig::git("cedargate"),
            StoreConfig {
                id: STORE.into(),
                source: SourceKind::Avp,
                region: Some("us-east-1".into()),
                endpoint_url: Some(endpoint),
                refresh_secs: Some(1),
                identity: Some(IdentitySourceConfig {
                    user_pool_id: POOL.into(),
                    principal_entity_type: Some("MyApp::User".into()),
                    group_entity_type: Some("MyApp::UserGroup".into()),
                    client_ids: vec![AUDIENCE.into()],
                    issuer: Some(ISSUER.into()),
                    jwks_file: Some(jwks),
                    jwks_url: None,
                    allow_dev_keys: true,
                    tenant_claim: None,
                    roles_claim: None,
                    clearance_claim: None,
                }),
                semantics: None,
            },
        ];
    })
    .await
}

fn id_token(keys: &Keys, sub: &str, groups: &[&str], email: Option<&str>) -> String {
    keys.token(sub, "t1", groups, |c| {
        if let Some(e) = email {
            c["email"] = json!(e);
        }
    })
}

fn access_token(keys: &Keys, sub: &str, scope: &str) -> String {
    keys.token(sub, "t1", &[], |c| {
        c["token_use"] = json!("access");
        c["client_id"] = json!(AUDIENCE);
        c["scope"] = json!(scope);
        c.as_object_mut().unwrap().remove("aud");
    })
}

#[tokio::test]
async fn a_pulled_store_decides_with_avp_ids_and_follows_changes() {
    let standin = Standin::start().await;
    let ids = seed(&standin);
    let dev = cedargate::identity::devkey::DevKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(dir.path(), &dev);
    let keys = Keys { dev };
    let app = sidecar(&standin, &jwks).await;
    let client = sdk_client(app.addr).await;

    let decide = |who: &str, action: &str, photo: &str| {
        let client = client.clone();
        let (who, action, photo) = (who.to_string(), action.to_string(), photo.to_string());
        async move {
            client
                .is_authorized()
                .policy_store_id(STORE)
                .principal(ent("MyApp::User", &who))
                .action(act(&action))
                .resource(ent("MyApp::Photo", &photo))
                .entities(photos())
                .send()
                .await
        }
    };
    // Not loaded yet is an InternalServerException (the SDK retries it);
    // then the store answers.
    eventually("the store to load", || async {
        decide("u1", "view", "p-public").await.is_ok()
    })
    .await;
    let out = decide("u1", "view", "p-public").await.unwrap();
    assert_eq!(out.decision(), &Decision::Allow);
    let determining: Vec<&str> = out
        .determining_policies()
        .iter()
        .map(|p| p.policy_id())
        .collect();
    assert_eq!(determining, vec![ids.public.as_str()], "AVP's policy ids");
    assert_eq!(
        decide("u1", "view", "p-private").await.unwrap().decision(),
        &Decision::Deny
    );
    // A template-linked policy.
    let zed = decide(&format!("{POOL}|zed"), "edit", "p-private")
        .await
        .unwrap();
    assert_eq!(zed.decision(), &Decision::Allow);
    assert_eq!(zed.determining_policies()[0].policy_id(), ids.link);

    // Tokens: groups as parents, ID-token claims as attributes.
    let ann = id_token(&keys, "ann", &["admins"], None);
    let out = client
        .is_authorized_with_token()
        .policy_store_id(STORE)
        .identity_token(&ann)
        .action(act("edit"))
        .resource(ent("MyApp::Photo", "p-private"))
        .entities(photos())
        .send()
        .await
        .unwrap();
    assert_eq!(out.decision(), &Decision::Allow);
    assert_eq!(out.determining_policies()[0].policy_id(), ids.admins);
    let p = out.principal().unwrap();
    assert_eq!(
        (p.entity_type(), p.entity_id()),
        ("MyApp::User", "us-east-1_TEST|ann")
    );
    let bo = id_token(&keys, "bo", &[], Some("bo@example.com"));
    let with_bo = |action: &str| {
        client
            .is_authorized_with_token()
            .policy_store_id(STORE)
            .identity_token(&bo)
            .action(act(action))
            .resource(ent("MyApp::Photo", "p-private"))
            .entities(photos())
            .send()
    };
    let out = with_bo("view").await.unwrap();
    assert_eq!(out.decision(), &Decision::Allow);
    assert_eq!(out.determining_policies()[0].policy_id(), ids.email);
    assert_eq!(with_bo("edit").await.unwrap().decision(), &Decision::Deny);
    // Access tokens: claims under context.token.
    for (scope, want) in [
        ("photos/read photos/write", Decision::Allow),
        ("photos/read", Decision::Deny),
    ] {
        let t = access_token(&keys, "cy", scope);
        let out = client
            .is_authorized_with_token()
            .policy_store_id(STORE)
            .access_token(&t)
            .action(act("edit"))
            .resource(ent("MyApp::Photo", "p-private"))
            .entities(photos())
            .send()
            .await
            .unwrap();
        assert_eq!(out.decision(), &want, "scope {scope}");
        if want == Decision::Allow {
            assert_eq!(out.determining_policies()[0].policy_id(), ids.scope);
        }
    }
    // A batch with a token: the principal once, results in order.
    let out = client
        .batch_is_authorized_with_token()
        .policy_store_id(STORE)
        .identity_token(&bo)
        .entities(photos())
        .requests(
            BatchIsAuthorizedWithTokenInputItem::builder()
                .action(act("edit"))
                .resource(ent("MyApp::Photo", "p-public"))
                .build(),
        )
        .requests(
            BatchIsAuthorizedWithTokenInputItem::builder()
                .action(act("view"))
                .resource(ent("MyApp::Photo", "p-public"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.principal().unwrap().entity_id(), "us-east-1_TEST|bo");
    let got: Vec<_> = out
        .results()
        .iter()
        .map(|r| {
            (
                r.request()
                    .unwrap()
                    .action()
                    .unwrap()
                    .action_id()
                    .to_string(),
                r.decision().clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("edit".into(), Decision::Deny),
            ("view".into(), Decision::Allow)
        ]
    );
    // Tokens that are not accepted.
    let foreign = keys.token("x", "t1", &[], |c| c["aud"] = json!("another-client"));
    let expired = keys.token("x", "t1", &[], |c| {
        c["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    });
    for (token, as_access) in [
        (foreign.as_str(), false),
        (expired.as_str(), false),
        (ann.as_str(), true),
    ] {
        let mut call = client
            .is_authorized_with_token()
            .policy_store_id(STORE)
            .action(act("view"))
            .resource(ent("MyApp::Photo", "p-public"))
            .entities(photos());
        call = if as_access {
            call.access_token(token)
        } else {
            call.identity_token(token)
        };
        let e = call.send().await.unwrap_err().into_service_error();
        assert!(e.is_access_denied_exception(), "{e:?}");
    }

    // Follows changes, fetching only what changed.
    let fetches = standin.calls("BatchGetPolicy");
    let lists = standin.calls("ListPolicies");
    eventually("two more refreshes", || async {
        standin.calls("ListPolicies") >= lists + 2
    })
    .await;
    assert_eq!(
        standin.calls("BatchGetPolicy"),
        fetches,
        "nothing changed, nothing fetched"
    );
    standin.update_static(
        STORE,
        &ids.public,
        "permit (principal, action == MyApp::Action::\"view\", resource) when { resource.public && principal has email };",
    );
    eventually("the update to apply", || async {
        decide("u1", "view", "p-public").await.unwrap().decision() == &Decision::Deny
    })
    .await;
    assert_eq!(standin.calls("BatchGetPolicy"), fetches + 1);

    // Broken content keeps the last good set; throttling backs off.
    let broken = standin.add_static(STORE, "permit (principal, action, resource) when {");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        decide("zz", "view", "p-private").await.unwrap().decision(),
        &Decision::Deny
    );
    standin.delete(STORE, &broken);
    standin.throttle(6);
    standin.delete(STORE, &ids.email);
    let bo_view = || async { with_bo("view").await.unwrap().decision().clone() };
    assert_eq!(
        bo_view().await,
        Decision::Allow,
        "the last good set, while throttled"
    );
    eventually("the deletion to apply after the throttling", || async {
        bo_view().await == Decision::Deny
    })
    .await;
    assert!(standin.state.lock().throttle_next == 0);
    let metrics = app.get("/metrics").await.body;
    assert!(
        metric(&metrics, "cedargate_avp_pulls_total{result=\"throttled\"}") >= 1,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "cedargate_avp_pulls_total{result=\"changed\"}") >= 3,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "cedargate_avp_pulls_total{result=\"unchanged\"}") >= 2,
        "{metrics}"
    );
    app.shutdown().await;
}

fn cedargate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Git → AVP: a dry run changes nothing; a push creates every policy and
/// the schema; a pulled copy of that store decides like the Git store;
/// editing and deleting in Git updates and deletes exactly those; policies
/// made in AVP otherwise are left alone.
// Multi-threaded: the binary runs (blocking this thread) while the
// stand-in answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_push_makes_an_avp_store_match_git() {
    let standin = Standin::start().await;
    standin.create_store("PSpush");
    let foreign = standin.add_static(
        "PSpush",
        "forbid (principal, action, resource) when { false };",
    );
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for f in std::fs::read_dir(repo_dir("policies")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&f, policies.join(f.file_name().unwrap())).unwrap();
        }
    }
    let endpoint = standin.endpoint();
    let schemas = repo_dir("schemas");
    let push = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "push",
            "--policy-store",
            "PSpush",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "--policies",
            policies.to_str().unwrap(),
            "--schema",
            schemas.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cedargate(&args)
    };
    let git_count = cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: policies.clone(),
        schema_dir: repo_dir("schemas"),
    })
    .unwrap()
    .policies
    .policies()
    .count();

    let (ok, out, err) = push(&["--dry-run"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("put schema"), "{out}");
    assert!(
        out.contains(&format!(
            "{git_count} to create, 0 to update, 0 to delete, 0 unchanged, 1 not managed"
        )),
        "{out}"
    );
    assert_eq!(standin.calls("CreatePolicy"), 0);
    assert_eq!(standin.calls("PutSchema"), 0);

    let (ok, out, err) = push(&[]);
    assert!(ok, "{out}{err}");
    assert_eq!(standin.calls("CreatePolicy") as usize, git_count);
    assert_eq!(
        standin.state.lock().stores["PSpush"].policies.len(),
        git_count + 1
    );
    let (ok, out, _) = push(&[]);
    assert!(ok);
    assert!(out.contains("is up to date"), "{out}");

    // Served from AVP, it decides as the Git store does.
    let app = spawn_app_with({
        let endpoint = endpoint.clone();
        move |s| {
            let mut pulled = StoreConfig::git("PSpush");
            pulled.source = SourceKind::Avp;
            pulled.region = Some("us-east-1".into());
            pulled.endpoint_url = Some(endpoint);
            s.avp = vec![StoreConfig::git("cedargate"), pulled];
        }
    })
    .await;
    let client = sdk_client(app.addr).await;
    let data = fixture();
    let descriptions: std::collections::HashMap<String, String> = standin.state.lock().stores
        ["PSpush"]
        .policies
        .iter()
        .map(|(id, p)| {
            (
                id.clone(),
                p.definition["static"]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let ask = |store: &'static str, who: &'static str, doc: &'static str| {
        let client = client.clone();
        let entities = crate::avp::entities_for(&data, who, doc);
        async move {
            client
                .is_authorized()
                .policy_store_id(store)
                .principal(ent("CedarGate::User", who))
                .action(
                    ActionIdentifier::builder()
                        .action_type("CedarGate::Action")
                        .action_id("Read")
                        .build()
                        .unwrap(),
                )
                .resource(ent("CedarGate::Document", doc))
                .entities(EntitiesDefinition::CedarJson(entities))
                .send()
                .await
        }
    };
    eventually("the pushed store to load", || async {
        ask("PSpush", "vic", "d-public").await.is_ok()
    })
    .await;
    for (who, doc) in [
        ("vic", "d-public"),
        ("vic", "d-priv"),
        ("alice", "d-priv"),
        ("bob", "d-shared"),
    ] {
        let git = ask("cedargate", who, doc).await.unwrap();
        let avp = ask("PSpush", who, doc).await.unwrap();
        assert_eq!(git.decision(), avp.decision(), "{who} {doc}");
        let git_ids: Vec<String> = git
            .determining_policies()
            .iter()
            .map(|p| p.policy_id().to_string())
            .collect();
        let avp_ids: Vec<String> = avp
            .determining_policies()
            .iter()
            .map(|p| {
                descriptions[p.policy_id()]
                    .trim_start_matches("cedargate:")
                    .to_string()
            })
            .collect();
        assert_eq!(git_ids, avp_ids, "{who} {doc}");
    }
    app.shutdown().await;

    // Edit one policy, delete a file, touch another without changing a
    // statement: one update, the deletions, nothing else; the foreign
    // policy stays.
    let roles = policies.join("roles.cedar");
    let text = std::fs::read_to_string(&roles).unwrap();
    std::fs::write(&roles, text + "\n// a comment after the last policy\n").unwrap();
    let visibility = policies.join("visibility.cedar");
    let first = std::fs::read_to_string(&visibility).unwrap();
    let edited = first.replacen(
        "resource.visibility == \"public\"",
        "resource.visibility == \"public\" && true",
        1,
    );
    assert_ne!(edited, first, "the edit must change a policy");
    std::fs::write(&visibility, edited).unwrap();
    let features = policies.join("features.cedar");
    let removed = cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: policies.clone(),
        schema_dir: repo_dir("schemas"),
    })
    .unwrap()
    .policies
    .policies()
    .count();
    std::fs::remove_file(&features).unwrap();
    let left = cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: policies.clone(),
        schema_dir: repo_dir("schemas"),
    })
    .unwrap()
    .policies
    .policies()
    .count();
    let deleted = removed - left;
    assert!(deleted >= 1);
    let (ok, out, err) = push(&[]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("0 to create, 1 to update, {deleted} to delete")),
        "{out}"
    );
    assert!(!out.contains("put schema"), "{out}");
    let st = standin.state.lock();
    assert!(
        st.stores["PSpush"].policies.contains_key(&foreign),
        "the foreign policy stays"
    );
    assert_eq!(st.stores["PSpush"].policies.len(), left + 1);
}
