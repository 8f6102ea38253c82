//! `callflex redeliver --call ID | --from T --to T [--organization ID] [--into URL]`: replays
//! stored raw deliveries through the ingest path (see [`crate::webhooks::redeliver`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::UsageError;
use crate::config::Config;
use crate::state::AppState;
use crate::webhooks::redeliver::{copy_organizations, redeliver as replay, Redelivered};
use crate::webhooks::stored;

#[derive(Debug, Clone, clap::Args)]
pub struct RedeliverArgs {
    /// The call whose deliveries to replay (its id as the API shows it).
    #[arg(long, conflicts_with_all = ["from", "to", "organization"])]
    pub call: Option<String>,
    /// Replay every delivery received from this time (RFC 3339)…
    #[arg(long, requires = "to")]
    pub from: Option<DateTime<Utc>>,
    /// …until this time (exclusive).
    #[arg(long, requires = "from")]
    pub to: Option<DateTime<Utc>>,
    /// With --from/--to: only this organization's deliveries.
    #[arg(long)]
    pub organization: Option<uuid::Uuid>,
    /// Replay into this store instead of DATABASE_URL's: e.g. a fresh database, where the
    /// organizations the deliveries name are copied first and the read models are built.
    #[arg(long)]
    pub into: Option<String>,
}

/// How long the read models of a fresh store may take to catch up before the command ends.
const CATCH_UP: Duration = Duration::from_secs(120);

pub async fn redeliver(config: &Config, args: &RedeliverArgs) -> anyhow::Result<Redelivered> {
    if args.call.is_none() && (args.from.is_none() || args.to.is_none()) {
        return Err(UsageError("give --call ID, or --from and --to".into()).into());
    }
    let source =
        eventlog::EventStore::open(&config.database_url, config.database_max_connections).await?;
    let deliveries = match (&args.call, args.from, args.to) {
        (Some(call), _, _) => stored::of_call(&source, call).await?,
        (None, Some(from), Some(to)) => {
            if from > to {
                return Err(UsageError("--from must not be after --to".into()).into());
            }
            let org = args.organization.map(|o| o.to_string());
            stored::in_range(
                &source,
                from.timestamp_millis(),
                to.timestamp_millis(),
                org.as_deref(),
            )
            .await?
        }
        _ => return Err(UsageError("give --call ID, or --from and --to".into()).into()),
    };
    let mut target = config.clone();
    target.processes_enabled = false;
    if target.keyring.is_none() {
        target.keyring = Some(crate::secrets::Keyring::load_or_create(
            &config.secret_key_file,
        )?);
    }
    let into = args
        .into
        .as_ref()
        .filter(|url| **url != config.database_url);
    let Some(into) = into else {
        // The same store: a running service (if any) projects what this records; nothing
        // here competes with its projectors.
        let state = AppState::new(
            target.clone(),
            source.clone(),
            Vec::new(),
            crate::recordings::Recordings::from_config(&target)?,
        );
        let report = replay(&state, &deliveries).await;
        state.ledger.flush().await;
        return Ok(report);
    };
    // A fresh (or another) store: this command is its only service while it runs, projecting
    // what it records, with no processes (nothing is sent again) and no public listener.
    target.database_url = into.clone();
    target.listen = "127.0.0.1:0".parse()?;
    target.operator_listen = None;
    let app = crate::startup::Application::build(target).await?;
    let state: Arc<AppState> = app.state().clone();
    let organizations: Vec<String> = deliveries
        .iter()
        .filter_map(|d| d.organization_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    copy_organizations(&source, &state.store, &organizations).await?;
    let report = replay(&state, &deliveries).await;
    let head = state.store.head().await?;
    if !state.wait_for_position(head, CATCH_UP).await? {
        tracing::warn!("the read models had not caught up when redeliver ended");
    }
    app.stop().await;
    Ok(report)
}
