//! The processes-off row of the ingest section (also `--only quiet`, about a minute): the
//! 16-call closed loop on a service without the post-call processes, in rounds of a raw
//! INSERT baseline, the service's loop and the transport floor ([`crate::floor`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use callflex::config::{Config, Secret};
use callflex::startup::Application;
use serde_json::json;

use crate::ingest::{create_org, drive, listed, raw_rate, Endpoint, SECRET};
use crate::report::{Row, Section, Target};
use crate::{Ctx, RawBaseline};

/// Rounds (raw baseline, the loop, the transport floor) behind the processes-off row.
pub(crate) const ROUNDS: usize = 3;

/// Section `quiet`: only the processes-off row of `ingest` (a quick look at ingest alone).
pub async fn run_quiet(ctx: &Ctx) -> anyhow::Result<Section> {
    let mut section = Section::new(
        "quiet",
        "the ingest section's 16-call closed loop on a service without the post-call processes",
    );
    let recordings: Arc<str> = crate::recordings::serve().await?.into();
    quiet_row(ctx, recordings, &mut section).await?;
    Ok(section)
}

/// The same 16-call closed loop on a service without the processes: what they cost ingest
/// (the ingest section's levels run with them: each ended call is summarized, notified and
/// closed, in sandbox mode, beside the ingest).
pub(crate) async fn quiet_row(
    ctx: &Ctx,
    recordings: Arc<str>,
    section: &mut Section,
) -> anyhow::Result<()> {
    let url = ctx.fresh_postgres("ingest_quiet").await?;
    let quiet = Application::build(Config {
        database_url: url,
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new(SECRET)),
        processes_enabled: false,
        ..Config::default()
    })
    .await?;
    let org = create_org(&quiet).await?;
    let endpoint = Endpoint {
        addr: SocketAddr::from(([127, 0, 0, 1], quiet.port())),
        path: format!("/api/webhooks/vapi/{org}"),
        recordings,
    };
    // Alternating rounds (baseline, the loop, then the transport floor), the row is the round
    // with the median ratio: the raw baseline alone swings by a third within a sitting, so one
    // round's ratio moves by about 0.05 from run to run.
    let quiet_store = quiet.state().store.clone();
    let mut floor = None;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let head = quiet_store.head().await?;
        quiet
            .state()
            .wait_for_position(head, Duration::from_secs(60))
            .await?;
        quiet.state().ledger.flush().await;
        let raw = ctx.raw_baseline_now(16).await?;
        let first_call = 700_000_000 + round * 10_000_000;
        let run = drive(&endpoint, 16, ctx.run_for, None, first_call).await;
        let rate = run.rate();
        let floor_endpoint = match &floor {
            Some(endpoint) => endpoint,
            None => {
                let url = ctx
                    .raw_url()
                    .await
                    .context("the raw baseline has a database")?;
                floor.insert(Endpoint {
                    addr: crate::floor::serve(&url, 16).await?,
                    path: "/floor".into(),
                    recordings: endpoint.recordings.clone(),
                })
            }
        };
        let floor_run = drive(
            floor_endpoint,
            16,
            ctx.run_for,
            None,
            first_call + 5_000_000,
        )
        .await;
        let floor_rate = floor_run.rate();
        rounds.push(QuietRound {
            ratio: rate / raw.rate.max(1e-9),
            rate,
            floor_rate,
            raw,
            errors: run.errors + floor_run.errors,
            first_error: run.first_error.or(floor_run.first_error),
        });
    }
    rounds.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let all: Vec<serde_json::Value> = rounds
        .iter()
        .map(|r| {
            json!({"ratio": r.ratio, "deliveries_per_s": r.rate, "raw_ev_per_s": r.raw.rate,
                   "floor_deliveries_per_s": r.floor_rate, "errors": r.errors})
        })
        .collect();
    let errors: u64 = rounds.iter().map(|r| r.errors).sum();
    let first_error = rounds.iter().find_map(|r| r.first_error.clone());
    let median = &rounds[rounds.len() / 2];
    section.row(
        Row::num(
            format!("deliveries/s, 16 concurrent calls, processes off (median of {ROUNDS} pairs)"),
            median.rate,
            "req/s",
        )
        .vs(raw_rate(&median.raw))
        .detail(json!({"errors": errors, "first_error": first_error, "pairs": all}))
        .target(Target::RatioAtLeast(0.5)),
    );
    let mut floors: Vec<&QuietRound> = rounds.iter().collect();
    floors.sort_by(|a, b| a.floor_ratio().total_cmp(&b.floor_ratio()));
    let floor_median = floors[floors.len() / 2];
    section.row(
        Row::num(
            "transport floor: deliveries/s to an HTTP endpoint doing one raw INSERT each, same \
             generator, 16 calls (median round)",
            floor_median.floor_rate,
            "req/s",
        )
        .vs(raw_rate(&floor_median.raw)),
    );
    section.note(format!(
        "processes off, each pair's ratio (raw INSERT measured right before its loop): {}",
        listed(rounds.iter().map(|r| r.ratio))
    ));
    section.note(format!(
        "transport floor (the same loop against a bare HTTP endpoint that does one raw INSERT \
         per delivery, right after the service's loop): {} of raw; the service's rate against \
         the floor's, round by round: {}",
        listed(floors.iter().map(|r| r.floor_ratio())),
        listed(rounds.iter().map(|r| r.rate / r.floor_rate.max(1e-9)))
    ));
    quiet.stop().await;
    Ok(())
}

/// One round of the quiet row: the service's loop and the floor's, after a raw baseline.
struct QuietRound {
    ratio: f64,
    rate: f64,
    floor_rate: f64,
    raw: RawBaseline,
    errors: u64,
    first_error: Option<String>,
}

impl QuietRound {
    fn floor_ratio(&self) -> f64 {
        self.floor_rate / self.raw.rate.max(1e-9)
    }
}
