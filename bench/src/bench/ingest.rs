//! Section `ingest`: the real service (in-process, PostgreSQL) receiving signed VAPI deliveries
//! over real HTTP for realistic calls at 1, 16 and 64 concurrent calls. The calls are
//! `callflex simulate`'s scripts ([`callflex::simulate::call_script`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::organization::{
    NotificationSettings, OrganizationCommand, OrganizationSettings, TransferNumbers,
};
use callflex::config::{Config, Secret};
use callflex::simulate::call_script_with;
use callflex::startup::Application;
use eventlog::CommandMeta;
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::http1::Conn;
use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::{Ctx, RawBaseline};

pub(crate) const SECRET: &str = "bench";
const LEVELS: [usize; 3] = [1, 16, 64];
/// Interval between two deliveries of one call in the paced run.
const PACE: Duration = Duration::from_millis(500);
/// Interval of the raw-INSERT probe beside the paced run.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Deliveries of one call in flight at once in the overlapping run.
const OVERLAP_K: usize = 16;
/// Bare fdatasync samples for the disk's floor (one every 5 ms: about 6 s).
const FLOOR_SAMPLES: usize = 1_000;

#[derive(Default)]
pub(crate) struct LevelRun {
    all: Samples,
    tool: Samples,
    /// Tool-call time inside the service, from its `Server-Timing` header.
    tool_server: Samples,
    /// The part of it spent in the log's appends, and the rest.
    tool_log: Samples,
    tool_rest: Samples,
    deliveries: u64,
    calls_completed: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    elapsed: Duration,
}

impl LevelRun {
    /// Deliveries answered per second.
    pub(crate) fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The service's own account of a request (`Server-Timing: app;dur=.., log;dur=..`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inside {
    /// Everything inside the service.
    app: Duration,
    /// The part spent in the log's appends (round trip and durable commit).
    log: Duration,
}

fn server_timing(header: &str) -> Option<Inside> {
    let metric = |name: &str| {
        header.split(',').find_map(|part| {
            let (metric, dur) = part.trim().split_once(";dur=")?;
            let ms: f64 = (metric == name).then_some(dur)?.trim().parse().ok()?;
            Some(Duration::from_secs_f64(ms / 1e3))
        })
    };
    Some(Inside {
        app: metric("app")?,
        log: metric("log").unwrap_or_default(),
    })
}

/// Where deliveries go: the service's address and the organization's webhook path.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    /// Where the simulated calls' recordings are served (see `recordings`).
    pub(crate) recordings: Arc<str>,
}

impl Endpoint {
    /// The VAPI webhook of `org` on the service listening on `port`.
    pub(crate) fn vapi(port: u16, org: Uuid) -> Endpoint {
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            path: format!("/api/webhooks/vapi/{org}"),
            recordings: callflex::simulate::VAPI_RECORDINGS.into(),
        }
    }
}

/// Deliveries per second of a closed loop of `concurrency` calls for `run_for` (another
/// section's baseline), with the count of errors.
pub(crate) async fn closed_loop_rate(
    endpoint: &Endpoint,
    concurrency: usize,
    run_for: Duration,
    first_call: usize,
) -> (f64, u64) {
    let run = drive(endpoint, concurrency, run_for, None, first_call).await;
    (
        run.deliveries as f64 / run.elapsed.as_secs_f64().max(1e-9),
        run.errors,
    )
}

/// Sends one delivery on the worker's connection (opened on first use, and again after a
/// failure); returns the answer and the service's own time (`Server-Timing`).
pub(crate) async fn send(
    conn: &mut Option<Conn>,
    endpoint: &Endpoint,
    body: String,
) -> Result<(String, Option<Inside>), String> {
    let open = match conn {
        Some(open) => open,
        None => conn.insert(Conn::open(endpoint.addr).await?),
    };
    let headers = [
        ("content-type", "application/json"),
        ("x-vapi-secret", SECRET),
    ];
    let answer = match open
        .post(&endpoint.path, &headers, body, "server-timing")
        .await
    {
        Ok(answer) => answer,
        Err(err) => {
            *conn = None;
            return Err(err);
        }
    };
    let inside = answer.header.as_deref().and_then(server_timing);
    if (200..300).contains(&answer.status) {
        Ok((answer.body, inside))
    } else {
        Err(format!("HTTP {}: {}", answer.status, answer.body))
    }
}

/// Plays calls on `concurrency` workers for `run_for`. Without `pace` each worker sends its
/// next delivery as soon as the previous one is answered (closed loop, saturation); with
/// `pace` each call sends one delivery per `pace`, workers staggered across the interval.
pub(crate) async fn drive(
    endpoint: &Endpoint,
    concurrency: usize,
    run_for: Duration,
    pace: Option<Duration>,
    first_call: usize,
) -> LevelRun {
    let shared = Arc::new(Mutex::new(LevelRun::default()));
    let started = Instant::now();
    let deadline = started + run_for;
    let script_len = call_script_with(0, "").len();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let endpoint = endpoint.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let mut local = LevelRun::default();
            let mut next = tokio::time::Instant::now();
            if let Some(pace) = pace {
                next += pace.mul_f64(w as f64 / concurrency as f64);
            }
            'calls: for k in 0.. {
                let call_index = first_call + w * 1_000_000 + k;
                // Paced workers start their first call at different points of the script so
                // every kind of delivery is sampled from the start (a call whose first
                // delivery is not the status update is still created).
                let skip = match (pace, k) {
                    (Some(_), 0) => w % script_len,
                    _ => 0,
                };
                for delivery in call_script_with(call_index, &endpoint.recordings)
                    .into_iter()
                    .skip(skip)
                {
                    if let Some(pace) = pace {
                        tokio::time::sleep_until(next).await;
                        next += pace;
                    }
                    if Instant::now() >= deadline {
                        break 'calls;
                    }
                    let t = Instant::now();
                    let result = send(&mut conn, &endpoint, delivery.body).await;
                    let took = t.elapsed();
                    match result {
                        Ok((answer, inside)) => {
                            local.deliveries += 1;
                            local.all.push(took);
                            if delivery.kind == "tool-calls" {
                                local.tool.push(took);
                                if let Some(inside) = inside {
                                    local.tool_server.push(inside.app);
                                    local.tool_log.push(inside.log);
                                    local.tool_rest.push(inside.app.saturating_sub(inside.log));
                                }
                                if !answer.contains("\"results\"") {
                                    local.errors += 1;
                                    local.first_error.get_or_insert(format!(
                                        "unexpected tool-call answer: {answer}"
                                    ));
                                }
                            }
                            if delivery.kind == "end-of-call-report" {
                                local.calls_completed += 1;
                            }
                        }
                        Err(err) => {
                            local.errors += 1;
                            local.first_error.get_or_insert(err);
                        }
                    }
                }
            }
            let mut total = shared.lock().await;
            total.deliveries += local.deliveries;
            total.calls_completed += local.calls_completed;
            total.errors += local.errors;
            if total.first_error.is_none() {
                total.first_error = local.first_error;
            }
            total.all.extend(local.all);
            total.tool.extend(local.tool);
            total.tool_server.extend(local.tool_server);
            total.tool_log.extend(local.tool_log);
            total.tool_rest.extend(local.tool_rest);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let mut run = std::mem::take(&mut *shared.lock().await);
    run.elapsed = elapsed;
    run
}

/// A `/proc/self/status` figure in MiB (`VmHWM`, `VmRSS`).
fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak-RSS mark (Linux: "5" > /proc/self/clear_refs) so earlier sections do not
/// count towards the service's peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub(crate) async fn create_org(app: &Application) -> anyhow::Result<Uuid> {
    let org = Uuid::new_v4();
    let meta = CommandMeta::new("system:bench").tenant(org);
    let state = app.state();
    state
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::Create {
                id: org,
                name: "Acme Trucking (bench)".into(),
                owner_user_id: "bench-owner".into(),
                owner_email: "owner@acme.test".into(),
                actor: "system:bench".into(),
            },
            &meta,
        )
        .await
        .map_err(|e| anyhow::anyhow!("create organization: {e}"))?;
    state
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::UpdateSettings {
                settings: OrganizationSettings {
                    notifications: NotificationSettings {
                        sms_enabled: true,
                        sms_numbers: vec!["+15550001111".into()],
                        ..Default::default()
                    },
                    transfer_numbers: TransferNumbers {
                        dispatch: Some("+15550002222".into()),
                        manager: Some("+15550003333".into()),
                        emergency: Some("+15550004444".into()),
                    },
                    ..Default::default()
                },
                actor: "system:bench".into(),
            },
            &meta,
        )
        .await
        .map_err(|e| anyhow::anyhow!("update settings: {e}"))?;
    Ok(org)
}

/// The raw INSERT rate at `raw`'s writers, as a row's baseline.
pub(crate) fn raw_rate(raw: &RawBaseline) -> Baseline {
    Baseline::new(raw_name(raw, "rate"), raw.rate, "ev/s")
}

pub(crate) fn raw_name(raw: &RawBaseline, what: &str) -> String {
    format!("raw INSERT {what}, {} writer(s)", raw.writers)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let secs = ctx.run_for.as_secs_f64();
    let mut section = Section::new(
        "ingest",
        format!(
            "signed VAPI deliveries over HTTP to the in-process service on PostgreSQL, \
             {secs:.1} s per level"
        ),
    );
    let url = ctx.fresh_postgres("ingest").await?;
    let rss_before = proc_status_mib("VmRSS").unwrap_or(0.0);
    let peak_reset = reset_peak_rss();
    let mut config = Config {
        database_url: url,
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new(SECRET)),
        ..Config::default()
    };
    // The recordings are served on 127.0.0.1 over plain http.
    config.egress.allow_http = true;
    config.egress.allow_private = true;
    let recordings: Arc<str> = crate::recordings::serve().await?.into();
    let pool_size = config.database_max_connections;
    let app = Application::build(config).await?;
    let org = create_org(&app).await?;
    let endpoint = Endpoint {
        addr: SocketAddr::from(([127, 0, 0, 1], app.port())),
        path: format!("/api/webhooks/vapi/{org}"),
        recordings: recordings.clone(),
    };

    // Warm-up: two whole calls, not measured.
    let mut conn = None;
    for k in 0..2 {
        for delivery in call_script_with(usize::MAX - k, &endpoint.recordings) {
            send(&mut conn, &endpoint, delivery.body)
                .await
                .map_err(|e| anyhow::anyhow!("warm-up delivery refused: {e}"))?;
        }
    }

    let store = app.state().store.clone();
    let mut raws = Vec::new();
    for c in LEVELS {
        // The baseline right before the level, once the read models have caught up, so
        // nothing of the service runs beside it and the disk is in the same mood.
        // At 16 calls (the targets' level) the median of alternating pairs (raw INSERT, then
        // the loop), as for the processes-off row below: one pair's ratio swings by a tenth.
        let pairs = if c == 16 { crate::quiet::ROUNDS } else { 1 };
        let mut tries = Vec::new();
        for pair in 0..pairs {
            let head = store.head().await?;
            app.state()
                .wait_for_position(head, Duration::from_secs(60))
                .await?;
            app.state().ledger.flush().await;
            let raw = ctx.raw_baseline_now(c).await?;
            let head_before = store.head().await?;
            let grouped_before = store.group_commit_stats().unwrap_or_default();
            let standing_before = process_standing(&app).await?;
            let yielded_before = app.state().foreground.yielded();
            let first_call = c * 100_000_000 + pair * 10_000_000;
            let run = drive(&endpoint, c, ctx.run_for, None, first_call).await;
            let head_after = store.head().await?;
            let standing_after = process_standing(&app).await?;
            let yielded = app.state().foreground.yielded() - yielded_before;
            let grouped = store.group_commit_stats().unwrap_or_default();
            // What the processes did beside the load, and what it left them: they yield to
            // a busy request path (`crate::foreground`) and catch up after it.
            let drained = if app.state().config.processes_enabled {
                Some(drain_processes(&app, Duration::from_secs(300)).await?)
            } else {
                None
            };
            let rate = run.deliveries as f64 / run.elapsed.as_secs_f64().max(1e-9);
            tries.push(Try {
                ratio: rate / raw.rate.max(1e-9),
                raw,
                run,
                events: (head_after - head_before).max(0) as f64,
                statements: grouped.statements - grouped_before.statements,
                appends: grouped.appends - grouped_before.appends,
                shared: grouped.shared_statements - grouped_before.shared_statements,
                regrouped: grouped.regrouped - grouped_before.regrouped,
                finished: standing_after.0 - standing_before.0,
                open: standing_after.1,
                yielded,
                drained,
            });
        }
        if tries.len() > 1 {
            section.note(format!(
                "{c} calls, processes {}, each pair's ratio (raw INSERT measured right before \
                 its loop): {}; the row is the median pair",
                if app.state().config.processes_enabled {
                    "on"
                } else {
                    "off"
                },
                listed(tries.iter().map(|t| t.ratio))
            ));
        }
        tries.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
        let Try {
            raw,
            run,
            events,
            statements,
            appends,
            shared,
            regrouped,
            finished,
            open,
            yielded,
            drained,
            ..
        } = tries.swap_remove(tries.len() / 2);
        raws.push(raw);
        let raw = &raws[raws.len() - 1];
        if let Some(drained) = drained {
            section.note(format!(
                "{c} call(s), processes beside the load: {finished} instances finished \
                 ({:.0}/s), {yielded} runs took turns, {open} open at the end (started, not \
                 yet finished), all finished {:.2} s later",
                finished as f64 / run.elapsed.as_secs_f64().max(1e-9),
                drained.as_secs_f64()
            ));
        }
        let rate = run.deliveries as f64 / run.elapsed.as_secs_f64().max(1e-9);
        let detail = json!({
            "deliveries": run.deliveries,
            "calls_completed": run.calls_completed,
            "errors": run.errors,
            "first_error": run.first_error,
            "events_appended": events,
            "events_per_s": events / run.elapsed.as_secs_f64().max(1e-9),
            "all": run.all.summary(),
            "tool_calls": run.tool.summary(),
            "raw_insert_latency": raw.latency.summary(),
            "group_commit": {
                "statements": statements,
                "appends": appends,
                "appends_per_statement": appends as f64 / statements.max(1) as f64,
                "shared_statements": shared,
                "regrouped": regrouped,
            },
        });
        let mut row = Row::num(
            format!("deliveries/s, {c} concurrent call(s)"),
            rate,
            "req/s",
        )
        .vs(raw_rate(raw))
        .detail(detail);
        if c == 16 {
            row = row.target(Target::RatioAtLeast(0.5));
        }
        section.row(row);
        section.row(
            Row::num(
                format!("  events appended/s, {c} call(s)"),
                events / run.elapsed.as_secs_f64().max(1e-9),
                "ev/s",
            )
            .vs(raw_rate(raw)),
        );
        for (samples, what) in [
            (&run.all, "all deliveries"),
            (&run.tool, "tool-calls"),
            (&run.tool_server, "tool-calls inside the service"),
        ] {
            for (pct, label) in [(50.0, "p50"), (99.0, "p99")] {
                let row = Row::num(
                    format!("  {label} latency, {what}, {c} call(s)"),
                    samples.pct_ms(pct),
                    "ms",
                )
                .vs(Baseline::new(
                    raw_name(raw, label),
                    raw.latency.pct_ms(pct),
                    "ms",
                ));
                section.row(row);
            }
        }
        if run.errors > 0 {
            section.note(format!(
                "{c} call(s): {} failed deliveries; first: {}",
                run.errors,
                run.first_error.as_deref().unwrap_or("?")
            ));
        }
    }

    // Overlapping: 16 calls, each with K = 16 of its deliveries in flight at once (VAPI does
    // not wait for an answer before the call's next message). None may be refused.
    let head = store.head().await?;
    app.state()
        .wait_for_position(head, Duration::from_secs(60))
        .await?;
    app.state().ledger.flush().await;
    let raw16 = ctx.raw_baseline_now(16).await?;
    let overlapped =
        crate::overlap::drive(&endpoint, 16, OVERLAP_K, ctx.run_for, 500_000_000).await;
    let rate = overlapped.deliveries as f64 / overlapped.elapsed.as_secs_f64().max(1e-9);
    section.row(
        Row::num(
            format!("deliveries/s, 16 calls x {OVERLAP_K} in flight per call"),
            rate,
            "req/s",
        )
        .vs(raw_rate(&raw16))
        .detail(json!({
            "deliveries": overlapped.deliveries,
            "refused": overlapped.refused,
            "first_refusal": overlapped.first_refusal,
        })),
    );
    section.row(
        Row::num(
            format!("  refused deliveries, 16 calls x {OVERLAP_K} in flight"),
            overlapped.refused as f64,
            "req",
        )
        .vs(Baseline::new(
            "deliveries sent",
            overlapped.deliveries as f64,
            "req",
        ))
        .target(Target::Below(0.5)),
    );

    // Paced: 64 calls in progress at once, each sending one delivery per PACE (real calls
    // send a final transcript every few seconds; this is about five times faster). This is
    // the "64 concurrent calls" of the tool-call target; the closed loop above is saturation.
    // The read models first absorb the closed-loop backlog, so it does not bill this run.
    let head = store.head().await?;
    app.state()
        .wait_for_position(head, Duration::from_secs(60))
        .await?;
    // And the processes work off the thousands of calls the closed loop ended (their summaries
    // and notifications): left running, that backlog would be timed as the paced calls' load.
    let drained = drain_processes(&app, Duration::from_secs(300)).await?;
    section.note(format!(
        "before the paced run the post-call processes worked off the closed loop's ended calls \
         for {:.1} s (nothing due or queued, every starter at the log's head)",
        drained.as_secs_f64()
    ));
    // The closed loops write ~1 GB of WAL; the checkpoint that sets off spreads its writes
    // over the next minute or two, and its flushes raised the paced run's raw-INSERT probe
    // p99 from ~4 ms to 14-47 ms (session 15). The paced run measures steady state: it starts
    // on a fresh checkpoint (timed ones still fall in it as they would in production).
    let checkpointed = Instant::now();
    sqlx::query("CHECKPOINT")
        .execute(app.state().store.pool())
        .await?;
    section.note(format!(
        "before the paced run a CHECKPOINT flushed what the closed loops left ({:.1} s)",
        checkpointed.elapsed().as_secs_f64()
    ));
    let paced_for = ctx.paced_for;
    let raw64 = &raws[LEVELS.len() - 1];
    // First, with nothing else running, the disk's own floor: a bare fdatasync.
    let floor = crate::append::fsync_floor(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
        FLOOR_SAMPLES,
        Duration::from_millis(5),
    )
    .await
    .unwrap_or_default();
    // Beside the run, a raw INSERT every PROBE_EVERY on a connection of its own: the durable
    // commit's latency on this disk under the same load. Its own commits compete with the
    // service's for the WAL flush, so it samples sparsely (every 20 ms added 50 flushes/s
    // to the service's ~80).
    let probe = async {
        match ctx.raw_url().await {
            Some(url) => crate::append::raw_probe(&url, PROBE_EVERY, paced_for)
                .await
                .ok(),
            None => None,
        }
    };
    let yielded_before = app.state().foreground.yielded();
    let (run, probe) = tokio::join!(
        drive(&endpoint, 64, paced_for, Some(PACE), 900_000_000),
        probe
    );
    let probe = probe.unwrap_or_default();
    section.note(format!(
        "paced: {} process runs took turns with the requests (the request path counted as \
         busy: `crate::foreground`)",
        app.state().foreground.yielded() - yielded_before
    ));
    let rate = run.deliveries as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let label = format!("paced, 64 calls, 1 delivery/call/{} ms", PACE.as_millis());
    section.row(
        Row::num(format!("{label}: deliveries/s"), rate, "req/s")
            .vs(raw_rate(raw64))
            .detail(json!({
                "deliveries": run.deliveries,
                "errors": run.errors,
                "first_error": run.first_error,
                "seconds": run.elapsed.as_secs_f64(),
                "all": run.all.summary(),
                "tool_calls": run.tool.summary(),
            })),
    );
    for (samples, what) in [
        (&run.all, "all deliveries"),
        (&run.tool, "tool-calls"),
        (&run.tool_server, "tool-calls inside the service"),
    ] {
        for (pct, name) in [(50.0, "p50"), (99.0, "p99")] {
            let mut row = Row::num(
                format!("  {name} latency, {what}, paced 64 calls"),
                samples.pct_ms(pct),
                "ms",
            )
            .vs(Baseline::new(
                raw_name(raw64, name),
                raw64.latency.pct_ms(pct),
                "ms",
            ));
            if what.ends_with("inside the service") && pct == 99.0 {
                row = row.target(Target::Below(5.0));
            }
            section.row(row);
        }
    }
    for (samples, what) in [
        (&run.tool_log, "of which the append (round trip + commit)"),
        (&run.tool_rest, "of which everything else"),
    ] {
        for (pct, name) in [(50.0, "p50"), (99.0, "p99")] {
            section.row(
                Row::num(
                    format!("    {name}, {what}, paced 64 calls"),
                    samples.pct_ms(pct),
                    "ms",
                )
                .vs(Baseline::new(
                    format!(
                        "raw INSERT {name}, probe every {} ms meanwhile",
                        PROBE_EVERY.as_millis()
                    ),
                    probe.pct_ms(pct),
                    "ms",
                )),
            );
        }
    }
    for (pct, name) in [(50.0, "p50"), (99.0, "p99")] {
        section.row(
            Row::num(
                format!("  {name}, the disk's floor: bare fdatasync of 8 KiB, nothing running"),
                floor.pct_ms(pct),
                "ms",
            )
            .vs(Baseline::new(
                "the tool-call target (p99 inside the service)",
                5.0,
                "ms",
            ))
            .detail(json!({"samples": floor.len(), "p99_9_ms": floor.pct_ms(99.9)})),
        );
    }
    if run.errors > 0 {
        section.note(format!(
            "paced: {} failed deliveries; first: {}",
            run.errors,
            run.first_error.as_deref().unwrap_or("?")
        ));
    }

    // How long the read models take to absorb what was ingested.
    let head = store.head().await?;
    let t = Instant::now();
    let settled = app
        .state()
        .wait_for_position(head, Duration::from_secs(30))
        .await?;
    let settle_time = t.elapsed();

    let peak = proc_status_mib("VmHWM").unwrap_or(0.0);
    section.row(
        Row::num("peak RSS of the process (VmHWM)", peak, "MiB")
            .vs(Baseline::new(
                "RSS before the service started",
                rss_before,
                "MiB",
            ))
            .target(Target::Below(256.0))
            .detail(json!({"peak_mark_reset_before_start": peak_reset})),
    );
    section.note(format!(
        "latency is client-observed over loopback HTTP (one keep-alive HTTP/1.1 connection per \
         worker, hyper's client; the service's server is poem) except the \
         rows 'inside the service', read from the service's own Server-Timing header (`app`: from \
         the request entering poem to the answer leaving it: body read, auth, decision, durable \
         commit, ledger; `log`: the part spent in the append, round trip and commit); the load generator runs in the same process on the same cores, so \
         both include waiting for a core; service pool size {pool_size} (default config)"
    ));
    section.note(format!(
        "a call = `callflex simulate`'s script of {} deliveries: status-updates (ringing, \
         in-progress, ended), 6 partial and 6 final transcripts, 2 tool-calls (logDriverCallout, \
         then scheduleCallback/takeMessage/transferCall in turn), speech-update, hang, \
         end-of-call-report; partial transcripts and speech-updates are kept as raw deliveries \
         only (no event); at 1/16/64 each worker plays calls back to back (closed \
         loop, saturation: latency there is mostly queueing, ~ concurrency / throughput); the \
         paced run keeps 64 calls in progress at a realistic-but-faster rate (one delivery per \
         call per {} ms) and carries the tool-call target; the baseline at each level is raw \
         single-row INSERTs at the same concurrency, measured right before the level (read models \
         caught up, nothing else running)",
        call_script_with(0, "").len(),
        PACE.as_millis()
    ));
    section.note(
        "the disk's floor is a bare fdatasync after an 8 KiB write, on a scratch file under \
         target/ (PostgreSQL's disk only where they share one), measured right before the paced \
         run with nothing else running: every tool-call answer waits for at least one such flush, \
         and for two when it arrives while another commit's flush is under way",
    );
    section.note(format!(
        "peak RSS {}: it covers the service, its projectors and the load generator",
        if peak_reset {
            "measured from service start (peak mark reset)"
        } else {
            "includes earlier sections (peak mark could not be reset)"
        },
    ));
    section.note(format!(
        "after the load the read models caught up with the log head in {:.2} s{}",
        settle_time.as_secs_f64(),
        if settled { "" } else { " (TIMED OUT)" }
    ));
    let with_processes = app.state().config.processes_enabled;
    app.stop().await;
    crate::quiet::quiet_row(ctx, recordings, &mut section).await?;
    section.note(format!(
        "the levels above ran with the post-call processes {} (sandbox providers); the row \
         'processes off' is the same 16-call loop on a service without them. Targets: the \
         hardening issue's 0.5x is ingest as it was when that issue was filed (no processes \
         existed): the 'processes off' row; the processes issue's 0.5x is the 16-call row \
         with them running",
        if with_processes { "on" } else { "off" }
    ));
    Ok(section)
}

/// Pairs' ratios for a note: "0.45x, 0.49x, 0.52x".
pub(crate) fn listed(ratios: impl Iterator<Item = f64>) -> String {
    ratios
        .map(|r| format!("{r:.2}x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One baseline-then-loop pair of a level.
struct Try {
    ratio: f64,
    raw: RawBaseline,
    run: LevelRun,
    events: f64,
    statements: u64,
    appends: u64,
    shared: u64,
    regrouped: u64,
    finished: i64,
    open: i64,
    yielded: u64,
    drained: Option<Duration>,
}

/// Process instances finished, and started but not finished.
async fn process_standing(app: &Application) -> anyhow::Result<(i64, i64)> {
    let (finished, open): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN status IN ('completed', 'failed') THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN status IN ('completed', 'failed') THEN 0 ELSE 1 END), 0) \
         FROM process_work",
    )
    .fetch_one(app.state().store.pool())
    .await?;
    Ok((finished, open))
}

/// Waits until every process's starter has read the whole log and no instance is due within
/// a second or queued (instances retrying later, e.g. a sandbox provider's failure, are left
/// waiting); answers how long that took.
async fn drain_processes(app: &Application, limit: Duration) -> anyhow::Result<Duration> {
    let state = app.state();
    let started = Instant::now();
    loop {
        let mut behind = 0;
        for process in state.processes_running.get().into_iter().flatten() {
            behind += state
                .store
                .count_after(process.starter.status().checkpoint)
                .await?;
        }
        let soon = eventlog::now_ms() + 1_000;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM process_work WHERE status = 'queued' \
             OR (due_at IS NOT NULL AND due_at <= $1)",
        )
        .bind(soon)
        .fetch_one(state.store.pool())
        .await?;
        if behind == 0 && open == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "the processes did not drain: {behind} events unread, {open} instances open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
