//! `callflex audit <kind> <id> [--as-of T | --as-of-position N]`: the auditor's view from the
//! command line, read straight from the store at DATABASE_URL (an operator's access: every
//! tenant, secrets still masked). One JSON object per event, or the historical state.

use chrono::{DateTime, Utc};

use super::UsageError;
use crate::app::audit::{self, View};
use crate::app::Caller;
use crate::config::Config;
use crate::state::AppState;

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// `call`, `organization`, `subscription` or `user`.
    pub kind: String,
    /// The stream's id (for `user`, the user's id, with --organization).
    pub id: String,
    /// Print the state folded from the events recorded up to this RFC 3339 time instead.
    #[arg(long)]
    pub as_of: Option<DateTime<Utc>>,
    /// Print the state folded from the events up to this log position instead.
    #[arg(long)]
    pub as_of_position: Option<i64>,
    /// The organization (needed for `user`; otherwise read from the stream).
    #[arg(long)]
    pub organization: Option<uuid::Uuid>,
}

/// Lines to print: one JSON object per event, or one with the historical state.
pub async fn audit(config: &Config, args: &AuditArgs) -> anyhow::Result<Vec<String>> {
    if !audit::KINDS.contains(&args.kind.as_str()) {
        return Err(UsageError(format!(
            "unknown kind `{}`; kinds: {}",
            args.kind,
            audit::KINDS.join(", ")
        ))
        .into());
    }
    let store =
        eventlog::EventStore::open(&config.database_url, config.database_max_connections).await?;
    let organization = match (args.organization, args.kind.as_str()) {
        (Some(org), _) => org,
        (None, "organization") => uuid::Uuid::parse_str(&args.id)
            .map_err(|_| UsageError("an organization id is a UUID".into()))?,
        (None, "user") => {
            return Err(UsageError("a user's history needs --organization".into()).into())
        }
        (None, kind) => {
            let first = store.read_stream_page(kind, &args.id, 0, 1).await?;
            let tenant = first
                .first()
                .and_then(|e| e.metadata.tenant_id.clone())
                .ok_or_else(|| anyhow::anyhow!("no {kind} {} in this store", args.id))?;
            uuid::Uuid::parse_str(&tenant)?
        }
    };
    let state = AppState::new(
        config.clone(),
        store,
        Vec::new(),
        crate::recordings::Recordings::from_config(config)?,
    );
    let caller = Caller::new("system:cli:audit", organization);
    let fail = |err: crate::app::AppError| anyhow::anyhow!("{}: {}", err.code, err.message);
    if args.as_of.is_some() || args.as_of_position.is_some() {
        let (data, sequence, position) = audit::state_as_of(
            &state,
            &caller,
            View::Full,
            &args.kind,
            &args.id,
            args.as_of,
            args.as_of_position,
        )
        .await
        .map_err(fail)?;
        let line = serde_json::json!({
            "historical": true, "sequence": sequence, "position": position, "data": data,
        });
        return Ok(vec![line.to_string()]);
    }
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let page = audit::stream(
            &state,
            &caller,
            View::Full,
            &args.kind,
            &args.id,
            after,
            500,
        )
        .await
        .map_err(fail)?;
        let Some(last) = page.last() else { break };
        after = if args.kind == "user" {
            last.position
        } else {
            last.sequence
        };
        lines.extend(page.iter().map(|e| {
            serde_json::json!({
                "sequence": e.sequence, "position": e.position, "type": e.event_type,
                "at": e.at, "actor": e.actor, "correlation_id": e.correlation_id,
                "causation_id": e.causation_id, "data": e.data,
            })
            .to_string()
        }));
    }
    Ok(lines)
}
