//! `cedargate-admin`: management of the store. For now: `migrate` (create
//! tables) and `import` (load tenants and documents from a JSON file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use cedargate::migrations;
use cedargate::model::DataSet;
use cedargate::store::{self, StoreUrl};

#[derive(Parser)]
#[command(name = "cedargate-admin", version, about = "cedargate management")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the migration steps not yet applied (tables, backfills), in
    /// order; each is recorded in the store. Idempotent and resumable.
    Migrate {
        #[arg(long)]
        store: StoreUrl,
        /// Say what would be done; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Roll this applied step back instead.
        #[arg(long, value_name = "STEP")]
        rollback: Option<String>,
    },
    /// Load tenants and documents from a JSON file: all of it or nothing.
    Import {
        #[arg(long)]
        store: StoreUrl,
        file: PathBuf,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate {
            store: url,
            dry_run,
            rollback,
        } => {
            let s = store::connect(&url).await?;
            let report = match rollback {
                Some(step) => migrations::rollback(s.as_ref(), &step, dry_run).await?,
                None => migrations::migrate(s.as_ref(), dry_run).await?,
            };
            for line in report.lines {
                println!("{line}");
            }
            println!("{url}: done");
        }
        Command::Import { store, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let data: DataSet = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid import file", file.display()))?;
            let s = store::open(&store).await?;
            let summary = s.import(&data).await?;
            println!(
                "imported {} tenants and {} documents into {store}",
                summary.tenants, summary.documents
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
