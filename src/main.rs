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
            Err(err) if err.is::<callflex::cli::UsageError>() => {
                eprintln!("error: {err}");
                std::process::exit(2);
            }
            Err(err) => return Err(err),
        },
        Command::Simulate(args) => callflex::cli::simulate(&config, &args).await?,
    }
    Ok(())
}
