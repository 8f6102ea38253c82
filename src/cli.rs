//! Command line: `callflex [serve]`, `callflex migrate`, `callflex rebuild [NAME...]`,
//! `callflex openapi`.

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "callflex", version, about = "CallFlex event-sourced backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the projectors (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Rebuild read models from position 0 into fresh tables and swap them in. Run it while
    /// the server is stopped (the swap pauses only projectors of this process).
    Rebuild {
        /// Projector names (calls, transcripts, contacts, usage, billing); all when omitted.
        names: Vec<String>,
    },
    /// Print the OpenAPI document.
    Openapi,
}

pub async fn rebuild(config: &Config, names: &[String]) -> anyhow::Result<()> {
    let store =
        eventlog::EventStore::open(&config.database_url, config.database_max_connections).await?;
    for projector in projections::all() {
        if !names.is_empty() && !names.iter().any(|n| n == projector.name()) {
            continue;
        }
        let handle = projections::ProjectorRunner::new(store.clone(), projector).handle();
        let started = std::time::Instant::now();
        let report = projections::rebuild::rebuild(&store, &handle).await?;
        println!(
            "{}: {} events in {:.2?} (checkpoint {})",
            report.projector,
            report.events,
            started.elapsed(),
            report.checkpoint.position
        );
    }
    Ok(())
}
