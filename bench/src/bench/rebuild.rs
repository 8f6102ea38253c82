//! Section `rebuild`: a realistic log (calls with transcripts, tool calls and end reports,
//! organizations with contacts, subscriptions with invoices and usage) on PostgreSQL and
//! SQLite; the live projectors catch up, then `projections::rebuild` replays the log into
//! fresh tables for all five read models, and the rebuilt tables are compared row by row with
//! the live ones.

use std::time::{Duration, Instant};

use aggregates::call::{functions, Call, CallCommand, CallStatus, EndReport, FunctionInvocation};
use aggregates::organization::{
    ContactSource, NotificationSettings, Organization, OrganizationCommand, OrganizationSettings,
    TransferNumbers,
};
use aggregates::subscription::{Subscription, SubscriptionCommand, SubscriptionStatus};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::{Aggregate, DomainEvent as _};
use eventlog::{Append, Backend, Checkpoint, CommandMeta, EventStore, NewEvent};
use futures::{StreamExt, TryStreamExt};
use projections::ProjectorRunner;
use serde_json::{json, Value};
use sqlx::Row as _;
use uuid::Uuid;

use crate::command::{context, segment};
use crate::report::{Baseline, Row, Section, Target};
use crate::Ctx;

const TRANSCRIPTS_PER_CALL: u64 = 20;
const CONTACTS_PER_ORG: usize = 8;
const CALLERS_PER_ORG: usize = 40;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_748_736_000 + seconds, 0)
        .single()
        .unwrap_or_default()
}

/// Runs `commands` through the aggregate's pure decision logic (as the repository would, one
/// command at a time on the state so far) and returns the events to append.
pub(crate) fn decide_stream<A, E>(
    commands: Vec<(A::Command, DateTime<Utc>)>,
    tenant: Uuid,
    actor: &str,
    decide: impl Fn(&A, A::Command) -> Result<Vec<A::Event>, E>,
) -> anyhow::Result<Vec<NewEvent>>
where
    A: Aggregate,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut state = A::default();
    let mut out = Vec::new();
    for (command, received_at) in commands {
        let mut meta = CommandMeta::new(actor).tenant(tenant);
        meta.received_at = received_at;
        for (i, event) in decide(&state, command)?.into_iter().enumerate() {
            out.push(NewEvent {
                event_type: event.event_type(),
                event_version: event.event_version().parse().unwrap_or(1),
                payload: serde_json::to_value(&event)?,
                metadata: meta.for_event(i),
            });
            state.apply(event);
        }
    }
    Ok(out)
}

fn append(aggregate_type: &str, id: String, events: Vec<NewEvent>) -> Append {
    Append {
        aggregate_type: aggregate_type.into(),
        aggregate_id: id,
        expected_version: 0,
        events,
        idempotency_key: None,
        snapshot: None,
    }
}

fn caller(org_index: usize, k: usize) -> String {
    format!("+1555{org_index:03}{k:04}")
}

fn settings() -> OrganizationSettings {
    OrganizationSettings {
        notifications: NotificationSettings {
            sms_enabled: true,
            sms_numbers: vec!["+15550001111".into()],
            email_enabled: true,
            email_addresses: vec!["dispatch@acme.test".into()],
            post_call_summary: true,
            quiet_hours: None,
            usage_alerts_sms: false,
        },
        transfer_numbers: TransferNumbers {
            dispatch: Some("+15550002222".into()),
            manager: Some("+15550003333".into()),
            emergency: None,
        },
        business_hours: None,
        timezone: Some("America/Chicago".into()),
    }
}

fn organization(org: Uuid, index: usize) -> anyhow::Result<Append> {
    let actor = "system:bench".to_string();
    let mut commands = vec![
        (
            OrganizationCommand::Create {
                id: org,
                name: format!("Acme Trucking {index}"),
                owner_user_id: format!("user-{index}"),
                owner_email: format!("owner{index}@acme.test"),
                actor: actor.clone(),
            },
            at(0),
        ),
        (
            OrganizationCommand::UpdateSettings {
                settings: settings(),
                actor: actor.clone(),
            },
            at(1),
        ),
    ];
    for k in 0..CONTACTS_PER_ORG {
        commands.push((
            OrganizationCommand::CreateContact {
                contact_id: format!("contact-{index}-{k}"),
                phone_number: caller(index, k),
                name: Some(format!("Driver {k}")),
                email: Some(format!("driver{k}@acme.test")),
                notes: None,
                source: ContactSource::Manual,
                actor: actor.clone(),
            },
            at(2 + k as i64),
        ));
    }
    let events = decide_stream::<Organization, _>(commands, org, &actor, |s, c| s.decide(c))?;
    Ok(append("organization", org.to_string(), events))
}

/// One call: status, 20 final transcripts, two tool calls, hang, end-of-call report.
fn call(
    org: Uuid,
    org_index: usize,
    n: usize,
    start: i64,
) -> anyhow::Result<(String, Append, i64)> {
    let vapi_id = format!("bench-call-{org_index}-{n}");
    let mut ctx = context(org, &vapi_id);
    ctx.from_number = Some(caller(org_index, n % CALLERS_PER_ORG));
    ctx.started_at = Some(at(start));
    let settings = settings();
    let mut t = start;
    let mut tick = |dt: i64| {
        t += dt;
        (t, at(t))
    };
    let mut commands = vec![
        (
            CallCommand::Start {
                ctx: ctx.clone(),
                at: at(start),
            },
            at(start),
        ),
        (
            CallCommand::UpdateStatus {
                ctx: ctx.clone(),
                status: CallStatus::InProgress,
                ended_reason: None,
                at: tick(1).1,
            },
            at(start + 1),
        ),
    ];
    let tools = [
        (
            "takeMessage",
            json!({"callerName": "Pat", "message": "Please call me back about invoice 1182",
                   "urgent": n.is_multiple_of(5)}),
        ),
        if n.is_multiple_of(2) {
            (
                "transferCall",
                json!({"destination": "dispatch", "reason": "load question"}),
            )
        } else {
            (
                "logDriverCallout",
                json!({"driverName": "Sam Miller", "reason": "sick", "routeNumber": "12",
                       "expectedReturn": "Monday"}),
            )
        },
    ];
    for i in 1..=TRANSCRIPTS_PER_CALL {
        let mut seg = segment(i);
        let (now, when) = tick(4);
        seg.at = when;
        seg.seconds_from_start = Some((now - start) as f64);
        let received = seg.at;
        commands.push((
            CallCommand::AddTranscript {
                ctx: ctx.clone(),
                segment: seg,
            },
            received,
        ));
        if i == 8 || i == 16 {
            let (name, args) = &tools[usize::from(i == 16)];
            let args = args.as_object().cloned().unwrap_or_default();
            let decided = functions::decide(name, &args, &settings);
            let when = tick(1).1;
            commands.push((
                CallCommand::HandleFunctionCall {
                    ctx: ctx.clone(),
                    invocation: FunctionInvocation {
                        tool_call_id: format!("tc-{n}-{i}"),
                        name: name.to_string(),
                        arguments: Value::Object(args),
                        action: decided.action,
                        reply: decided.reply,
                        at: when,
                        notifications: decided.notifications,
                    },
                },
                when,
            ));
        }
    }
    let hang = tick(2).1;
    commands.push((
        CallCommand::Hang {
            ctx: ctx.clone(),
            at: hang,
        },
        hang,
    ));
    let (last, end) = tick(3);
    commands.push((
        CallCommand::End {
            ctx: ctx.clone(),
            report: EndReport {
                ended_reason: Some("customer-ended-call".into()),
                started_at: Some(at(start)),
                ended_at: Some(at(last - 3)),
                duration_seconds: None,
                cost: Some(0.0123 * (last - start) as f64),
                cost_breakdown: json!({"llm": 0.02, "stt": 0.01, "tts": 0.015, "vapi": 0.05}),
                transcript: Some("AI: Thanks for calling Acme Trucking\nUser: Hi".into()),
                messages: json!([]),
                recording_url: Some(format!("https://storage.vapi.test/{vapi_id}.wav")),
                stereo_recording_url: None,
                summary: Some("Driver called out sick; message taken.".into()),
                structured_data: json!({"route": "12"}),
                success_evaluation: Some("true".into()),
                at: end,
            },
        },
        end,
    ));
    let actor = format!("provider:vapi:{vapi_id}");
    let events = decide_stream::<Call, _>(commands, org, &actor, |s, c| s.decide(c))?;
    let id = callflex::webhooks::vapi::call_id(org, &vapi_id);
    let minutes = ((last - start) + 59) / 60;
    Ok((id.clone(), append("call", id, events), minutes))
}

fn subscription(
    org: Uuid,
    index: usize,
    usage: &[(String, i64, DateTime<Utc>)],
) -> anyhow::Result<Append> {
    let sub = format!("sub_bench_{index}");
    let customer = format!("cus_bench_{index}");
    let created = at(0).timestamp();
    let period_start = created;
    let period_end = created + 30 * 86_400;
    let mut commands = vec![
        (
            SubscriptionCommand::CompleteCheckout {
                organization_id: org,
                customer_id: customer.clone(),
                subscription_id: sub.clone(),
                plan: Some("pro".into()),
                checkout_session_id: format!("cs_bench_{index}"),
                stripe_event_id: format!("evt_{index}_1"),
                stripe_created: created,
            },
            at(0),
        ),
        (
            SubscriptionCommand::SyncSubscription {
                organization_id: Some(org),
                customer_id: customer.clone(),
                status: SubscriptionStatus::Active,
                plan: Some("pro".into()),
                price_id: Some("price_pro".into()),
                subscription_item_id: Some(format!("si_{index}")),
                included_minutes: Some(500),
                current_period_start: Some(period_start),
                current_period_end: Some(period_end),
                cancel_at_period_end: false,
                stripe_event_id: format!("evt_{index}_2"),
                stripe_created: created + 1,
            },
            at(1),
        ),
        (
            SubscriptionCommand::RecordInvoicePaid {
                invoice_id: format!("in_{index}_1"),
                amount_paid_cents: 9_900,
                currency: "usd".into(),
                period_start,
                period_end,
                hosted_invoice_url: Some(format!("https://invoice.stripe.test/in_{index}_1")),
                stripe_event_id: format!("evt_{index}_3"),
                stripe_created: created + 2,
            },
            at(2),
        ),
    ];
    for (call_id, minutes, when) in usage {
        commands.push((
            SubscriptionCommand::RecordUsage {
                call_id: call_id.clone(),
                minutes: *minutes,
                at: *when,
            },
            *when,
        ));
    }
    if index.is_multiple_of(3) {
        commands.push((
            SubscriptionCommand::RecordPaymentFailed {
                invoice_id: format!("in_{index}_2"),
                amount_due_cents: 12_400,
                currency: "usd".into(),
                stripe_event_id: format!("evt_{index}_4"),
                stripe_created: period_end + 10,
            },
            at(30 * 86_400 + 10),
        ));
    }
    let events =
        decide_stream::<Subscription, _>(commands, org, "provider:stripe", |s, c| s.decide(c))?;
    Ok(append("subscription", sub, events))
}

/// Writes the whole log; returns (events, calls).
async fn fill(store: &EventStore, calls: usize) -> anyhow::Result<(u64, usize)> {
    let orgs = (calls / 200).clamp(2, 10);
    let org_ids: Vec<Uuid> = (0..orgs).map(|_| Uuid::new_v4()).collect();
    let mut events = 0u64;
    for (i, org) in org_ids.iter().enumerate() {
        events += store.append(organization(*org, i)?).await?.event_count as u64;
    }
    let mut call_appends = Vec::with_capacity(calls);
    let mut usage: Vec<Vec<(String, i64, DateTime<Utc>)>> = vec![Vec::new(); orgs];
    for n in 0..calls {
        let o = n % orgs;
        // Spread calls over about ten days so usage is per day, not one row.
        let start = 600 + n as i64 * 431;
        let (id, append, minutes) = call(org_ids[o], o, n, start)?;
        usage[o].push((id, minutes, at(start + 200)));
        call_appends.push(append);
    }
    let parallel = match store.backend() {
        Backend::Postgres => 8,
        Backend::Sqlite => 1,
    };
    let written: Vec<i64> = futures::stream::iter(call_appends)
        .map(|a| {
            let store = store.clone();
            async move { anyhow::Ok(store.append(a).await?.event_count) }
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    events += written.iter().sum::<i64>() as u64;
    for (i, org) in org_ids.iter().enumerate() {
        events += store
            .append(subscription(*org, i, &usage[i])?)
            .await?
            .event_count as u64;
    }
    Ok((events, calls))
}

/// Every row of `table`, rendered as JSON text, sorted: a deterministic dump.
async fn dump(store: &EventStore, table: &str) -> anyhow::Result<Vec<String>> {
    let pool = store.pool();
    let (columns_sql, array_fn, cast) = match store.backend() {
        Backend::Postgres => (
            format!(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}' \
                 ORDER BY ordinal_position"
            ),
            "json_build_array",
            true,
        ),
        Backend::Sqlite => (
            format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
            "json_array",
            false,
        ),
    };
    let columns: Vec<String> = sqlx::query(&columns_sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!columns.is_empty(), "table {table} has no columns");
    let list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let expr = if cast {
        format!("CAST({array_fn}({list}) AS TEXT)")
    } else {
        format!("{array_fn}({list})")
    };
    let sql = format!("SELECT {expr} AS r FROM {table} ORDER BY 1");
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

async fn dump_all(store: &EventStore) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for projector in projections::all() {
        for table in projector.tables() {
            out.push((table.to_string(), dump(store, table).await?));
        }
    }
    Ok(out)
}

/// A raw scan of the log: every column of every event in commit order, no decoding.
async fn raw_scan(store: &EventStore) -> anyhow::Result<(u64, Duration)> {
    let sql = match store.backend() {
        Backend::Postgres => {
            "SELECT global_position, transaction_id, aggregate_type, aggregate_id, sequence, \
             event_type, event_version::bigint, payload::text, event_id, correlation_id, \
             causation_id, actor, tenant_id, recorded_at, metadata::text FROM events \
             ORDER BY transaction_id, global_position"
        }
        Backend::Sqlite => {
            "SELECT global_position, transaction_id, aggregate_type, aggregate_id, sequence, \
             event_type, event_version, payload, event_id, correlation_id, causation_id, \
             actor, tenant_id, recorded_at, metadata FROM events ORDER BY global_position"
        }
    };
    let t = Instant::now();
    let mut rows = sqlx::query(sql).fetch(store.pool());
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await? {
        bytes += row.try_get::<String, _>(7)?.len();
        n += 1;
    }
    std::hint::black_box(bytes);
    Ok((n, t.elapsed()))
}

/// The projectors' read path in rebuild-sized batches: read and decode, apply nothing.
async fn read_all_scan(store: &EventStore) -> anyhow::Result<(u64, Duration)> {
    let t = Instant::now();
    let mut from = Checkpoint::START;
    let mut n = 0u64;
    loop {
        let batch = projections::runner::read_decoded(store, from, 5_000).await?;
        let Some((last, _)) = batch.last() else { break };
        from = last.checkpoint();
        n += batch.len() as u64;
        std::hint::black_box(&batch);
    }
    Ok((n, t.elapsed()))
}

/// Spawns every projector as `Application::build` does and times them to the log's end.
async fn catch_up_as_the_service_does(store: &EventStore) -> anyhow::Result<(Duration, Value)> {
    let head = store.head().await?;
    let target = store
        .checkpoint_of(head)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no event at the head {head}"))?;
    let feed = std::sync::Arc::new(projections::LogFeed::new(
        store.clone(),
        Duration::from_millis(25),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut spawned = Vec::new();
    for projector in projections::all() {
        let mut stopped = stopped.clone();
        let runner = ProjectorRunner::new(store.clone(), projector).feed(feed.clone());
        spawned.push(runner.spawn(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    let mut per = serde_json::Map::new();
    for (handle, _) in &spawned {
        anyhow::ensure!(
            handle.wait_for(target, Duration::from_secs(600)).await,
            "{} did not catch up",
            handle.name()
        );
        per.insert(
            handle.name().into(),
            json!({"reached_after_seconds": started.elapsed().as_secs_f64()}),
        );
    }
    let took = started.elapsed();
    let _ = stop.send(true);
    for (_, task) in spawned {
        let _ = task.await;
    }
    Ok((took, Value::Object(per)))
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn one_backend(
    section: &mut Section,
    label: &str,
    url: &str,
    calls: usize,
) -> anyhow::Result<()> {
    let store = EventStore::open(url, 10).await?;
    let t = Instant::now();
    let (events, calls) = fill(&store, calls).await?;
    let fill_time = t.elapsed();

    let (scanned, scan_time) = raw_scan(&store).await?;
    anyhow::ensure!(
        scanned == events,
        "raw scan saw {scanned} of {events} events"
    );
    let scan_rate = rate(scanned, scan_time);
    let scan = Baseline::new("raw SELECT scan of events", scan_rate, "ev/s");

    let (decoded, decode_time) = read_all_scan(&store).await?;
    section.row(
        Row::num(
            format!("{label}: read_all + decode, no apply"),
            rate(decoded, decode_time),
            "ev/s",
        )
        .vs(scan.clone()),
    );

    // A service restarted behind the whole log: every projector spawned as the service
    // spawns them (one shared feed, read at most every 25 ms while caught up, concurrently),
    // timed until each has reached the last event.
    let (live_time, live) = catch_up_as_the_service_does(&store).await?;
    let catch_up_rate = rate(events, live_time);
    section.row(
        Row::num(
            format!("{label}: live catch-up as a restarted service (shared feed, concurrent)"),
            catch_up_rate,
            "ev/s",
        )
        .vs(scan.clone())
        .detail(live),
    );
    let runners: Vec<ProjectorRunner> = projections::all()
        .into_iter()
        .map(|p| ProjectorRunner::new(store.clone(), p))
        .collect();

    let before = dump_all(&store).await?;
    let t = Instant::now();
    let mut per = serde_json::Map::new();
    let mut per_rows = Vec::new();
    let handles: Vec<_> = runners.iter().map(|r| r.handle()).collect();
    for (report, took) in projections::rebuild::rebuild_all(&store, &handles).await? {
        per.insert(
            report.projector.into(),
            json!({"events": report.events, "wall_seconds": took.as_secs_f64(),
                   "apply_seconds": report.apply_time.as_secs_f64(),
                   "events_per_apply_s": rate(report.events, report.apply_time)}),
        );
        per_rows.push((report.projector, report.events, report.apply_time));
    }
    let rebuild_time = t.elapsed();
    section.row(
        Row::num(
            format!("{label}: rebuild all read models (log read once)"),
            rate(events, rebuild_time),
            "ev/s",
        )
        .vs(scan.clone())
        .target(Target::RatioAtLeast(0.5))
        .detail(json!({
            "events": events,
            "calls": calls,
            "seconds": rebuild_time.as_secs_f64(),
            "projectors": per,
        })),
    );
    section.row(
        Row::num(
            format!("{label}: live catch-up vs the rebuild"),
            catch_up_rate,
            "ev/s",
        )
        .vs(Baseline::new(
            "rebuild of every read model, this run",
            rate(events, rebuild_time),
            "ev/s",
        ))
        .target(Target::RatioAtLeast(1.0)),
    );
    for (name, n, took) in per_rows {
        section.row(
            Row::num(
                format!("{label}:   {name} apply time only"),
                rate(n, took),
                "ev/s",
            )
            .vs(scan.clone()),
        );
    }

    let after = dump_all(&store).await?;
    let mut tables = serde_json::Map::new();
    let mut all_match = before.len() == after.len();
    let mut rows_total = 0usize;
    for ((table, live_rows), (_, rebuilt_rows)) in before.iter().zip(after.iter()) {
        let same = live_rows == rebuilt_rows;
        all_match &= same;
        rows_total += live_rows.len();
        let first_diff = (!same).then(|| {
            live_rows
                .iter()
                .zip(rebuilt_rows.iter())
                .find(|(a, b)| a != b)
                .map(|(a, b)| json!({"live": a, "rebuilt": b}))
        });
        tables.insert(
            table.clone(),
            json!({
                "live_rows": live_rows.len(),
                "rebuilt_rows": rebuilt_rows.len(),
                "match": same,
                "first_difference": first_diff.flatten(),
            }),
        );
    }
    let verdict = if all_match {
        format!("MATCH ({} tables, {rows_total} rows)", before.len())
    } else {
        let bad: Vec<&String> = tables
            .iter()
            .filter(|(_, v)| v["match"] == json!(false))
            .map(|(k, _)| k)
            .collect();
        format!("DIFF in {bad:?}")
    };
    section.row(
        Row::text(format!("{label}: rebuilt read models == live"), verdict)
            .target(Target::Match)
            .detail(Value::Object(tables)),
    );
    section.note(format!(
        "{label}: {events} events ({calls} calls); filled in {:.1} s; raw scan {:.0} ev/s \
         ({:.2} s)",
        fill_time.as_secs_f64(),
        scan_rate,
        scan_time.as_secs_f64()
    ));
    store.pool().close().await;
    Ok(())
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let calls = if ctx.quick { 500 } else { 2_000 };
    let mut section = Section::new(
        "rebuild",
        format!(
            "{calls} calls x ~26 events + organizations, contacts, subscriptions; \
             PostgreSQL and SQLite"
        ),
    );
    let pg = ctx.fresh_postgres("rebuild").await?;
    one_backend(&mut section, "PostgreSQL", &pg, calls).await?;
    let lite = ctx.fresh_sqlite().await;
    one_backend(&mut section, "SQLite", &lite, calls).await?;
    if let Some(raw) = ctx.raw_baseline_if_known(16).await {
        section.note(format!(
            "for scale: raw single-row INSERT at 16 writers measured {:.0} ev/s in this run",
            raw.rate
        ));
    }
    section.note(
        "rebuild rate = log events / wall time to rebuild every read model: the log is read \
         and decoded once, each batch goes to all projectors' fresh tables concurrently, then \
         each set of tables is swapped in; per-projector rows count only that projector's \
         apply time; the baseline is a raw SELECT of every event column on the same backend",
    );
    section.note(
        "events are decided by the real aggregates and appended one call per transaction; \
         the comparison dumps every row of the ten read-model tables as JSON, sorted",
    );
    Ok(section)
}
