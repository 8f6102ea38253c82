//! Section `append`: raw single-row INSERTs vs `EventStore::append`, one event per transaction.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{Append, CommandMeta, EventStore, NewEvent};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::Executor;
use tokio::sync::Barrier;

use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::{Ctx, RawBaseline};

/// Operations each writer runs before the clock starts (connections, plans, caches).
const WARMUP_OPS: u64 = 20;

/// The same columns, constraints and indexes as the log's `events` table.
pub(crate) const RAW_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_raw (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    aggregate_type  TEXT   NOT NULL,
    aggregate_id    TEXT   NOT NULL,
    sequence        BIGINT NOT NULL,
    event_type      TEXT   NOT NULL,
    event_version   INTEGER NOT NULL,
    payload         JSONB  NOT NULL,
    event_id        TEXT   NOT NULL,
    correlation_id  TEXT   NOT NULL,
    causation_id    TEXT,
    actor           TEXT   NOT NULL,
    tenant_id       TEXT,
    recorded_at     BIGINT NOT NULL,
    metadata        JSONB  NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT bench_raw_stream_sequence UNIQUE (aggregate_type, aggregate_id, sequence),
    CONSTRAINT bench_raw_event_id UNIQUE (event_id)
);
CREATE INDEX IF NOT EXISTS bench_raw_commit_order ON bench_raw (transaction_id, global_position);
CREATE INDEX IF NOT EXISTS bench_raw_tenant ON bench_raw (tenant_id, global_position);";

pub(crate) const RAW_INSERT: &str =
    "INSERT INTO bench_raw (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, event_id, correlation_id, causation_id, actor, \
     tenant_id, recorded_at, metadata) \
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13::jsonb)";

/// A transcript segment as the call aggregate stores it: the payload every append writes.
pub fn sample_payload(n: u64) -> serde_json::Value {
    json!({"TranscriptSegmentAdded": {"segment": {
        "key": format!("seg-{n:08x}"),
        "role": if n.is_multiple_of(2) { "user" } else { "assistant" },
        "text": "Hi, this is Sam from route 12, I won't make it in tomorrow, I'm sick.",
        "at": "2025-06-10T09:00:05Z",
        "seconds_from_start": 5.0,
    }}})
}

/// Measured throughput of one concurrent run.
pub struct Run {
    pub ops: u64,
    pub elapsed: Duration,
    pub latency: Samples,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(writer, i)` in `writers` concurrent loops for `run_for` after a short warm-up,
/// recording every measured operation's latency. `i` counts per writer from 0.
pub async fn drive<Op, Fut>(writers: usize, run_for: Duration, op: Op) -> anyhow::Result<Run>
where
    Op: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(writers + 1));
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let op = op.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            let mut warm_err = None;
            while i < WARMUP_OPS && warm_err.is_none() {
                warm_err = op(w, i).await.err();
                i += 1;
            }
            barrier.wait().await;
            if let Some(err) = warm_err {
                return Err(err);
            }
            let deadline = Instant::now() + run_for;
            let mut latency = Samples::default();
            let mut ops = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                op(w, i).await?;
                latency.push(t.elapsed());
                i += 1;
                ops += 1;
            }
            anyhow::Ok((ops, latency))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut run = Run {
        ops: 0,
        elapsed: Duration::ZERO,
        latency: Samples::default(),
    };
    for task in tasks {
        let (ops, latency) = task.await??;
        run.ops += ops;
        run.latency.extend(latency);
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// How a raw INSERT is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// The baseline: one autocommit statement.
    Autocommit,
    /// BEGIN; INSERT .. RETURNING; COMMIT (what the store does, minus pg_notify).
    Transaction,
    /// BEGIN; INSERT .. RETURNING; pg_notify; COMMIT (the store's statements, no Any driver).
    TransactionNotify,
}

/// Raw single-row INSERTs (autocommit, one row per transaction) with sqlx directly.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds one raw event row in [`RAW_INSERT`]'s order.
pub(crate) fn bind_raw<'q>(
    query: PgQuery<'q>,
    stream: String,
    sequence: i64,
    payload: &'q str,
    meta: &'q str,
) -> PgQuery<'q> {
    query
        .bind("call")
        .bind(stream)
        .bind(sequence)
        .bind("TranscriptSegmentAdded")
        .bind(1i32)
        .bind(payload)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(None::<String>)
        .bind("system:bench")
        .bind("00000000-0000-0000-0000-000000000001")
        .bind(eventlog::now_ms())
        .bind(meta)
}

/// Latencies of single raw INSERTs, one every `every` on one connection, for `run_for`: what
/// a durable commit costs on this disk while something else runs beside it.
pub async fn raw_probe(url: &str, every: Duration, run_for: Duration) -> anyhow::Result<Samples> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        // A raw INSERT is one round trip: no ping on checkout (sqlx's default pings).
        .test_before_acquire(false)
        .connect(url)
        .await?;
    pool.execute(RAW_TABLE).await?;
    let payload = sample_payload(0).to_string();
    let meta =
        json!({"received_at": chrono::Utc::now(), "extra": {"delivery": "probe"}}).to_string();
    let stream = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let mut samples = Samples::default();
    let deadline = Instant::now() + run_for;
    let mut tick = tokio::time::interval(every);
    let mut sequence = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        sequence += 1;
        let started = Instant::now();
        bind_raw(
            sqlx::query(RAW_INSERT),
            stream.clone(),
            sequence,
            &payload,
            &meta,
        )
        .execute(&pool)
        .await?;
        samples.push(started.elapsed());
    }
    pool.close().await;
    Ok(samples)
}

/// The disk's own commit floor: `n` bare `fdatasync` calls, each after an 8 KiB write (a WAL
/// page), one every `every`, on a scratch file in `dir`. Run with nothing else going on, it is
/// the least any durable commit on this disk can take, PostgreSQL or not.
pub async fn fsync_floor(dir: PathBuf, n: usize, every: Duration) -> anyhow::Result<Samples> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("fsync-floor-{}.bin", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&path)?;
        let page = [0x5a_u8; 8192];
        let mut samples = Samples::default();
        let result = (|| -> std::io::Result<()> {
            for i in 0..n {
                // Cycle over 16 MiB, like a WAL segment being filled.
                file.write_all_at(&page, (i % 2048) as u64 * 8192)?;
                let started = Instant::now();
                file.sync_data()?;
                samples.push(started.elapsed());
                std::thread::sleep(every);
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&path);
        result?;
        Ok(samples)
    })
    .await?
}

pub async fn raw_inserts(
    url: &str,
    writers: usize,
    run_for: Duration,
) -> anyhow::Result<RawBaseline> {
    raw_inserts_as(url, writers, run_for, RawMode::Autocommit).await
}

pub async fn raw_inserts_as(
    url: &str,
    writers: usize,
    run_for: Duration,
    mode: RawMode,
) -> anyhow::Result<RawBaseline> {
    let pool = PgPoolOptions::new()
        .max_connections(writers as u32)
        .min_connections(writers as u32)
        // One round trip per INSERT, as the service's own pool (sqlx's default pings every
        // checkout first: a second round trip that handicapped this baseline until session 16).
        .test_before_acquire(false)
        .connect(url)
        .await?;
    pool.execute(RAW_TABLE).await?;
    let payload = Arc::new(sample_payload(0).to_string());
    let meta = Arc::new(
        json!({"received_at": chrono::Utc::now(), "extra": {"delivery": "raw"}}).to_string(),
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let op_pool = pool.clone();
    let run = drive(writers, run_for, move |w, i| {
        let pool = op_pool.clone();
        let payload = payload.clone();
        let meta = meta.clone();
        let stream = format!("raw-{run_id}-{w}");
        async move {
            let sql = if mode == RawMode::Autocommit {
                RAW_INSERT.to_string()
            } else {
                format!("{RAW_INSERT} RETURNING global_position")
            };
            let query = bind_raw(sqlx::query(&sql), stream, i as i64 + 1, &payload, &meta);
            match mode {
                RawMode::Autocommit => {
                    query.execute(&pool).await?;
                }
                RawMode::Transaction | RawMode::TransactionNotify => {
                    let mut tx = pool.begin().await?;
                    let position: i64 = sqlx::Row::try_get(&query.fetch_one(&mut *tx).await?, 0)?;
                    if mode == RawMode::TransactionNotify {
                        sqlx::query("SELECT pg_notify('callflex_bench', $1)")
                            .bind(position.to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    pool.close().await;
    Ok(RawBaseline {
        writers,
        rate: run.rate(),
        latency: run.latency,
    })
}

/// `EventStore::append` of one event per transaction; each writer appends to its own stream.
async fn store_appends(
    store: &EventStore,
    writers: usize,
    run_for: Duration,
    idempotency: bool,
) -> anyhow::Result<Run> {
    let store = store.clone();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let tenant = uuid::Uuid::from_u128(1);
    drive(writers, run_for, move |w, i| {
        let store = store.clone();
        let stream = format!("append-{run_id}-{w}");
        let key = idempotency.then(|| format!("bench:{run_id}:{w}:{i}"));
        async move {
            let mut meta = CommandMeta::new("system:bench").tenant(tenant);
            if let Some(key) = &key {
                meta = meta.idempotency_key(key.clone());
            }
            store
                .append(Append {
                    aggregate_type: "call".into(),
                    aggregate_id: stream,
                    expected_version: i as i64,
                    events: vec![NewEvent {
                        event_type: "TranscriptSegmentAdded".into(),
                        event_version: 1,
                        payload: sample_payload(i),
                        metadata: meta.for_event(0),
                    }],
                    idempotency_key: key,
                    snapshot: None,
                })
                .await?;
            Ok(())
        }
    })
    .await
}

fn latency_detail(latency: &Samples) -> serde_json::Value {
    json!({ "latency": latency.summary() })
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let secs = ctx.run_for.as_secs_f64();
    let mut section = Section::new(
        "append",
        format!("PostgreSQL, one event per transaction, {secs:.1} s per run"),
    );
    let raw1 = ctx.raw_baseline(1).await?;
    let raw16 = ctx.raw_baseline(16).await?;
    let raw_name = |b: &RawBaseline| format!("raw INSERT, {} writer(s)", b.writers);
    section.row(
        Row::num("raw single-row INSERT, 1 writer", raw1.rate, "ev/s")
            .detail(latency_detail(&raw1.latency)),
    );
    section.row(
        Row::num("raw single-row INSERT, 16 writers", raw16.rate, "ev/s")
            .vs(Baseline::new(raw_name(&raw1), raw1.rate, "ev/s"))
            .detail(latency_detail(&raw16.latency)),
    );

    let url = ctx.fresh_postgres("append").await?;
    let store = EventStore::open(&url, 16).await?;
    for (writers, raw, target) in [
        (1, &raw1, None),
        (16, &raw16, Some(Target::RatioAtLeast(0.5))),
    ] {
        let run = store_appends(&store, writers, ctx.run_for, false).await?;
        let mut row = Row::num(
            format!("EventStore::append, {writers} writer(s)"),
            run.rate(),
            "ev/s",
        )
        .vs(Baseline::new(raw_name(raw), raw.rate, "ev/s"))
        .detail(json!({
            "latency": run.latency.summary(),
            "raw_latency": raw.latency.summary(),
            "events": run.ops,
        }));
        if let Some(target) = target {
            row = row.target(target);
        }
        section.row(row);
    }
    let keyed = store_appends(&store, 16, ctx.run_for, true).await?;
    section.row(
        Row::num(
            "EventStore::append + idempotency key, 16 writers",
            keyed.rate(),
            "ev/s",
        )
        .vs(Baseline::new(raw_name(&raw16), raw16.rate, "ev/s"))
        .detail(latency_detail(&keyed.latency)),
    );
    // Diagnostics: where the gap to the raw rate comes from.
    let raw_url = ctx.fresh_postgres("append_raw").await?;
    for (mode, label) in [
        (
            RawMode::Transaction,
            "diagnostic: raw BEGIN/INSERT RETURNING/COMMIT, 16 writers",
        ),
        (
            RawMode::TransactionNotify,
            "diagnostic: raw BEGIN/INSERT/pg_notify/COMMIT, 16 writers",
        ),
    ] {
        let diag = raw_inserts_as(&raw_url, 16, ctx.run_for, mode).await?;
        section.row(
            Row::num(label, diag.rate, "ev/s")
                .vs(Baseline::new(raw_name(&raw16), raw16.rate, "ev/s"))
                .detail(latency_detail(&diag.latency)),
        );
    }
    for (writers, raw) in [(1, &raw1), (16, &raw16)] {
        section.note(format!(
            "latency at {writers} writer(s): raw INSERT p50 {:.2} ms / p99 {:.2} ms",
            raw.latency.pct_ms(50.0),
            raw.latency.pct_ms(99.0)
        ));
    }
    section.note(
        "raw = sqlx PgPool, autocommit INSERT into bench_raw (same columns, constraints and \
         indexes as events); EventStore::append = BEGIN, INSERT .. RETURNING, pg_notify, COMMIT; \
         each writer appends to its own stream",
    );
    section.note(
        "the keyed row adds an idempotency key (its events get ids derived from it); \
         the diagnostic rows replay the store's statements with sqlx directly, with and without \
         pg_notify (NOTIFY takes a cluster-wide lock at commit, serializing committers)",
    );
    drop(store);
    Ok(section)
}
