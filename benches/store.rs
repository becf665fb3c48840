//! Store-bound figures, for BENCHMARKS.md (`scripts/bench-store.sh` starts
//! DynamoDB Local and runs this with `--bench`):
//! - decision latency on a cache miss (tenant and document read from the
//!   store every time), SQLite and DynamoDB Local;
//! - revocation delay: from a document change written through a second
//!   store handle (as `cedargate-admin` writes) to the first decision of a
//!   running sidecar that reflects it.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it makes a
//! handful of rounds only, as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cedargate::app::App;
use cedargate::authz::entities::Principal;
use cedargate::authz::{AuthzRequest, Effect, Engine, ResourceRef};
use cedargate::config::Settings;
use cedargate::ids::{DocumentId, RoleName, TenantId, UserId};
use cedargate::model::{Level, Visibility};
use cedargate::store::{self, DynamoUrl, StoreUrl};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:45} n={:4}  p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn read_request(doc: &str) -> AuthzRequest {
    AuthzRequest {
        principal: Principal {
            id: UserId::parse("vic").unwrap(),
            tenant: TenantId::parse("acme").unwrap(),
            roles: vec![RoleName::parse("viewer").unwrap()],
            clearance: Level::new(1).unwrap(),
        },
        action: "Read".into(),
        resource: ResourceRef::Document(DocumentId::parse(doc).unwrap()),
        context: serde_json::Value::Null,
    }
}

async fn app(url: &StoreUrl, ttl: Duration) -> App {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = Settings::trusted(url.clone(), &root.join("policies"), &root.join("schemas"));
    s.cache.ttl = ttl;
    s.cache.negative_ttl = ttl;
    s.cache.decision_capacity = 0;
    App::build(s).await.unwrap()
}

async fn cache_miss(name: &str, url: &StoreUrl, rounds: usize) {
    let app = app(url, Duration::ZERO).await;
    let engine = app.state.engine.clone();
    let req = read_request("handbook");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let d = engine.decide(&req).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(d.decision, Effect::Allow);
    }
    report(&format!("{name}: decision on a cache miss"), samples);
}

async fn revocation(name: &str, url: &StoreUrl, rounds: usize) {
    let app = app(url, Duration::from_secs(3600)).await;
    let engine: Arc<Engine> = app.state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let admin = store::open(url).await.unwrap();
    let (acme, id) = (
        TenantId::parse("acme").unwrap(),
        DocumentId::parse("handbook").unwrap(),
    );
    let req = read_request("handbook");
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        // Alternate public (Allow) and private (Deny) and time each flip.
        let visibility = if i % 2 == 0 {
            Visibility::Private
        } else {
            Visibility::Public
        };
        let want = if i % 2 == 0 {
            Effect::Deny
        } else {
            Effect::Allow
        };
        let mut doc = admin.get_document(&acme, &id).await.unwrap().unwrap();
        doc.visibility = visibility;
        let t = Instant::now();
        admin.put_document(&doc).await.unwrap();
        loop {
            if engine.decide(&req).await.unwrap().decision == want {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "change never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(t.elapsed());
    }
    report(
        &format!("{name}: revocation delay (change → decision)"),
        samples,
    );
    let _ = stop.send(());
    let _ = server.await;
}

async fn run(name: &str, url: StoreUrl, full: bool) {
    store::open(&url)
        .await
        .unwrap()
        .import(&cedargate::demo::data().unwrap())
        .await
        .unwrap();
    let (misses, flips) = if full { (1000, 100) } else { (5, 2) };
    cache_miss(name, &url, misses).await;
    revocation(name, &url, flips).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        run(
            "sqlite",
            StoreUrl::Sqlite(dir.path().join("bench.db")),
            full,
        )
        .await;
        match std::env::var("CEDARGATE_BENCH_DYNAMODB") {
            Ok(endpoint) => {
                let url = StoreUrl::Dynamo(DynamoUrl {
                    prefix: format!("bench-{}-", std::process::id()),
                    region: Some("us-east-1".into()),
                    endpoint: Some(endpoint),
                });
                run("dynamodb-local", url, full).await;
            }
            Err(_) => println!(
                "dynamodb-local: not measured (CEDARGATE_BENCH_DYNAMODB is not set; \
                 scripts/bench-store.sh sets it)"
            ),
        }
    });
}
