//! Load generator for the Verified Permissions API: `IsAuthorized` through
//! the AWS SDK for Rust, from CONCURRENCY tasks for DURATION seconds;
//! prints calls per second and latency percentiles.
//!
//!   cargo run --release --example avp_load -- ENDPOINT [CONCURRENCY] [SECONDS]

use std::time::{Duration, Instant};

use aws_sdk_verifiedpermissions::types::{ActionIdentifier, EntitiesDefinition, EntityIdentifier};
use serde_json::json;

fn ent(t: &str, i: &str) -> EntityIdentifier {
    EntityIdentifier::builder()
        .entity_type(t)
        .entity_id(i)
        .build()
        .expect("valid")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .expect("usage: avp_load ENDPOINT [CONCURRENCY] [SECONDS]");
    let concurrency: usize = args.next().map_or(32, |a| a.parse().expect("a number"));
    let seconds: u64 = args.next().map_or(10, |a| a.parse().expect("a number"));
    let config = cedargate::aws::sdk_config(Some("us-east-1"), Some(&endpoint)).await;
    let client = aws_sdk_verifiedpermissions::Client::new(&config);
    // A tenant, a viewer and a public document of that tenant.
    let entities = json!([
        {"uid": {"type": "CedarGate::Tenant", "id": "acme"}, "parents": [], "attrs": {
            "name": "Acme", "status": "active",
            "subscription": {"tier": "pro", "startDate": "2026-01-01", "features": []},
            "limits": {"maxDocuments": 10, "maxUsers": 10, "maxStorageGB": 5, "maxQueriesPerMonth": 100},
            "usage": {"documents": 1, "users": 1, "storageGB": 0, "queriesThisMonth": 0},
            "settings": {"dataRetentionDays": 30, "allowedFileTypes": ["pdf"]}}},
        {"uid": {"type": "CedarGate::User", "id": "rita"}, "attrs": {
            "tenant": {"__entity": {"type": "CedarGate::Tenant", "id": "acme"}}, "clearance": 1},
         "parents": [{"type": "CedarGate::Role", "id": "viewer"}]},
        {"uid": {"type": "CedarGate::Document", "id": "memo"}, "parents": [], "attrs": {
            "tenant": {"__entity": {"type": "CedarGate::Tenant", "id": "acme"}},
            "owner": {"__entity": {"type": "CedarGate::User", "id": "olga"}},
            "visibility": "public", "classification": 0, "fileType": "pdf", "sizeBytes": 10,
            "readers": [], "editors": [], "readerRoles": [], "editorRoles": [], "deleted": false}}
    ])
    .to_string();
    let action = ActionIdentifier::builder()
        .action_type("CedarGate::Action")
        .action_id("Read")
        .build()
        .expect("valid");
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let entities = entities.clone();
            let action = action.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < end {
                    let started = Instant::now();
                    let out = client
                        .is_authorized()
                        .policy_store_id("cedargate")
                        .principal(ent("CedarGate::User", "rita"))
                        .action(action.clone())
                        .resource(ent("CedarGate::Document", "memo"))
                        .entities(EntitiesDefinition::CedarJson(entities.clone()))
                        .send()
                        .await;
                    match out {
                        Ok(o) if o.decision().as_str() == "ALLOW" => {
                            latencies.push(started.elapsed())
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "IsAuthorized via the AWS SDK for Rust: {} calls in {elapsed:.1} s = {:.0} calls/s; \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms; {errors} errors or unexpected answers; \
         concurrency {concurrency}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
    );
}
