//! Shared set-up: the real policies and schema, a fresh SQLite store per test
//! with the fixture data, the engine, and `spawn_app` for HTTP tests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cedargate::app::App;
use cedargate::authz::entities::Principal;
use cedargate::authz::{AuthzRequest, ResourceRef};
use cedargate::config::Settings;
use cedargate::ids::{DocumentId, RoleName, TenantId, UserId};
use cedargate::model::{DataSet, Level};
use cedargate::sidecar::client::{self, Reply};
use cedargate::store::{self, StoreUrl};
use hyper::Method;
use tempfile::TempDir;

pub const FIXTURE: &str = include_str!("fixture.json");

pub fn repo_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

pub fn fixture() -> DataSet {
    serde_json::from_str(FIXTURE).expect("fixture parses")
}

/// Silent unless TEST_LOG is set.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_test_writer()
            .try_init();
    }
}

pub fn principal(id: &str, tenant: &str, roles: &[&str], clearance: u8) -> Principal {
    Principal {
        id: UserId::parse(id).unwrap(),
        tenant: TenantId::parse(tenant).unwrap(),
        roles: roles.iter().map(|r| RoleName::parse(*r).unwrap()).collect(),
        clearance: Level::new(clearance).unwrap(),
    }
}

pub fn doc(id: &str) -> ResourceRef {
    ResourceRef::Document(DocumentId::parse(id).unwrap())
}

pub fn tenant(id: &str) -> ResourceRef {
    ResourceRef::Tenant(TenantId::parse(id).unwrap())
}

pub fn request(
    p: &Principal,
    action: &str,
    resource: ResourceRef,
    context: serde_json::Value,
) -> AuthzRequest {
    AuthzRequest {
        principal: p.clone(),
        action: action.to_string(),
        resource,
        context,
    }
}

/// A running sidecar on an ephemeral port, with its own store and a copy of
/// the policies it may edit.
pub struct TestApp {
    pub addr: SocketAddr,
    pub policy_dir: PathBuf,
    /// The store the app uses (as wrapped).
    pub store: Arc<dyn store::Store>,
    pub spool_dir: PathBuf,
    /// Holds the store file and policy copies until the test ends.
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        } else if path.is_dir() {
            // templates/ (and tests/).
            copy_dir(&path, &to.join(path.file_name().unwrap()));
        }
    }
}

/// A fresh store file with the fixture imported.
pub async fn fixture_store(dir: &Path) -> StoreUrl {
    let url = StoreUrl::Sqlite(dir.join("store.db"));
    let s = store::open(&url).await.unwrap();
    s.import(&fixture()).await.unwrap();
    url
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(tweak, |s| s).await
}

/// `wrap` may put something in front of the fixture store.
pub async fn spawn_app_on(
    tweak: impl FnOnce(&mut Settings),
    wrap: impl FnOnce(Arc<dyn store::Store>) -> Arc<dyn store::Store>,
) -> TestApp {
    spawn_routed(tweak, wrap, Arc::new(cedargate::sidecar::SidecarRoutes)).await
}

/// Like [`spawn_app_on`], serving `router` (the sidecar's or the admin
/// API's).
pub async fn spawn_routed(
    tweak: impl FnOnce(&mut Settings),
    wrap: impl FnOnce(Arc<dyn store::Store>) -> Arc<dyn store::Store>,
    router: Arc<dyn cedargate::sidecar::Router>,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    spawn_at(dir, url, tweak, wrap, router).await
}

/// A server on an existing store (several servers may share one), with its
/// own policy copies and spool.
pub async fn spawn_in(
    url: StoreUrl,
    tweak: impl FnOnce(&mut Settings),
    router: Arc<dyn cedargate::sidecar::Router>,
) -> TestApp {
    spawn_at(tempfile::tempdir().unwrap(), url, tweak, |s| s, router).await
}

async fn spawn_at(
    dir: TempDir,
    url: StoreUrl,
    tweak: impl FnOnce(&mut Settings),
    wrap: impl FnOnce(Arc<dyn store::Store>) -> Arc<dyn store::Store>,
    router: Arc<dyn cedargate::sidecar::Router>,
) -> TestApp {
    init_logging();
    let policy_dir = dir.path().join("policies");
    let schema_dir = dir.path().join("schemas");
    copy_dir(&repo_dir("policies"), &policy_dir);
    copy_dir(&repo_dir("schemas"), &schema_dir);
    let mut settings = Settings::trusted(url.clone(), &policy_dir, &schema_dir);
    settings.reload_interval = std::time::Duration::from_millis(50);
    settings.audit.spool_dir = dir.path().join("audit-spool");
    settings.audit.shutdown_timeout = std::time::Duration::from_secs(2);
    // Searches are counted into usage only at shutdown unless a test asks:
    // tests that probe with searches must not use up a tenant's quota.
    settings.usage_flush_interval = std::time::Duration::from_secs(3600);
    tweak(&mut settings);
    let spool_dir = settings.audit.spool_dir.clone();
    let store = wrap(store::open(&settings.store).await.unwrap());
    let app = App::build_with_store(settings, store.clone())
        .await
        .expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_with(listener, router, async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        policy_dir,
        store,
        spool_dir,
        _dir: dir,
        stop: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub async fn send(&self, method: Method, path: &str, body: impl Into<bytes::Bytes>) -> Reply {
        client::send(self.addr, method, path, body)
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.send(Method::POST, path, body.to_string()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, "").await
    }

    /// Stops the server and waits for it to drain.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

/// A sidecar over a [`FlakyStore`] in front of the fixture store.
pub async fn spawn_flaky_app(tweak: impl FnOnce(&mut Settings)) -> (TestApp, Arc<FlakyStore>) {
    let mut flaky = None;
    let app = spawn_app_on(tweak, |inner| {
        let f = FlakyStore::wrap(inner);
        flaky = Some(f.clone());
        f
    })
    .await;
    (app, flaky.expect("the store was wrapped"))
}

/// A real store that can be switched off, to see how the sidecar fails.
pub struct FlakyStore {
    pub inner: Arc<dyn store::Store>,
    pub down: std::sync::atomic::AtomicBool,
    /// Document reads so far.
    pub document_reads: std::sync::atomic::AtomicUsize,
    /// Deletions to let through before the store goes down (negative: no
    /// limit), to interrupt a job part-way.
    pub deletes_left: std::sync::atomic::AtomicI64,
    /// Audit pages read so far, and how long each read takes (ms).
    pub audit_reads: std::sync::atomic::AtomicUsize,
    pub audit_delay_ms: std::sync::atomic::AtomicU64,
    /// The records each audit write carried, in order.
    pub audit_writes: std::sync::Mutex<Vec<usize>>,
}

impl FlakyStore {
    pub fn wrap(inner: Arc<dyn store::Store>) -> Arc<Self> {
        Arc::new(FlakyStore {
            inner,
            down: Default::default(),
            document_reads: Default::default(),
            deletes_left: std::sync::atomic::AtomicI64::new(-1),
            audit_reads: Default::default(),
            audit_delay_ms: Default::default(),
            audit_writes: Default::default(),
        })
    }
}

impl FlakyStore {
    fn check(&self) -> Result<(), store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(store::StoreError::Unavailable(
                "switched off by the test".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl store::Store for FlakyStore {
    async fn migrate(&self) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn get_tenant(
        &self,
        id: &TenantId,
    ) -> Result<Option<cedargate::model::Tenant>, store::StoreError> {
        self.check()?;
        self.inner.get_tenant(id).await
    }
    async fn get_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
    ) -> Result<Option<cedargate::model::Document>, store::StoreError> {
        self.document_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.check()?;
        self.inner.get_document(tenant, id).await
    }
    async fn put_tenant(&self, t: &cedargate::model::Tenant) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_tenant(t).await
    }
    async fn tenant_policies(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<cedargate::policy::tenant::TenantPolicy>, store::StoreError> {
        self.check()?;
        self.inner.tenant_policies(tenant).await
    }
    async fn put_tenant_policy_if(
        &self,
        p: &cedargate::policy::tenant::TenantPolicy,
        expected: Option<&str>,
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_tenant_policy_if(p, expected).await
    }
    async fn delete_tenant_policy_if(
        &self,
        tenant: &TenantId,
        policy: &cedargate::ids::PolicyName,
        expected: &str,
    ) -> Result<bool, store::StoreError> {
        self.check()?;
        self.inner
            .delete_tenant_policy_if(tenant, policy, expected)
            .await
    }
    async fn put_document(&self, d: &cedargate::model::Document) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_document(d).await
    }
    async fn put_document_if(
        &self,
        d: &cedargate::model::Document,
        expected: &cedargate::model::Document,
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_document_if(d, expected).await
    }
    async fn delete_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
        if_deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<bool, store::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.check()?;
        if self.deletes_left.load(SeqCst) == 0 {
            self.down.store(true, SeqCst);
            self.check()?;
        }
        if self.deletes_left.load(SeqCst) > 0 {
            self.deletes_left.fetch_sub(1, SeqCst);
        }
        self.inner.delete_document(tenant, id, if_deleted_at).await
    }
    async fn expire_audit(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, store::StoreError> {
        self.check()?;
        self.inner.expire_audit(now).await
    }
    async fn import(&self, data: &DataSet) -> Result<store::ImportSummary, store::StoreError> {
        self.check()?;
        self.inner.import(data).await
    }
    async fn change_cursor(&self) -> Result<store::ChangeCursor, store::StoreError> {
        self.check()?;
        self.inner.change_cursor().await
    }
    async fn changes_since(
        &self,
        c: &store::ChangeCursor,
    ) -> Result<(Vec<(String, store::Change)>, store::ChangeCursor), store::StoreError> {
        self.check()?;
        self.inner.changes_since(c).await
    }
    async fn migrations(&self) -> Result<Vec<(String, serde_json::Value)>, store::StoreError> {
        self.check()?;
        self.inner.migrations().await
    }
    async fn record_migration(
        &self,
        id: &str,
        state: Option<&serde_json::Value>,
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.record_migration(id, state).await
    }
    async fn raw_tenants(&self) -> Result<Vec<serde_json::Value>, store::StoreError> {
        self.check()?;
        self.inner.raw_tenants().await
    }
    async fn put_raw_tenant(&self, r: &serde_json::Value) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_raw_tenant(r).await
    }
    async fn put_audit(&self, e: &[cedargate::audit::AuditEvent]) -> Result<(), store::StoreError> {
        self.check()?;
        self.audit_writes.lock().unwrap().push(e.len());
        self.inner.put_audit(e).await
    }
    async fn put_tenant_if(
        &self,
        t: &cedargate::model::Tenant,
        expected: Option<&str>,
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_tenant_if(t, expected).await
    }
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<(Vec<cedargate::model::Tenant>, bool), store::StoreError> {
        self.check()?;
        self.inner.list_tenants(after, limit).await
    }
    async fn add_usage(
        &self,
        tenant: &TenantId,
        delta: &store::UsageDelta,
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.add_usage(tenant, delta).await
    }
    async fn add_decisions(
        &self,
        tenant: &TenantId,
        month: &str,
        counts: &[(String, cedargate::authz::Effect, u64)],
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.add_decisions(tenant, month, counts).await
    }
    async fn decisions_in(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Vec<(String, cedargate::authz::Effect, u64)>, store::StoreError> {
        self.check()?;
        self.inner.decisions_in(tenant, month).await
    }
    async fn put_storage_sample(
        &self,
        tenant: &TenantId,
        day: chrono::NaiveDate,
        bytes: u64,
    ) -> Result<(), store::StoreError> {
        self.check()?;
        self.inner.put_storage_sample(tenant, day, bytes).await
    }
    async fn storage_samples(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Vec<(u32, u64)>, store::StoreError> {
        self.check()?;
        self.inner.storage_samples(tenant, month).await
    }
    async fn documents_of(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<(Vec<cedargate::model::Document>, bool), store::StoreError> {
        self.check()?;
        self.inner.documents_of(tenant, after, limit).await
    }
    async fn deleted_documents(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<(Vec<cedargate::model::Document>, Option<DocumentId>), store::StoreError> {
        self.check()?;
        self.inner.deleted_documents(tenant, after, limit).await
    }
    async fn build_index(&self, index: store::Index) -> Result<Vec<String>, store::StoreError> {
        self.inner.build_index(index).await
    }
    async fn drop_index(&self, index: store::Index) -> Result<Vec<String>, store::StoreError> {
        self.inner.drop_index(index).await
    }
    async fn audit_events(
        &self,
        q: &store::AuditQuery,
    ) -> Result<store::AuditPage, store::StoreError> {
        self.check()?;
        self.audit_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = self
            .audit_delay_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        self.inner.audit_events(q).await
    }
}

pub const ISSUER: &str = "https://issuer.test/pool";
pub const AUDIENCE: &str = "client-a";
pub const RSA_PEM: &str = include_str!("keys/rsa-test.pem");
pub const RSA_PUB_PEM: &str = include_str!("keys/rsa-test.pub.pem");
pub const RSA_KID: &str = "test-rsa-1";

/// Signing keys of a token-mode test app: an ES256 development key and the
/// RS256 test key, both in the app's JWKS.
pub struct Keys {
    pub dev: cedargate::identity::devkey::DevKey,
}

impl Keys {
    /// An ES256 ID token with the standard claims for `sub` in `tenant`,
    /// with `edit` applied to the claims first.
    pub fn token(
        &self,
        sub: &str,
        tenant: &str,
        groups: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> String {
        let mut claims = claims(sub, tenant, groups);
        edit(&mut claims);
        self.dev.mint(&claims).unwrap()
    }

    /// The same claims signed RS256 with the RSA test key.
    pub fn rsa_token(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(RSA_KID.into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

pub fn claims(sub: &str, tenant: &str, groups: &[&str]) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "token_use": "id", "sub": sub,
        "iat": now, "nbf": now - 1, "exp": now + 600,
        "custom:tenant_id": tenant, "cognito:groups": groups, "custom:clearance": "1"
    })
}

/// Writes a JWKS with both test keys into `dir`.
pub fn write_jwks(dir: &Path, dev: &cedargate::identity::devkey::DevKey) -> PathBuf {
    let mut jwks = dev.jwks();
    let rsa: serde_json::Value =
        serde_json::from_str(include_str!("keys/rsa-test.jwks.json")).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(rsa["keys"][0].clone());
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    path
}

/// A sidecar in token mode, trusting both test keys.
pub async fn spawn_jwt_app() -> (TestApp, Keys) {
    spawn_jwt_app_with(|_| {}).await
}

pub async fn spawn_jwt_app_with(
    tweak: impl FnOnce(&mut cedargate::identity::JwtConfig),
) -> (TestApp, Keys) {
    spawn_jwt_app_full(tweak, |_| {}).await
}

/// Token mode, with both the token settings and the rest tweakable.
pub async fn spawn_jwt_app_full(
    tweak: impl FnOnce(&mut cedargate::identity::JwtConfig),
    settings: impl FnOnce(&mut Settings),
) -> (TestApp, Keys) {
    spawn_jwt_routed(tweak, settings, Arc::new(cedargate::sidecar::SidecarRoutes)).await
}

/// The management API in token mode over the fixture store.
pub async fn spawn_admin_app(settings: impl FnOnce(&mut Settings)) -> (TestApp, Keys) {
    let retention = cedargate::retention::RetentionConfig::new("unused-archives".into());
    spawn_admin_app_at(cedargate::clock::system(), retention, settings).await
}

/// The management API reading `clock`, with `retention`'s recovery window.
pub async fn spawn_admin_app_at(
    clock: cedargate::clock::SharedClock,
    retention: cedargate::retention::RetentionConfig,
    settings: impl FnOnce(&mut Settings),
) -> (TestApp, Keys) {
    spawn_jwt_routed(
        |_| {},
        |s| {
            s.audit.role = "admin".into();
            settings(s);
        },
        Arc::new(cedargate::admin::AdminRoutes::new(retention, clock)),
    )
    .await
}

/// The management API with the admin console (`/console/`) over the
/// fixture store; the console's development sign-in signs with the same
/// key the API's verifier trusts.
pub async fn spawn_console_app(
    config: impl FnOnce(&mut cedargate::console::ConsoleConfig),
) -> (TestApp, Keys) {
    let dev = cedargate::identity::devkey::DevKey::generate();
    let keys_dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(keys_dir.path(), &dev);
    let pem = keys_dir.path().join("dev-key.pem");
    std::fs::write(&pem, dev.to_pem().unwrap()).unwrap();
    let mut jwt = cedargate::identity::JwtConfig::new(
        cedargate::identity::JwksSource::File(jwks),
        ISSUER,
        vec![AUDIENCE.to_string()],
    );
    jwt.allow_dev_keys = true;
    let identity = cedargate::config::IdentityConfig::Jwt(jwt);
    let mut console_config = cedargate::console::ConsoleConfig::default();
    config(&mut console_config);
    let api: Arc<dyn cedargate::sidecar::Router> = Arc::new(cedargate::admin::AdminRoutes::new(
        cedargate::retention::RetentionConfig::new("unused-archives".into()),
        cedargate::clock::system(),
    ));
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let console = cedargate::console::Console::build(&console_config, &identity, loopback, api)
        .unwrap()
        .expect("the console is on")
        .with_recovery_days(30);
    let app = spawn_routed(
        |s| {
            s.identity = identity;
            s.audit.role = "admin".into();
        },
        |s| s,
        Arc::new(cedargate::console::Routes::new(console)),
    )
    .await;
    drop(keys_dir);
    (app, Keys { dev })
}

/// The management API over a [`FlakyStore`] in front of the fixture store.
pub async fn spawn_flaky_admin_app() -> (TestApp, Keys, Arc<FlakyStore>) {
    let mut flaky = None;
    let (app, keys) = spawn_jwt_routed_on(
        |_| {},
        |s| s.audit.role = "admin".into(),
        |inner| {
            let f = FlakyStore::wrap(inner);
            flaky = Some(f.clone());
            f
        },
        Arc::new(cedargate::admin::AdminRoutes::new(
            cedargate::retention::RetentionConfig::new("unused-archives".into()),
            cedargate::clock::system(),
        )),
    )
    .await;
    (app, keys, flaky.expect("the store was wrapped"))
}

async fn spawn_jwt_routed(
    tweak: impl FnOnce(&mut cedargate::identity::JwtConfig),
    settings: impl FnOnce(&mut Settings),
    router: Arc<dyn cedargate::sidecar::Router>,
) -> (TestApp, Keys) {
    spawn_jwt_routed_on(tweak, settings, |s| s, router).await
}

async fn spawn_jwt_routed_on(
    tweak: impl FnOnce(&mut cedargate::identity::JwtConfig),
    settings: impl FnOnce(&mut Settings),
    wrap: impl FnOnce(Arc<dyn store::Store>) -> Arc<dyn store::Store>,
    router: Arc<dyn cedargate::sidecar::Router>,
) -> (TestApp, Keys) {
    let dev = cedargate::identity::devkey::DevKey::generate();
    let keys_dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(keys_dir.path(), &dev);
    let mut jwt = cedargate::identity::JwtConfig::new(
        cedargate::identity::JwksSource::File(jwks),
        ISSUER,
        vec![AUDIENCE.to_string()],
    );
    jwt.allow_dev_keys = true;
    tweak(&mut jwt);
    let app = spawn_routed(
        |s| {
            s.identity = cedargate::config::IdentityConfig::Jwt(jwt);
            settings(s);
        },
        wrap,
        router,
    )
    .await;
    // The JWKS was read at start-up; the directory may go.
    drop(keys_dir);
    (app, Keys { dev })
}

/// A request with `Authorization: Bearer token`, extra headers and a JSON
/// body.
pub async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut h = vec![("authorization", auth.as_str())];
    h.extend_from_slice(headers);
    app.send_with(
        method,
        path,
        &h,
        body.map(serde_json::Value::to_string).unwrap_or_default(),
    )
    .await
}

impl TestApp {
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> Reply {
        client::send_with(self.addr, method, path, headers, body)
            .await
            .expect("request sent")
    }

    /// POST JSON with `Authorization: Bearer token`.
    pub async fn post_as(&self, token: &str, path: &str, body: &serde_json::Value) -> Reply {
        let auth = format!("Bearer {token}");
        self.send_with(
            Method::POST,
            path,
            &[("authorization", &auth)],
            body.to_string(),
        )
        .await
    }
}

/// A small HTTP server on loopback answering every request with `handler`;
/// it lives as long as the test's runtime.
pub async fn serve_fn<F>(handler: F) -> SocketAddr
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> String + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let body = handler(req);
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The value of the metric line that starts with `series` (name and
/// labels), or 0.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `check` until it holds; fails after a generous bound (this is a
/// liveness check, not a timing assertion: latency is in BENCHMARKS.md).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// splitmix64: a small, seeded, reproducible generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The `ETag` an answer carries (the test fails without one).
pub fn etag(r: &Reply) -> String {
    r.headers["etag"].to_str().unwrap().to_string()
}

/// A partition's audit records of `action` from the last hour, as stored.
pub async fn audit_records_of(
    app: &TestApp,
    partition: &str,
    action: &str,
) -> Vec<cedargate::audit::AuditEvent> {
    let q = store::AuditQuery::new(
        TenantId::parse(partition).unwrap(),
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::hours(1),
        1000,
    );
    app.store
        .all_audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}
