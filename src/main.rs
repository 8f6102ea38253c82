use clap::Parser;
use tracing_subscriber::EnvFilter;

use callflex::cli::{Cli, Command};
use callflex::config::Config;
use callflex::startup::Application;

/// mimalloc: glibc's malloc was about a tenth of the service's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until(callflex::startup::shutdown_signal()).await?;
        }
        Command::Migrate => {
            eventlog::EventStore::open(&config.database_url, 2).await?;
            println!("migrations applied");
        }
        Command::Rebuild { names } => {
            if let Err(err) = callflex::cli::check_projector_names(&names) {
                eprintln!("error: {err}");
                std::process::exit(2);
            }
            callflex::cli::rebuild(&config, &names).await?
        }
        Command::Replay(args) => match callflex::cli::replay(&config, &args).await {
            Ok(reports) => {
                for r in reports {
                    println!(
                        "{}: {} events of {} read replayed into {} in {:.2?}",
                        r.projector,
                        r.events,
                        r.read,
                        r.tables.join(", "),
                        r.took
                    );
                }
            }
            Err(err) => usage_or(err)?,
        },
        Command::Audit(args) => match callflex::cli::audit(&config, &args).await {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
            }
            Err(err) => usage_or(err)?,
        },
        Command::Openapi => println!("{}", callflex::http::openapi_json()),
        Command::Redeliver(args) => match callflex::cli::redeliver(&config, &args).await {
            Ok(report) => {
                println!(
                    "{} deliveries replayed: {} recorded {} new events, {} changed nothing, \
                     {} skipped, {} failed",
                    report.deliveries,
                    report.recorded,
                    report.events,
                    report.nothing_new,
                    report.skipped.len(),
                    report.failed.len()
                );
                for failure in &report.failed {
                    eprintln!("failed: {failure}");
                }
                if !report.failed.is_empty() {
                    std::process::exit(1);
                }
            }
            Err(err) => usage_or(err)?,
        },
        Command::Simulate(args) => callflex::cli::simulate(&config, &args).await?,
    }
    Ok(())
}

/// A usage mistake exits with status 2 (as clap's own do); any other error is returned.
fn usage_or(err: anyhow::Error) -> anyhow::Result<()> {
    if err.is::<callflex::cli::UsageError>() {
        eprintln!("error: {err}");
        std::process::exit(2);
    }
    Err(err)
}
