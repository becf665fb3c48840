//! Real nginx with `auth_request` to the sidecar, in front of a small
//! upstream, using the shipped `deploy/nginx/cedargate.conf.template`.
//! nginx is started here on loopback and stopped when the test ends; the
//! test command installs it. Without nginx the test fails, unless
//! CEDARGATE_SKIP_NGINX is set, in which case it says loudly that it skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use parking_lot::Mutex;

use crate::helpers::*;

/// What the upstream application saw: path and headers.
type Seen = Arc<Mutex<Vec<(String, hyper::HeaderMap)>>>;

async fn upstream(seen: Seen) -> SocketAddr {
    serve_fn(move |req| {
        let path = req.uri().path().to_string();
        seen.lock().push((path.clone(), req.headers().clone()));
        format!("app:{path}")
    })
    .await
}

pub fn nginx_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NGINX") {
        return Some(p.into());
    }
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A running nginx, killed when dropped.
pub struct Nginx {
    pub addr: SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

pub async fn start_nginx(
    binary: &PathBuf,
    sidecar: SocketAddr,
    app: SocketAddr,
    extra_server: &str,
) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let template =
        std::fs::read_to_string(repo_dir("deploy/nginx/cedargate.conf.template")).unwrap();
    let conf = template
        .replace("${NGINX_LISTEN}", &addr.to_string())
        .replace("${CEDARGATE_ADDR}", &sidecar.to_string())
        .replace("${APP_ADDR}", &app.to_string());
    assert!(!conf.contains("${"), "unsubstituted placeholder");
    std::fs::write(
        dir.path().join("cedargate.conf"),
        format!("{conf}\n{extra_server}\n"),
    )
    .unwrap();
    let d = dir.path().display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         include {d}/cedargate.conf;\n}}\n"
    );
    let main_path = dir.path().join("nginx.conf");
    std::fs::write(&main_path, main).unwrap();
    let check = std::process::Command::new(binary)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&main_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = tokio::process::Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&main_path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Nginx {
        addr,
        _child: child,
        _dir: dir,
    }
}

#[tokio::test]
async fn nginx_auth_request_guards_the_upstream() {
    let Some(binary) = nginx_binary() else {
        if std::env::var_os("CEDARGATE_SKIP_NGINX").is_some() {
            eprintln!("\n!!! SKIPPED: nginx is not installed (CEDARGATE_SKIP_NGINX is set) !!!\n");
            return;
        }
        panic!("nginx is not installed: run scripts/test.sh (which installs it) or apt-get install nginx-light");
    };
    let (app, keys) = spawn_jwt_app_full(
        |_| {},
        |s| s.forward_auth.convention = cedargate::sidecar::forward::ProxyConvention::Nginx,
    )
    .await;
    let seen: Seen = Arc::default();
    let upstream_addr = upstream(seen.clone()).await;
    let nginx = start_nginx(&binary, app.addr, upstream_addr, "").await;
    let send =
        |token: Option<String>, path: &'static str, extra: Vec<(&'static str, &'static str)>| {
            let addr = nginx.addr;
            async move {
                let auth = token.map(|t| format!("Bearer {t}"));
                let mut headers: Vec<(&str, &str)> = extra;
                if let Some(a) = auth.as_deref() {
                    headers.push(("authorization", a));
                }
                cedargate::sidecar::client::send_with(addr, Method::GET, path, &headers, "")
                    .await
                    .unwrap()
            }
        };

    // Tenant t2 reads a t1 document: nginx answers 403, the upstream sees nothing.
    let mallory = keys.token("mallory", "t2", &["admin"], |_| {});
    let r = send(Some(mallory), "/documents/d-priv", vec![]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "forbidden", "{}", r.body);
    assert_eq!(
        r.json()["error"]["message"],
        "You do not have permission to do this."
    );
    assert!(seen.lock().is_empty());

    // No token, or a bad one: 401 with a Bearer challenge; nothing upstream.
    let r = send(None, "/documents/d-public", vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .headers
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")));
    let r = send(Some("not.a.token".into()), "/documents/d-public", vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(seen.lock().is_empty());

    // A viewer's DELETE, with the headers nginx sets forged by the client
    // to say GET /search: nginx overwrites them, the sidecar judges the
    // DELETE and refuses it.
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let auth = format!("Bearer {vic}");
    let r = cedargate::sidecar::client::send_with(
        nginx.addr,
        Method::DELETE,
        "/documents/d-public",
        &[
            ("authorization", auth.as_str()),
            ("x-original-uri", "/search"),
            ("x-original-method", "GET"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(seen.lock().is_empty());

    // Allowed: the upstream gets the request with the sidecar's identity
    // headers, not the forged ones the client sent.
    let r = send(
        Some(vic),
        "/documents/d-public",
        vec![("x-tenant-id", "t2"), ("x-user-id", "root")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, "app:/documents/d-public");
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let (path, headers) = &seen[0];
    assert_eq!(path, "/documents/d-public");
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
    assert_eq!(all("x-decision-id")[0].len(), 36);
    drop(nginx);
    app.shutdown().await;
}
