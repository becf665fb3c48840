//! `cedargate`: the authorization sidecar (`serve`), a self-contained demo
//! (`demo`), development tokens (`token`) and policy-author tools
//! (`policy validate`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hyper::Method;

use cedargate::app::App;
use cedargate::config::{ServeArgs, Settings};
use cedargate::identity::devkey::{DevClaims, DevKey, DEV_AUDIENCE, DEV_ISSUER};
use cedargate::identity::{JwksSource, JwtConfig};
use cedargate::policy::{self, PolicySnapshot, PolicySources};
use cedargate::sidecar::{client, shutdown_signal};
use cedargate::store::{self, StoreUrl};

#[derive(Parser)]
#[command(name = "cedargate", version, about = "Cedar authorization sidecar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the authorization API.
    Serve(ServeArgs),
    /// Start the sidecar on a fresh embedded store with demo data and show
    /// some decisions.
    Demo {
        #[arg(long, default_value = cedargate::config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Store to create the demo data in [default: a new file in the
        /// temporary directory].
        #[arg(long)]
        store: Option<StoreUrl>,
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
        /// Show the decisions and exit instead of serving.
        #[arg(long)]
        once: bool,
    },
    /// Policy-author tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Health probe for images without a shell or curl: GET ADDR/PATH
    /// (default /readyz) on loopback; exit 0 on 200, 1 otherwise.
    Probe {
        /// `127.0.0.1:8180` or `http://127.0.0.1:8180/readyz`.
        target: String,
    },
    /// Development tokens: a local signing key and tokens signed with it.
    /// A verifier accepts them only with --allow-dev-keys.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate a development key: DIR/dev-key.pem and DIR/jwks.json.
    Keygen {
        #[arg(long, default_value = ".cedargate-dev")]
        dir: PathBuf,
    },
    /// Print a signed development ID token.
    Mint {
        #[arg(long, default_value = ".cedargate-dev/dev-key.pem")]
        key: PathBuf,
        /// The user (`sub`).
        #[arg(long)]
        sub: String,
        /// The tenant (`custom:tenant_id`).
        #[arg(long)]
        tenant: String,
        /// Groups (`cognito:groups`), comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Clearance 0-3 (`custom:clearance`).
        #[arg(long)]
        clearance: Option<u8>,
        #[arg(long, default_value = DEV_ISSUER)]
        issuer: String,
        #[arg(long, default_value = DEV_AUDIENCE)]
        audience: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
}

/// How `policy plan` shows a plan.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PlanFormat {
    /// The residual policies and the condition.
    Cedar,
    Kendra,
    Opensearch,
    Sql,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policies strictly against the schema, and refuse forbids
    /// that an evaluation error could switch off (an entity attribute read
    /// without `has`, arithmetic, a fallible extension call).
    Validate {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
        /// Report such forbids as warnings instead of failing.
        #[arg(long)]
        allow_fallible_forbids: bool,
    },
    /// Run the test suites (`*.yaml`): requests decided by the real engine
    /// over the data each suite states, against the expected decisions and
    /// determining policies. Exits 1 if a case fails.
    Test {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
        /// Where the suites are [default: POLICIES/tests].
        #[arg(long)]
        tests: Option<PathBuf>,
    },
    /// Format the policy files with Cedar's formatter; with --check, list
    /// the files that are not formatted and exit 1.
    Fmt {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Decide one request and show the policies that made the decision.
    Explain {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
        /// Tenants and documents (the import format).
        #[arg(long, default_value = "demo/data.json")]
        data: PathBuf,
        /// The principal, as trusted mode states it:
        /// '{"id": "rita", "tenant": "acme", "roles": ["viewer"], "clearance": 1}'.
        #[arg(long)]
        principal: String,
        #[arg(long)]
        action: String,
        /// `Document::<id>` or `Tenant::<id>`.
        #[arg(long)]
        resource: String,
        /// The context, as JSON.
        #[arg(long)]
        context: Option<String>,
    },
    /// The search plan of a principal: which documents it may read, as a
    /// Kendra, OpenSearch or SQL filter, or the residual policies (cedar).
    Plan {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
        /// Tenants and documents (the import format).
        #[arg(long, default_value = "demo/data.json")]
        data: PathBuf,
        /// The principal, as trusted mode states it.
        #[arg(long)]
        principal: String,
        #[arg(long, default_value = "Read")]
        action: String,
        /// The context, as JSON.
        #[arg(long)]
        context: Option<String>,
        #[arg(long, value_enum, default_value = "cedar")]
        format: PlanFormat,
    },
    /// Make an Amazon Verified Permissions policy store hold these policies
    /// and schema: prints the plan, then carries it out (unless
    /// --dry-run). Policies pushed before are found by their @id (kept in
    /// the AVP description); policies made in AVP otherwise are left alone.
    Push {
        /// The AVP policy store id.
        #[arg(long)]
        policy_store: String,
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
        /// AWS region [default: from the environment].
        #[arg(long)]
        region: Option<String>,
        /// Another endpoint than AWS's.
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn load_policies(policies: &Path, schema: &Path) -> Result<PolicySnapshot, String> {
    cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: policies.to_path_buf(),
        schema_dir: schema.to_path_buf(),
    })
    .map_err(|e| e.to_string())
}

async fn policy_test(
    policies: PathBuf,
    schema: PathBuf,
    tests: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = tests.unwrap_or_else(|| policies.join("tests"));
    let snapshot = load_policies(&policies, &schema).map_err(anyhow::Error::msg)?;
    let all: Vec<String> = snapshot
        .policies
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    let report = cedargate::policy::suite::run(&dir, || load_policies(&policies, &schema))
        .await
        .map_err(anyhow::Error::msg)?;
    for f in &report.failures {
        println!("FAIL {} / {}: {}", f.suite, f.case, f.message);
    }
    let never: Vec<&String> = all
        .iter()
        .filter(|id| !report.determining.contains(*id))
        .collect();
    if !never.is_empty() {
        println!(
            "note: no case is decided by {} (defence in depth that no request reaches, or a missing case)",
            never.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "{} suites, {} cases: {} passed, {} failed",
        report.suites,
        report.passed + report.failures.len(),
        report.passed,
        report.failures.len()
    );
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn policy_fmt(policies: PathBuf, check: bool) -> anyhow::Result<ExitCode> {
    let config = cedar_policy_formatter::Config {
        line_width: 80,
        indent_width: 2,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&policies)
        .with_context(|| format!("cannot read {}", policies.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    let mut unformatted = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let pretty = cedar_policy_formatter::policies_str_to_pretty(&text, &config)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", file.display()))?;
        let pretty = if pretty.ends_with('\n') {
            pretty
        } else {
            pretty + "\n"
        };
        if pretty != text {
            unformatted += 1;
            if check {
                println!("{}: not formatted", file.display());
            } else {
                std::fs::write(&file, pretty)?;
                println!("{}: formatted", file.display());
            }
        }
    }
    Ok(if check && unformatted > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[allow(clippy::too_many_arguments)]
/// An in-memory engine over the policies and data of `explain` and
/// `plan`, with their principal and context parsed.
async fn harness(
    policies: &Path,
    schema: &Path,
    data: &Path,
    principal: &str,
    context: Option<&str>,
) -> anyhow::Result<(
    cedargate::policy::suite::Harness,
    serde_json::Value,
    serde_json::Value,
)> {
    let snapshot = load_policies(policies, schema).map_err(anyhow::Error::msg)?;
    let data: cedargate::model::DataSet = serde_json::from_str(
        &std::fs::read_to_string(data)
            .with_context(|| format!("cannot read {}", data.display()))?,
    )
    .with_context(|| format!("{} is not an import file", data.display()))?;
    let principal: serde_json::Value =
        serde_json::from_str(principal).context("--principal is not JSON")?;
    let context: serde_json::Value = match context {
        Some(c) => serde_json::from_str(c).context("--context is not JSON")?,
        None => serde_json::Value::Null,
    };
    let harness = cedargate::policy::suite::Harness::new(snapshot, &data)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok((harness, principal, context))
}

/// `policy plan`: the search plan, as one filter format or the residual
/// policies.
async fn plan(
    policies: PathBuf,
    schema: PathBuf,
    data: PathBuf,
    principal: String,
    action: String,
    context: Option<String>,
    format: PlanFormat,
) -> anyhow::Result<()> {
    let (harness, principal, context) =
        harness(&policies, &schema, &data, &principal, context.as_deref()).await?;
    let plan = cedargate::policy::suite::plan_of(&harness, principal, &action, &context)
        .await
        .map_err(anyhow::Error::msg)?;
    let kind = serde_json::to_value(plan.kind)?;
    println!("{}", kind.as_str().unwrap_or_default());
    if plan.kind == cedargate::search::PlanKind::AlwaysDenied {
        for id in &plan.determining_policies {
            println!("denied by {id}");
        }
        return Ok(());
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let formats = |f| plan.filters(&[f]).map_err(|e| anyhow::anyhow!("{e}"));
    use cedargate::search::FilterFormat as F;
    match format {
        PlanFormat::Cedar => {
            for r in &plan.residuals {
                println!("{r}");
            }
            println!("condition: {}", serde_json::to_string(&plan.condition)?);
        }
        PlanFormat::Kendra => println!("{}", pretty(&formats(F::Kendra)?["kendra"])),
        PlanFormat::Opensearch => println!("{}", pretty(&formats(F::Opensearch)?["opensearch"])),
        PlanFormat::Sql => {
            let sql = &formats(F::Sql)?["sql"];
            println!("WHERE {}", sql["where"].as_str().unwrap_or_default());
            println!("-- params: {}", sql["params"]);
        }
    }
    Ok(())
}

async fn explain(
    policies: PathBuf,
    schema: PathBuf,
    data: PathBuf,
    principal: String,
    action: String,
    resource: String,
    context: Option<String>,
) -> anyhow::Result<()> {
    let (harness, principal, context) =
        harness(&policies, &schema, &data, &principal, context.as_deref()).await?;
    let d = harness
        .decide(principal, &action, &resource, context)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{:?}", d.decision);
    if let Some(reason) = d.reason {
        println!("reason: {}", reason.as_str());
    }
    if d.determining_policies.is_empty() {
        println!("no policy permits it (default deny)");
    }
    for id in &d.determining_policies {
        let text = harness.policy_text(id).await.unwrap_or_default();
        println!("\n{id}:\n{text}");
    }
    for e in &d.errors {
        println!("error: {e}");
    }
    Ok(())
}

async fn push(
    store: String,
    policies: PathBuf,
    schema: PathBuf,
    region: Option<String>,
    endpoint: Option<String>,
    dry_run: bool,
) -> anyhow::Result<()> {
    use cedargate::avp::push;
    let sources = cedargate::policy::PolicySources {
        policy_dir: policies,
        schema_dir: schema,
    };
    let (git, schema) = push::git_side(&sources)?;
    let client = cedargate::avp::source::client(region.as_deref(), endpoint.as_deref()).await;
    let plan = push::plan(&client, &store, &git, &schema).await?;
    for line in plan.lines() {
        println!("{line}");
    }
    if dry_run {
        println!("dry run: nothing changed");
    } else if plan.is_empty() {
        println!("policy store {store} is up to date");
    } else {
        push::apply(&client, &store, &plan).await?;
        println!("policy store {store} updated");
    }
    Ok(())
}

async fn probe(target: &str) -> ExitCode {
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (addr, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, "/readyz".to_string()),
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("error: {addr:?} is not an address (IP:PORT)");
        return ExitCode::FAILURE;
    };
    let call = client::send(addr, Method::GET, &path, "");
    match tokio::time::timeout(std::time::Duration::from_secs(3), call).await {
        Ok(Ok(r)) if r.status == hyper::StatusCode::OK => ExitCode::SUCCESS,
        Ok(Ok(r)) => {
            eprintln!("{path}: {}", r.status);
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("{addr}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{addr}: no answer within 3 s");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.listen;
    let app = App::build(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        revision = %app.policies.load().revision,
        "cedargate listening"
    );
    app.serve(listener, shutdown_signal()).await;
    Ok(())
}

async fn demo(
    listen: SocketAddr,
    store_url: Option<StoreUrl>,
    policies: PathBuf,
    schema: PathBuf,
    once: bool,
) -> anyhow::Result<()> {
    // A store of our own making is removed when the demo ends.
    let (store_url, scratch) = match store_url {
        Some(url) => (url, None),
        None => {
            let path =
                std::env::temp_dir().join(format!("cedargate-demo-{}.db", std::process::id()));
            (StoreUrl::Sqlite(path.clone()), Some(path))
        }
    };
    let store = store::open(&store_url).await?;
    let data = cedargate::demo::data()?;
    let summary = store.import(&data).await?;
    drop(store);
    println!(
        "demo store {store_url}: {} tenants, {} documents",
        summary.tenants, summary.documents
    );
    // Tokens signed by a development key made for this run.
    let key_dir = tempfile_dir()?;
    let key = DevKey::generate();
    let (_, jwks) = key.write(&key_dir)?;
    let mut jwt = JwtConfig::new(
        JwksSource::File(jwks),
        DEV_ISSUER,
        vec![DEV_AUDIENCE.to_string()],
    );
    jwt.allow_dev_keys = true;
    let app = App::build(Settings::jwt(store_url, &policies, &schema, jwt)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (try --listen 127.0.0.1:0)"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stop_rx => {}
        }
    }));
    println!("cedargate listening on http://{addr} (token identity, development key)\n");
    let mut tokens = std::collections::BTreeMap::new();
    for user in [&cedargate::demo::DAVE, &cedargate::demo::EVE] {
        let groups: Vec<String> = user.groups.iter().map(|g| g.to_string()).collect();
        let token = key.mint(
            &DevClaims {
                issuer: DEV_ISSUER,
                audience: DEV_AUDIENCE,
                sub: user.sub,
                tenant: user.tenant,
                groups: &groups,
                clearance: Some(user.clearance),
                ttl_secs: 3600,
            }
            .to_json(),
        )?;
        let var = format!("TOKEN_{}", user.sub.to_uppercase());
        println!(
            "# {} of {} ({}), clearance {}\n{var}={token}\n",
            user.sub,
            user.tenant,
            user.groups.join(","),
            user.clearance
        );
        tokens.insert(user.sub, (var, token));
    }
    for example in cedargate::demo::examples() {
        let body = example.body.to_string();
        let (var, token) = &tokens[example.user.sub];
        let reply = client::send_with(
            addr,
            Method::POST,
            "/v1/authorize",
            &[("authorization", &format!("Bearer {token}"))],
            body.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("demo request failed: {e}"))?;
        println!("# {}", example.title);
        println!(
            "curl -s http://{addr}/v1/authorize -H \"Authorization: Bearer ${var}\" -d '{body}'"
        );
        println!("{} {}\n", reply.status.as_u16(), reply.body);
    }
    println!("# Forward-auth, as nginx auth_request or Envoy ext_authz would ask:");
    println!(
        "curl -i http://{addr}/v1/forward-auth/documents/q3-report -H \"Authorization: Bearer $TOKEN_DAVE\"\n"
    );
    if once {
        let _ = stop_tx.send(());
    } else {
        println!("serving until Ctrl-C; try the curl commands above");
    }
    server.await?;
    let _ = std::fs::remove_dir_all(&key_dir);
    if let Some(path) = scratch {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Ok(())
}

/// A fresh directory for the demo's development key.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cedargate-demo-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Keygen { dir } => {
            let (key, jwks) = DevKey::generate().write(&dir)?;
            println!("wrote {} and {}", key.display(), jwks.display());
            println!(
                "serve with: --jwks-file {} --issuer {DEV_ISSUER} --audience {DEV_AUDIENCE} --allow-dev-keys",
                jwks.display()
            );
        }
        TokenCommand::Mint {
            key,
            sub,
            tenant,
            groups,
            clearance,
            issuer,
            audience,
            ttl_secs,
        } => {
            let key = DevKey::read(&key)?;
            let claims = DevClaims {
                issuer: &issuer,
                audience: &audience,
                sub: &sub,
                tenant: &tenant,
                groups: &groups,
                clearance,
                ttl_secs,
            };
            println!("{}", key.mint(&claims.to_json())?);
        }
    }
    Ok(())
}

fn validate(policies: PathBuf, schema: PathBuf, allow_fallible: bool) -> ExitCode {
    let sources = PolicySources {
        policy_dir: policies,
        schema_dir: schema,
    };
    let snapshot = match policy::load(&sources) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let findings = policy::lint::fallible_forbids(&snapshot.policies, &snapshot.types);
    let level = if allow_fallible { "warning" } else { "error" };
    for f in &findings {
        eprintln!("{level}: {f}");
    }
    if !findings.is_empty() && !allow_fallible {
        eprintln!(
            "error: {} forbid(s) fail open on an evaluation error (see docs/policies.md); --allow-fallible-forbids reports them as warnings",
            findings.len()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "ok: {} policies valid (strict), no forbid an error could switch off, revision {}",
        snapshot.policies.policies().count(),
        snapshot.revision
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => match Settings::resolve(args) {
            Ok(settings) => runtime.block_on(serve(settings)),
            Err(e) => Err(e.into()),
        },
        Command::Demo {
            listen,
            store,
            policies,
            schema,
            once,
        } => runtime.block_on(demo(listen, store, policies, schema, once)),
        Command::Policy(PolicyCommand::Validate {
            policies,
            schema,
            allow_fallible_forbids,
        }) => return validate(policies, schema, allow_fallible_forbids),
        Command::Policy(PolicyCommand::Test {
            policies,
            schema,
            tests,
        }) => {
            return runtime
                .block_on(policy_test(policies, schema, tests))
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                })
        }
        Command::Policy(PolicyCommand::Fmt { policies, check }) => {
            return policy_fmt(policies, check).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            })
        }
        Command::Policy(PolicyCommand::Explain {
            policies,
            schema,
            data,
            principal,
            action,
            resource,
            context,
        }) => runtime.block_on(explain(
            policies, schema, data, principal, action, resource, context,
        )),
        Command::Policy(PolicyCommand::Plan {
            policies,
            schema,
            data,
            principal,
            action,
            context,
            format,
        }) => runtime.block_on(plan(
            policies, schema, data, principal, action, context, format,
        )),
        Command::Policy(PolicyCommand::Push {
            policy_store,
            policies,
            schema,
            region,
            endpoint_url,
            dry_run,
        }) => runtime.block_on(push(
            policy_store,
            policies,
            schema,
            region,
            endpoint_url,
            dry_run,
        )),
        Command::Token(command) => token(command),
        Command::Probe { target } => return runtime.block_on(probe(&target)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
