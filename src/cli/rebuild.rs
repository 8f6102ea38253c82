//! `callflex rebuild [NAME…]` with a progress bar per projector, and `callflex replay` of a
//! slice of the log into scratch tables.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::UsageError;
use crate::config::Config;

/// Every name `unknown` holds that is not a projector's, as a usage error listing them all.
pub fn check_projector_names(names: &[String]) -> Result<(), UsageError> {
    let known: Vec<&str> = projections::all().iter().map(|p| p.name()).collect();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !known.contains(n))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(UsageError(format!(
        "unknown projector {}; the projectors are: {}",
        unknown.join(", "),
        known.join(", ")
    )))
}

/// Rebuilds `names` (all when empty), drawing progress on a terminal; prints each
/// projector's report.
pub async fn rebuild(config: &Config, names: &[String]) -> anyhow::Result<()> {
    check_projector_names(names)?;
    let store =
        eventlog::EventStore::open(&config.database_url, config.database_max_connections).await?;
    let handles: Vec<_> = projections::all()
        .into_iter()
        .filter(|p| names.is_empty() || names.iter().any(|n| n == p.name()))
        .map(|p| projections::ProjectorRunner::new(store.clone(), p).handle())
        .collect();
    let head = store.head().await?;
    let names: Vec<&'static str> = handles.iter().map(|h| h.name()).collect();
    let (_multi, bars) = bars(&names, head);
    let rebuilt =
        projections::rebuild::rebuild_all_with(&store, &handles, Some(on_progress(bars.clone())))
            .await?;
    for (_, bar) in &bars {
        bar.finish_with_message("swapped in");
    }
    for (report, took) in rebuilt {
        println!(
            "{}: {} events, {:.2?} applying, {took:.2?} in all (checkpoint {})",
            report.projector, report.events, report.apply_time, report.checkpoint.position
        );
    }
    Ok(())
}

/// One bar per projector, to the log's head; hidden when stderr is not a terminal.
fn bars(names: &[&'static str], head: i64) -> (MultiProgress, Vec<(&'static str, ProgressBar)>) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bars = names
        .iter()
        .map(|name| {
            let bar = multi.add(ProgressBar::new(head.max(0) as u64));
            bar.set_style(style.clone());
            bar.set_prefix(*name);
            (*name, bar)
        })
        .collect();
    (multi, bars)
}

fn on_progress(bars: Vec<(&'static str, ProgressBar)>) -> projections::rebuild::OnProgress {
    Arc::new(move |p: projections::rebuild::Progress| {
        if let Some((_, bar)) = bars.iter().find(|(name, _)| *name == p.projector) {
            if p.position as u64 > bar.length().unwrap_or(0) {
                bar.set_length(p.position as u64);
            }
            bar.set_position(p.position as u64);
        }
    })
}

/// One end of a replay's slice: a log position or an RFC 3339 time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Position(i64),
    Time(DateTime<Utc>),
}

impl std::str::FromStr for Bound {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = s.parse::<i64>() {
            return Ok(Bound::Position(position));
        }
        s.parse::<DateTime<Utc>>()
            .map(Bound::Time)
            .map_err(|_| format!("`{s}` is neither a log position nor an RFC 3339 time"))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Start of the slice: a log position (inclusive) or an RFC 3339 time (inclusive).
    #[arg(long)]
    pub from: Bound,
    /// End of the slice: a log position (inclusive) or an RFC 3339 time (exclusive).
    #[arg(long)]
    pub to: Bound,
    /// The projectors to replay (see `rebuild --help` for the names).
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Replays the slice into each named projector's scratch tables; answers the reports.
pub async fn replay(
    config: &Config,
    args: &ReplayArgs,
) -> anyhow::Result<Vec<projections::replay::ReplayReport>> {
    check_projector_names(&args.names)?;
    let mut slice = projections::replay::Slice::default();
    for (bound, is_from) in [(args.from, true), (args.to, false)] {
        match (bound, is_from) {
            (Bound::Position(p), true) => slice.from_position = Some(p),
            (Bound::Position(p), false) => slice.to_position = Some(p),
            (Bound::Time(t), true) => slice.from_ms = Some(t.timestamp_millis()),
            (Bound::Time(t), false) => slice.to_ms = Some(t.timestamp_millis()),
        }
    }
    let empty = match (
        slice.from_position,
        slice.to_position,
        slice.from_ms,
        slice.to_ms,
    ) {
        (Some(a), Some(b), _, _) => a > b,
        (_, _, Some(a), Some(b)) => a >= b,
        _ => false,
    };
    if empty {
        return Err(UsageError("--from must come before --to".into()).into());
    }
    let store =
        eventlog::EventStore::open(&config.database_url, config.database_max_connections).await?;
    let head = store.head().await?;
    let projectors: Vec<_> = projections::all()
        .into_iter()
        .filter(|p| args.names.iter().any(|n| n == p.name()))
        .collect();
    let names: Vec<&'static str> = projectors.iter().map(|p| p.name()).collect();
    let (_multi, bars) = bars(&names, head);
    let mut reports = Vec::new();
    for projector in projectors {
        let report =
            projections::replay::replay(&store, projector, slice, Some(on_progress(bars.clone())))
                .await?;
        if let Some((_, bar)) = bars.iter().find(|(n, _)| *n == report.projector) {
            bar.finish_with_message(format!("{} events replayed", report.events));
        }
        reports.push(report);
    }
    Ok(reports)
}
