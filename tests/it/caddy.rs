//! Real Caddy with `forward_auth` to the sidecar, in front of a small
//! upstream, using the shipped `deploy/caddy/Caddyfile`. Caddy passes every
//! header of the client on to the sidecar, so this is where a client can
//! try to choose the request the sidecar judges (`X-Original-URI` and
//! friends): the sidecar, configured for Caddy, must read only what Caddy
//! sets. Caddy is started here on loopback and stopped when the test ends;
//! the test command installs it. Without Caddy the test fails, unless
//! CEDARGATE_SKIP_CADDY is set, in which case it says loudly that it
//! skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use parking_lot::Mutex;

use crate::helpers::*;

type Seen = Arc<Mutex<Vec<(String, String, hyper::HeaderMap)>>>;

fn caddy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CADDY") {
        return Some(p.into());
    }
    ["/usr/bin/caddy", "/usr/local/bin/caddy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

struct Caddy {
    addr: SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn start_caddy(binary: &PathBuf, sidecar: SocketAddr, app: SocketAddr) -> Caddy {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = tokio::process::Command::new(binary)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(repo_dir("deploy/caddy/Caddyfile"))
        .env("CADDY_LISTEN", format!("http://{addr}"))
        .env("CADDY_BIND", "127.0.0.1")
        .env("CEDARGATE_ADDR", sidecar.to_string())
        .env("APP_ADDR", app.to_string())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Caddy {
        addr,
        _child: child,
        _dir: dir,
    }
}

#[tokio::test]
async fn caddy_forward_auth_cannot_be_steered_by_client_headers() {
    let Some(binary) = caddy_binary() else {
        if std::env::var_os("CEDARGATE_SKIP_CADDY").is_some() {
            eprintln!("\n!!! SKIPPED: caddy is not installed (CEDARGATE_SKIP_CADDY is set) !!!\n");
            return;
        }
        panic!("caddy is not installed: run scripts/test.sh (which installs it) or apt-get install caddy");
    };
    let (app, keys) = spawn_jwt_app_full(
        |_| {},
        |s| s.forward_auth.convention = cedargate::sidecar::forward::ProxyConvention::Caddy,
    )
    .await;
    let seen: Seen = Arc::default();
    let upstream = {
        let seen = seen.clone();
        serve_fn(move |req| {
            let path = req.uri().path().to_string();
            seen.lock().push((
                req.method().to_string(),
                path.clone(),
                req.headers().clone(),
            ));
            format!("app:{path}")
        })
        .await
    };
    let caddy = start_caddy(&binary, app.addr, upstream).await;
    let send = |method: Method, token: &str, path: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (addr, path) = (caddy.addr, path.to_string());
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            cedargate::sidecar::client::send_with(addr, method, &path, &headers, "")
                .await
                .unwrap()
        }
    };
    // The headers another proxy would set, all saying "GET /search", which
    // any viewer may do.
    let forged = [("x-original-uri", "/search"), ("x-original-method", "GET")];

    // Tenant t2 reads a t1 document, with nginx's headers forged: refused,
    // and the upstream sees nothing.
    let mallory = keys.token("mallory", "t2", &["admin"], |_| {});
    let r = send(Method::GET, &mallory, "/documents/d-priv", &forged).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        r.json()["error"]["message"],
        "You do not have permission to do this."
    );
    // A viewer's DELETE of a document it may only read, forged as a read.
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = send(Method::DELETE, &vic, "/documents/d-public", &forged).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Caddy sets its own X-Forwarded-Uri: a client's is overwritten.
    let r = send(
        Method::GET,
        &mallory,
        "/documents/d-priv",
        &[
            ("x-forwarded-uri", "/search"),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(seen.lock().is_empty(), "{:?}", seen.lock());

    // No token: the sidecar's 401 with its challenge, through Caddy.
    let r = cedargate::sidecar::client::send(caddy.addr, Method::GET, "/documents/d-public", "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(seen.lock().is_empty());

    // Allowed: the upstream gets the request with the sidecar's identity
    // headers, not the forged ones the client sent.
    let r = send(
        Method::GET,
        &vic,
        "/documents/d-public",
        &[("x-tenant-id", "t2"), ("x-user-id", "root")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, "app:/documents/d-public");
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let (method, path, headers) = &seen[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("GET", "/documents/d-public")
    );
    let all = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("x-tenant-id"), vec!["t1"]);
    assert_eq!(all("x-user-id"), vec!["vic"]);
    assert_eq!(all("x-decision-id").len(), 1);
    drop(caddy);
    app.shutdown().await;
}
