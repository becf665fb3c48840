//! The admin console: web pages for tenant administrators and the platform
//! team, served by `cedargate-admin serve` under `/console/`.
//!
//! The console is a client of the management API and of nothing else: each
//! page calls the API in process ([`api`]) with the signed-in user's token,
//! so every page and every action is authorized, refused and audited
//! exactly as the same call over HTTP. A page the caller may not see is the
//! API's refusal, rendered in words. (Which links and forms a page offers is
//! also asked of the policies, read-only, so people are not shown buttons
//! that can only fail.)
//!
//! Sign-in is OpenID Connect (authorization code with PKCE, [`oidc`]) or, in
//! development (`--allow-dev-keys` with the development key beside the
//! JWKS file), a user picker that mints a development token. Either way the
//! token is checked by the API's verifier and kept in a server-side session
//! ([`session`]); the browser holds only a random cookie (`HttpOnly`,
//! `SameSite=Lax`; `Secure` and `__Host-` when browsers reach the console
//! over https). Every state-changing form carries the session's CSRF
//! token.

pub mod api;
pub mod oidc;
mod pages;
pub mod session;
pub mod view;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use maud::{html, Markup};
use serde::Deserialize;

use crate::config::IdentityConfig;
use crate::identity::devkey::{DevClaims, DevKey};
use crate::identity::JwksSource;
use crate::sidecar::http::{full, Body};
use crate::sidecar::{AppState, Identity, Router};

pub use oidc::OidcConfig;
use session::{same, Sessions};

/// `[console]` of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console (`cedargate-admin serve --no-console` turns it off).
    pub enabled: bool,
    /// A session ends after this long without a request…
    pub session_idle_secs: u64,
    /// …and this long after sign-in in any case (and when its token expires).
    pub session_max_secs: u64,
    /// Sessions kept at most; past it the least recently used one ends.
    pub max_sessions: usize,
    /// Mark cookies `Secure`; default: yes, unless listening on loopback.
    pub secure_cookies: Option<bool>,
    /// The console's address as browsers reach it, ending in `/console/`
    /// (the OIDC redirect URI is this plus `callback`); default:
    /// `http://<listen>/console/`.
    pub public_url: Option<String>,
    /// The development key that signs the user picker's tokens; default:
    /// `dev-key.pem` beside the JWKS file. Used only with `--allow-dev-keys`.
    pub dev_key: Option<PathBuf>,
    pub oidc: Option<OidcConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            session_idle_secs: 30 * 60,
            session_max_secs: 8 * 3600,
            max_sessions: 10_000,
            secure_cookies: None,
            public_url: None,
            dev_key: None,
            oidc: None,
        }
    }
}

impl ConsoleConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.session_idle_secs == 0 || self.session_max_secs == 0 {
            return Err("[console] session limits must be above zero".into());
        }
        if let Some(url) = &self.public_url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.ends_with("/console/");
            if !ok {
                return Err(format!(
                    "[console] public_url must be an http(s) URL ending in /console/, not {url}"
                ));
            }
        }
        Ok(())
    }
}

/// Signs development tokens for the user picker.
struct DevSignIn {
    key: DevKey,
    issuer: String,
    audience: String,
}

/// The console: sessions, sign-in, and the API it is a client of.
pub struct Console {
    config: ConsoleConfig,
    sessions: Sessions,
    oidc: Option<oidc::Oidc>,
    dev: Option<DevSignIn>,
    secure: bool,
    /// The management API's router (without the console).
    api: Arc<dyn Router>,
    /// The recovery window of tenants that set none, in days.
    recovery_days: Option<u32>,
}

const SESSION_COOKIE: &str = "cedargate_console";
const OIDC_COOKIE: &str = "cedargate_oidc";
const LOGIN_COOKIE: &str = "cedargate_login";
const MAX_FORM_BYTES: usize = 64 * 1024;

impl Console {
    /// A console over `api` for a server listening on `listen` with
    /// `identity`; `None` if it is turned off.
    pub fn build(
        config: &ConsoleConfig,
        identity: &IdentityConfig,
        listen: SocketAddr,
        api: Arc<dyn Router>,
    ) -> Result<Option<Self>, String> {
        if !config.enabled {
            return Ok(None);
        }
        config.check()?;
        // Browsers reach the console at `public_url` when it is set (a TLS
        // proxy in front of a loopback listener, say), else at `listen`.
        let secure = config
            .secure_cookies
            .unwrap_or_else(|| match &config.public_url {
                Some(url) => url.starts_with("https://"),
                None => !listen.ip().is_loopback(),
            });
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{listen}/console/"));
        let jwt = match identity {
            IdentityConfig::Jwt(j) => Some(j),
            IdentityConfig::Trusted => None,
        };
        let oidc = match (&config.oidc, jwt) {
            (None, _) => None,
            (Some(_), None) => {
                return Err("[console.oidc] needs token identity (--identity jwt)".into())
            }
            (Some(o), Some(j)) => {
                let issuer = o.issuer.clone().unwrap_or_else(|| j.issuer.clone());
                Some(oidc::Oidc::new(
                    o.clone(),
                    issuer,
                    format!("{public_url}callback"),
                ))
            }
        };
        let dev = match jwt {
            Some(j) if j.allow_dev_keys => {
                let path = config.dev_key.clone().or_else(|| match &j.jwks {
                    JwksSource::File(f) => Some(f.with_file_name("dev-key.pem")),
                    _ => None,
                });
                match path {
                    Some(p) if p.exists() || config.dev_key.is_some() => Some(DevSignIn {
                        key: DevKey::read(&p).map_err(|e| e.to_string())?,
                        issuer: j.issuer.clone(),
                        audience: j
                            .audiences
                            .first()
                            .cloned()
                            .unwrap_or_else(|| crate::identity::devkey::DEV_AUDIENCE.into()),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(Some(Console {
            sessions: Sessions::new(
                Duration::from_secs(config.session_idle_secs),
                Duration::from_secs(config.session_max_secs),
                config.max_sessions,
            ),
            config: config.clone(),
            oidc,
            dev,
            secure,
            api,
            recovery_days: None,
        }))
    }

    /// The service's recovery window (`[retention] recovery_days`), shown
    /// for tenants that set none.
    pub fn with_recovery_days(mut self, days: u32) -> Self {
        self.recovery_days = Some(days);
        self
    }

    /// A cookie's name as set: with `Secure` cookies, the `__Host-` prefix,
    /// so no other host (a sibling subdomain) can set or shadow it.
    fn cookie_name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        }
    }

    fn session_cookie_name(&self) -> String {
        self.cookie_name(SESSION_COOKIE)
    }

    /// `Set-Cookie` for `base` (named by [`Console::cookie_name`]).
    fn cookie(&self, base: &str, value: &str, max_age: Option<u64>) -> String {
        let name = self.cookie_name(base);
        let mut c = if self.secure {
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Secure")
        } else {
            format!("{name}={value}; Path=/console/; HttpOnly; SameSite=Lax")
        };
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        c
    }

    fn clear_cookie(&self, name: &str) -> String {
        self.cookie(name, "", Some(0))
    }

    async fn handle(
        self: Arc<Self>,
        state: Arc<AppState>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        let rest = path.strip_prefix("/console").unwrap_or_default();
        if rest.is_empty() {
            return redirect("/console/", &[]);
        }
        let segments: Vec<String> = rest
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        let query = query_of(req.uri().query());
        let cookies = cookies_of(req.headers());
        let headers = req.headers().clone();
        let form = if method == Method::POST {
            if !same_origin(&headers) {
                return html_page(
                    StatusCode::FORBIDDEN,
                    view::problem(
                        None,
                        "Refused",
                        "This form was sent from another site, so it was not accepted.",
                    ),
                );
            }
            match read_form(req).await {
                Ok(f) => f,
                Err(resp) => return resp,
            }
        } else {
            HashMap::new()
        };
        match (&method, segs.as_slice()) {
            (&Method::GET, ["static", "console.css"]) => {
                let mut resp = Response::new(full(view::CSS));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/css"));
                resp.headers_mut().insert(
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                );
                return resp;
            }
            (&Method::GET, ["login"]) => return self.login_page(&state, &query).await,
            (&Method::GET, ["login", "oidc"]) => return self.oidc_start().await,
            (&Method::GET, ["callback"]) => {
                return self
                    .oidc_finish(&state, &query, &cookies, &headers, peer)
                    .await
            }
            (&Method::POST, ["login", "dev"]) => {
                return self
                    .dev_sign_in(&state, &form, &cookies, &headers, peer)
                    .await
            }
            _ => {}
        }
        let cookie = cookies.get(&self.session_cookie_name());
        let Some(session) = cookie.and_then(|c| self.sessions.get(c)) else {
            return match method {
                Method::GET => redirect("/console/login", &[]),
                _ => html_page(
                    StatusCode::UNAUTHORIZED,
                    view::problem(
                        None,
                        "Signed out",
                        "Your session has ended. Sign in again, then repeat what you were doing.",
                    ),
                ),
            };
        };
        if method == Method::POST {
            let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
            if !same(sent, &session.csrf) {
                return html_page(
                    StatusCode::FORBIDDEN,
                    view::problem(
                        None,
                        "Refused",
                        "This form has expired or did not come from this console. Reload the page and try again.",
                    ),
                );
            }
        }
        if let (&Method::POST, ["logout"]) = (&method, segs.as_slice()) {
            if let Some(c) = cookie {
                self.sessions.remove(c);
            }
            let clear = self.clear_cookie(SESSION_COOKIE);
            return redirect("/console/login?signed_out=1", &[clear]);
        }
        let ctx = pages::Ctx {
            api: api::Api {
                router: self.api.clone(),
                state: state.clone(),
                origin: api::Origin::of(&headers, peer),
                token: session.token.clone(),
            },
            state,
            session,
            query,
            form,
            now: chrono::Utc::now(),
            recovery_days: self.recovery_days,
        };
        let resp = pages::dispatch(&ctx, &method, &segs).await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The API no longer accepts the token: the session is over.
            if let Some(c) = cookie {
                self.sessions.remove(c);
            }
        }
        resp
    }

    async fn login_page(
        &self,
        state: &AppState,
        query: &HashMap<String, String>,
    ) -> Response<Body> {
        let login_csrf = session::random_token();
        let tenants = match &self.dev {
            // The picker lists tenants from the store directly: development only.
            Some(_) => state
                .engine
                .cache()
                .store()
                .list_tenants(None, 100)
                .await
                .map(|(t, _)| t)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let notice = query
            .contains_key("signed_out")
            .then_some("You have signed out.");
        let body = html! {
            @if let Some(o) = &self.oidc {
                div.card {
                    p { "Sign in with your organisation's account (" (o.issuer()) ")." }
                    p { a href="/console/login/oidc" id="sign-in-oidc" { "Sign in" } }
                }
            }
            @if self.dev.is_some() {
                div.card {
                    h2 { "Development sign-in" }
                    p.muted { "Signs you in with a development key as any user. Never enabled in production." }
                    form.stack method="post" action="/console/login/dev" {
                        input type="hidden" name="login" value=(login_csrf);
                        label { "Tenant"
                            select name="tenant" id="dev-tenant" {
                                @for t in &tenants {
                                    option value=(t.tenant_id.as_str()) { (t.tenant_id.as_str()) " — " (t.name) }
                                }
                            }
                        }
                        label { "User id" input name="user" id="dev-user" required value="alice"; }
                        label { "Role"
                            select name="role" id="dev-role" {
                                @for r in ["admin", "editor", "viewer", "platform-admin", "billing-integration"] {
                                    option value=(r) { (r) }
                                }
                            }
                        }
                        label { "Clearance"
                            select name="clearance" id="dev-clearance" {
                                @for l in 0..=crate::model::Level::MAX {
                                    option value=(l) { (l) }
                                }
                            }
                        }
                        button type="submit" id="dev-sign-in" { "Sign in as this user" }
                    }
                }
            }
            @if self.oidc.is_none() && self.dev.is_none() {
                p.problem role="alert" {
                    "No sign-in method is configured. Set [console.oidc] in the configuration, or serve with --allow-dev-keys for development."
                }
            }
        };
        let mut resp = html_page(StatusCode::OK, view::page("Sign in", None, notice, body));
        set_cookie(
            &mut resp,
            &self.cookie(LOGIN_COOKIE, &login_csrf, Some(600)),
        );
        resp
    }

    async fn oidc_start(&self) -> Response<Body> {
        let Some(o) = &self.oidc else {
            return not_found_page();
        };
        match o.start().await {
            Ok((st, url)) => {
                let c = self.cookie(OIDC_COOKIE, &st, Some(oidc::PENDING_TTL.as_secs()));
                redirect(&url, &[c])
            }
            Err(e) => {
                tracing::warn!(error = %e, "console sign-in could not start");
                html_page(
                    StatusCode::BAD_GATEWAY,
                    view::problem(
                        None,
                        "Sign-in is unavailable",
                        "The sign-in service cannot be reached right now. Try again in a moment.",
                    ),
                )
            }
        }
    }

    async fn oidc_finish(
        &self,
        state: &AppState,
        query: &HashMap<String, String>,
        cookies: &HashMap<String, String>,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some(o) = &self.oidc else {
            return not_found_page();
        };
        let failed = |text: &str| {
            html_page(
                StatusCode::BAD_REQUEST,
                view::problem(None, "Sign-in failed", text),
            )
        };
        if let Some(e) = query.get("error") {
            tracing::info!(error = %e, "the identity provider refused the sign-in");
            return failed("The sign-in was cancelled or refused by your identity provider.");
        }
        let (Some(st), Some(code)) = (query.get("state"), query.get("code")) else {
            return failed("The sign-in answer is incomplete. Sign in again.");
        };
        let bound = cookies
            .get(&self.cookie_name(OIDC_COOKIE))
            .is_some_and(|c| same(c, st));
        if !bound {
            return failed("This sign-in was not started in this browser. Sign in again.");
        }
        let tokens = match o.finish(st, code).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(error = %e, "console sign-in failed");
                return failed("The sign-in could not be completed. Sign in again.");
            }
        };
        let clear = self.clear_cookie(OIDC_COOKIE);
        match self
            .start_session(state, &tokens.id_token, Some(&tokens.nonce), headers, peer)
            .await
        {
            Ok(cookie) => redirect("/console/", &[cookie, clear]),
            Err(text) => failed(&text),
        }
    }

    async fn dev_sign_in(
        &self,
        state: &AppState,
        form: &HashMap<String, String>,
        cookies: &HashMap<String, String>,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some(dev) = &self.dev else {
            return not_found_page();
        };
        let sent = form.get("login").map(String::as_str).unwrap_or_default();
        if !cookies
            .get(&self.cookie_name(LOGIN_COOKIE))
            .is_some_and(|c| same(c, sent))
        {
            return html_page(
                StatusCode::FORBIDDEN,
                view::problem(
                    None,
                    "Refused",
                    "This sign-in form has expired. Reload the sign-in page and try again.",
                ),
            );
        }
        let field = |k: &str| {
            form.get(k)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let groups = pages::list_field(&field("role"));
        let (user, tenant) = (field("user"), field("tenant"));
        let claims = DevClaims {
            issuer: &dev.issuer,
            audience: &dev.audience,
            sub: &user,
            tenant: &tenant,
            groups: &groups,
            clearance: field("clearance").parse().ok(),
            ttl_secs: i64::try_from(self.config.session_max_secs).unwrap_or(i64::MAX),
        };
        let token = match dev.key.mint(&claims.to_json()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "development token not minted");
                return html_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    view::problem(None, "Sign-in failed", "The development key cannot sign."),
                );
            }
        };
        match self.start_session(state, &token, None, headers, peer).await {
            Ok(cookie) => redirect("/console/", &[cookie, self.clear_cookie(LOGIN_COOKIE)]),
            Err(text) => html_page(
                StatusCode::BAD_REQUEST,
                view::problem(None, "Sign-in failed", &text),
            ),
        }
    }

    /// Checks a token with the API's verifier (and, for OIDC, its nonce);
    /// starts a session; returns its `Set-Cookie`.
    async fn start_session(
        &self,
        state: &AppState,
        token: &str,
        nonce: Option<&str>,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<String, String> {
        let Identity::Jwt(verifier) = &state.identity else {
            return Err("The console needs token identity.".into());
        };
        let now = chrono::Utc::now();
        let meta = crate::sidecar::routes::request_meta(headers, peer);
        let claims = match verifier.verify_claims_fresh(token).await {
            Ok((claims, sign_in)) => {
                if let (Some(s), Ok(p)) = (sign_in, verifier.principal_of(&claims)) {
                    state.auth.signed_in(&p, &s, &meta, "console", now);
                }
                claims
            }
            Err(e) => {
                state.auth.refused(&e, Some(token), &meta, "console", now);
                return Err(format!("Your sign-in was not accepted ({e})."));
            }
        };
        if let Some(n) = nonce {
            let ok = claims
                .get("nonce")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|c| same(c, n));
            if !ok {
                return Err("Your sign-in was not accepted (nonce).".into());
            }
        }
        let principal = verifier
            .principal_of(&claims)
            .map_err(|e| format!("Your sign-in was not accepted ({e})."))?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        let id = self.sessions.create(token.to_string(), principal, exp);
        Ok(self.cookie(SESSION_COOKIE, &id, None))
    }
}

/// The admin server's routes with the console: `/console…` to the console,
/// the rest to the API.
pub struct Routes {
    console: Arc<Console>,
    api: Arc<dyn Router>,
}

impl Routes {
    pub fn new(console: Console) -> Self {
        let api = console.api.clone();
        Routes {
            console: Arc::new(console),
            api,
        }
    }
}

impl Router for Routes {
    fn route(
        &self,
        state: Arc<AppState>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        let path = req.uri().path();
        if path == "/console" || path.starts_with("/console/") {
            let console = self.console.clone();
            Box::pin(async move { console.handle(state, req, peer).await })
        } else {
            self.api.route(state, req, peer)
        }
    }
}

/// A rendered page with the console's security headers.
pub(crate) fn html_page(status: StatusCode, page: Markup) -> Response<Body> {
    let mut resp = Response::new(full(page.into_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    resp
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

pub(crate) fn redirect(location: &str, cookies: &[String]) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    security_headers(resp.headers_mut());
    for c in cookies {
        set_cookie(&mut resp, c);
    }
    resp
}

fn set_cookie(resp: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(hyper::header::SET_COOKIE, v);
    }
}

fn not_found_page() -> Response<Body> {
    html_page(
        StatusCode::NOT_FOUND,
        view::problem(None, "Not found", "There is no such page."),
    )
}

fn query_of(q: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn cookies_of(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A cross-site form post carries an `Origin` naming another site; a
/// same-site one (or an old browser's, without `Origin`) passes to the
/// CSRF token check.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or_default();
    origin_host == host || forwarded.is_some_and(|f| f == origin_host)
}

async fn read_form(req: Request<Incoming>) -> Result<HashMap<String, String>, Response<Body>> {
    let too_big = || {
        html_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            view::problem(None, "Too large", "This form is too large to be accepted."),
        )
    };
    let bytes = match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(too_big()),
    };
    Ok(form_urlencoded::parse(&bytes)
        .into_owned()
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cross_site_origin_is_refused_and_the_same_site_passes() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("admin.example.com"));
        assert!(same_origin(&h), "no Origin: the CSRF token decides");
        h.insert(
            "origin",
            HeaderValue::from_static("https://admin.example.com"),
        );
        assert!(same_origin(&h));
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    fn console_on(listen: &str, secure: Option<bool>, public_url: Option<&str>) -> Console {
        let api: Arc<dyn Router> = Arc::new(crate::admin::AdminRoutes::new(
            crate::retention::RetentionConfig::new("unused".into()),
            crate::clock::system(),
        ));
        let config = ConsoleConfig {
            secure_cookies: secure,
            public_url: public_url.map(String::from),
            ..ConsoleConfig::default()
        };
        Console::build(
            &config,
            &IdentityConfig::Trusted,
            listen.parse().unwrap(),
            api,
        )
        .unwrap()
        .expect("on by default")
    }

    #[test]
    fn cookies_are_secure_and_host_bound_unless_served_on_loopback() {
        let public = console_on("0.0.0.0:8181", None, None);
        assert_eq!(
            public.cookie(SESSION_COOKIE, "v", None),
            "__Host-cedargate_console=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            public.cookie(OIDC_COOKIE, "s", Some(600)),
            "__Host-cedargate_oidc=s; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=600"
        );
        let local = console_on("127.0.0.1:8181", None, None);
        assert_eq!(
            local.cookie(SESSION_COOKIE, "v", Some(0)),
            "cedargate_console=v; Path=/console/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
        // Behind a TLS proxy on loopback: the public URL decides.
        let proxied = console_on(
            "127.0.0.1:8181",
            None,
            Some("https://admin.example.com/console/"),
        );
        assert_eq!(proxied.session_cookie_name(), "__Host-cedargate_console");
        let forced = console_on("127.0.0.1:8181", Some(true), None);
        assert!(forced
            .cookie(LOGIN_COOKIE, "s", Some(600))
            .contains("; Secure"));
    }

    #[test]
    fn turned_off_it_is_not_built() {
        let api: Arc<dyn Router> = Arc::new(crate::admin::AdminRoutes::new(
            crate::retention::RetentionConfig::new("unused".into()),
            crate::clock::system(),
        ));
        let off = ConsoleConfig {
            enabled: false,
            ..ConsoleConfig::default()
        };
        let built = Console::build(
            &off,
            &IdentityConfig::Trusted,
            "127.0.0.1:1".parse().unwrap(),
            api,
        );
        assert!(matches!(built, Ok(None)));
    }

    #[test]
    fn config_is_checked() {
        let mut c = ConsoleConfig::default();
        assert!(c.check().is_ok());
        c.public_url = Some("https://admin.example.com/".into());
        assert!(c.check().is_err());
        c.public_url = Some("https://admin.example.com/console/".into());
        assert!(c.check().is_ok());
        c.session_idle_secs = 0;
        assert!(c.check().is_err());
    }
}
