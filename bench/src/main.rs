//! CallFlex benchmark: a report, not a test. Every figure is printed beside a baseline measured
//! in the same run, as a ratio, with the machine it ran on.
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--postgres-url URL] [--only NAME[,NAME...]]
//! ```
//!
//! Sections (each on its own fresh PostgreSQL database, dropped at the end):
//! - `append`: raw single-row INSERTs vs `EventStore::append` (one event per transaction) at
//!   1 and 16 concurrent writers.
//! - `command`: `AggregateRepository<Call>` command time for the 1st..10th vs 491st..500th
//!   transcript of one call, with and without snapshots.
//! - `rebuild`: a realistic log on PostgreSQL and SQLite, live catch-up, then
//!   `projections::rebuild` of all five read models, compared row by row with the live ones.
//! - `ingest`: the real service in-process, signed VAPI deliveries over HTTP at 1, 16 and 64
//!   concurrent calls; throughput, p50/p99 (tool calls separately) and peak RSS; 16 calls with
//!   16 of each call's deliveries in flight at once (none may be refused).
//! - `processes`: post-call processing with stub providers: call end → last notification and
//!   urgent message → SMS at 16 calls/s (p50/p99), process steps/s on a backlog against raw
//!   INSERT/s.
//! - `webhooks`: outbound webhook deliveries/s (backlog, 16 endpoints) against raw INSERT/s,
//!   and event → receipt p50/p99 at 100 deliveries/s with ingest running.
//! - `billing`: usage metering with a Stripe stub: calls metered and reported/s on a backlog
//!   against raw INSERT/s, and call end → meter event at Stripe p50/p99 at 8 calls/s.
//! - `live`: 1,000 SSE clients of the live feed across 100 organizations while 16 calls are
//!   ingested: event → client p50/p99, ingest with the clients against ingest without them.
//! - `query`: p50/p99 of the calls API (list, cursor page, filters, detail, stats, search) over
//!   HTTP with `--calls N` calls (default 1,000,000; 100,000 with `--quick`): a small part
//!   through the live service, the rest decided by the Call aggregate, written to the log with
//!   COPY and projected by `rebuild_all` (timed).
//!
//! The table goes to stdout; the same figures go to `target/bench-report.json`.

#[path = "bench/append.rs"]
mod append;
#[path = "bench/billing.rs"]
mod billing;
#[path = "bench/command.rs"]
mod command;
#[path = "bench/floor.rs"]
mod floor;
#[path = "bench/http1.rs"]
mod http1;
#[path = "bench/ingest.rs"]
mod ingest;
#[path = "bench/live.rs"]
mod live;
#[path = "bench/local.rs"]
mod local;
#[path = "bench/overlap.rs"]
mod overlap;
#[path = "bench/processes.rs"]
mod processes;
#[path = "bench/query.rs"]
mod query;
#[path = "bench/query_load.rs"]
mod query_load;
#[path = "bench/quiet.rs"]
mod quiet;
#[path = "bench/rebuild.rs"]
mod rebuild;
#[path = "bench/recordings.rs"]
mod recordings;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/webhooks.rs"]
mod webhooks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sqlx::{Connection, Executor, Row as _};
use tokio::sync::Mutex;

use report::Section;

const SECTIONS: [&str; 10] = [
    "append",
    "command",
    "rebuild",
    "ingest",
    "quiet",
    "processes",
    "webhooks",
    "billing",
    "live",
    "query",
];

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "CallFlex benchmark report (no timed assertions)"
)]
struct Args {
    /// Shorter runs (2 s per throughput run, fewer streams and calls).
    #[arg(long)]
    quick: bool,
    /// Admin URL of the PostgreSQL server; fresh databases are created next to it.
    /// Default: TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Run only these sections (comma separated): append, command, rebuild, ingest, processes, webhooks, billing, live, query;
    /// and `quiet` (only the ingest section's processes-off row; never part of a full run).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds per throughput run (default 5, or 2 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Seconds of the ingest section's paced run, which carries the tool-call p99 target
    /// (default 60, or 20 with --quick): at one delivery per call per 500 ms, 60 s gives about
    /// 750 tool-call samples, so the p99 is not decided by the 3rd-worst of 250.
    #[arg(long)]
    paced_seconds: Option<f64>,
    /// Where to write the JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Calls in the `query` section's read model (default 1,000,000 = 100 orgs x 10,000, or
    /// 100,000 = 10 orgs x 10,000 with --quick).
    #[arg(long)]
    calls: Option<usize>,
    /// Keep the benchmark databases instead of dropping them.
    #[arg(long)]
    keep_databases: bool,
}

/// Raw single-row INSERT figures at one concurrency, shared by every section that compares
/// against them.
#[derive(Debug, Clone)]
pub struct RawBaseline {
    pub writers: usize,
    pub rate: f64,
    pub latency: report::Samples,
}

/// What every section shares: settings, created databases, the raw-INSERT baselines.
pub struct Ctx {
    pub quick: bool,
    pub run_for: Duration,
    pub paced_for: Duration,
    admin_url: String,
    databases: Mutex<Vec<String>>,
    sqlite_files: Mutex<Vec<PathBuf>>,
    raw: Mutex<BTreeMap<usize, RawBaseline>>,
    raw_db: Mutex<Option<String>>,
}

impl Ctx {
    /// A new, empty PostgreSQL database (dropped at the end of the run).
    pub async fn fresh_postgres(&self, label: &str) -> anyhow::Result<String> {
        let name = format!("callflex_bench_{label}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::postgres::PgConnection::connect(&self.admin_url).await?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        conn.close().await?;
        self.databases.lock().await.push(name.clone());
        let base = self
            .admin_url
            .split('?')
            .next()
            .unwrap_or(&self.admin_url)
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or_else(|| self.admin_url.clone());
        Ok(format!("{base}/{name}"))
    }

    /// A SQLite file URL (removed at the end of the run).
    pub async fn fresh_sqlite(&self) -> String {
        let url = eventlog::testing::fresh_sqlite_url();
        if let Some(path) = url.strip_prefix("sqlite://") {
            self.sqlite_files.lock().await.push(PathBuf::from(path));
        }
        url
    }

    /// The raw single-row INSERT baseline at `writers`, measured once per run and reused.
    pub async fn raw_baseline(&self, writers: usize) -> anyhow::Result<RawBaseline> {
        if let Some(b) = self.raw.lock().await.get(&writers) {
            return Ok(b.clone());
        }
        self.raw_baseline_now(writers).await
    }

    /// Measures the raw baseline at `writers` again, right now (for a section that wants it
    /// next to its own measurement, as the disk's speed drifts on shared machines).
    pub async fn raw_baseline_now(&self, writers: usize) -> anyhow::Result<RawBaseline> {
        let url = {
            let mut db = self.raw_db.lock().await;
            match db.as_ref() {
                Some(url) => url.clone(),
                None => {
                    let url = self.fresh_postgres("raw").await?;
                    *db = Some(url.clone());
                    url
                }
            }
        };
        let baseline = append::raw_inserts(&url, writers, self.run_for).await?;
        self.raw.lock().await.insert(writers, baseline.clone());
        Ok(baseline)
    }

    /// The database the raw baselines write to, once one was measured.
    pub async fn raw_url(&self) -> Option<String> {
        self.raw_db.lock().await.clone()
    }

    /// The raw baseline at `writers` if a section already measured it.
    pub async fn raw_baseline_if_known(&self, writers: usize) -> Option<RawBaseline> {
        self.raw.lock().await.get(&writers).cloned()
    }

    async fn cleanup(&self, keep: bool) -> Vec<String> {
        let mut notes = Vec::new();
        let dbs = std::mem::take(&mut *self.databases.lock().await);
        if keep {
            notes.push(format!("kept databases: {}", dbs.join(", ")));
        } else if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&self.admin_url).await {
            for db in &dbs {
                let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                if let Err(err) = conn.execute(sql.as_str()).await {
                    notes.push(format!("could not drop {db}: {err}"));
                }
            }
            let _ = conn.close().await;
        }
        for path in std::mem::take(&mut *self.sqlite_files.lock().await) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        notes
    }
}

/// The machine the figures come from.
async fn machine(admin_url: &str) -> serde_json::Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let postgres = match sqlx::postgres::PgConnection::connect(admin_url).await {
        Ok(mut conn) => {
            let version = sqlx::query("SHOW server_version")
                .fetch_one(&mut conn)
                .await
                .and_then(|r| r.try_get::<String, _>(0))
                .unwrap_or_else(|e| format!("unknown ({e})"));
            let settings = sqlx::query(
                "SELECT name || '=' || setting FROM pg_settings WHERE name IN \
                 ('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections') \
                 ORDER BY name",
            )
            .fetch_all(&mut conn)
            .await
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.try_get::<String, _>(0).ok())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
            let _ = conn.close().await;
            format!("{version} ({settings})")
        }
        Err(err) => format!("unreachable: {err}"),
    };
    json!({
        "cores": cores,
        "kernel": kernel,
        "cpu": cpu,
        "postgres": postgres,
        "sqlite": sqlx_sqlite_version().await,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

async fn sqlx_sqlite_version() -> String {
    match sqlx::sqlite::SqliteConnection::connect("sqlite::memory:").await {
        Ok(mut conn) => sqlx::query("SELECT sqlite_version()")
            .fetch_one(&mut conn)
            .await
            .and_then(|r| r.try_get::<String, _>(0))
            .unwrap_or_else(|_| "unknown".into()),
        Err(_) => "unknown".into(),
    }
}

fn default_report_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("bench-report.json")
}

/// mimalloc: glibc's malloc was about a tenth of the service's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    for name in &args.only {
        anyhow::ensure!(
            SECTIONS.contains(&name.as_str()),
            "unknown section {name:?}; expected one of {SECTIONS:?}"
        );
    }
    let selected = |name: &str| {
        (args.only.is_empty() && name != "quiet") || args.only.iter().any(|n| n == name)
    };
    let run_for = Duration::from_secs_f64(
        args.seconds
            .unwrap_or(if args.quick { 2.0 } else { 5.0 })
            .max(0.2),
    );
    let admin_url = args
        .postgres_url
        .clone()
        .unwrap_or_else(eventlog::testing::postgres_admin_url);
    let ctx = Ctx {
        quick: args.quick,
        run_for,
        paced_for: Duration::from_secs_f64(
            args.paced_seconds
                .unwrap_or(if args.quick { 20.0 } else { 60.0 })
                .max(1.0),
        ),
        admin_url: admin_url.clone(),
        databases: Mutex::new(Vec::new()),
        sqlite_files: Mutex::new(Vec::new()),
        raw: Mutex::new(BTreeMap::new()),
        raw_db: Mutex::new(None),
    };
    let started = Instant::now();
    let machine = machine(&admin_url).await;
    println!("CallFlex benchmark — a report, no timed assertions");
    println!(
        "machine: {} cores ({}), kernel {}, PostgreSQL {}, SQLite {}, {} build",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or_default(),
        machine["kernel"].as_str().unwrap_or_default(),
        machine["postgres"].as_str().unwrap_or_default(),
        machine["sqlite"].as_str().unwrap_or_default(),
        machine["profile"].as_str().unwrap_or_default(),
    );
    println!(
        "mode: {}, {:.1} s per throughput run; the load generator, the service and PostgreSQL \
         share this machine",
        if args.quick { "quick" } else { "full" },
        run_for.as_secs_f64()
    );

    let mut sections: Vec<Section> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for name in SECTIONS {
        if !selected(name) {
            continue;
        }
        eprintln!("running section {name} ...");
        let t = Instant::now();
        let result = match name {
            "append" => append::run(&ctx).await,
            "command" => command::run(&ctx).await,
            "rebuild" => rebuild::run(&ctx).await,
            "query" => query::run(&ctx, args.calls).await,
            "processes" => processes::run(&ctx).await,
            "webhooks" => webhooks::run(&ctx).await,
            "billing" => billing::run(&ctx).await,
            "live" => live::run(&ctx).await,
            "quiet" => quiet::run_quiet(&ctx).await,
            _ => ingest::run(&ctx).await,
        };
        match result {
            Ok(mut section) => {
                section.elapsed = t.elapsed();
                print!("{}", section.render());
                sections.push(section);
            }
            Err(err) => {
                let message = format!("section {name} failed: {err:#}");
                println!("\n== {name} — FAILED ==\n  {message}");
                failures.push(message);
            }
        }
    }

    let cleanup_notes = ctx.cleanup(args.keep_databases).await;
    for note in &cleanup_notes {
        println!("note: {note}");
    }
    let report = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "elapsed_s": started.elapsed().as_secs_f64(),
        "mode": if args.quick { "quick" } else { "full" },
        "seconds_per_run": run_for.as_secs_f64(),
        "machine": machine,
        "sections": sections.iter().map(Section::to_json).collect::<Vec<_>>(),
        "failures": failures,
        "notes": cleanup_notes,
    });
    let path = args.json.clone().unwrap_or_else(default_report_path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!(
        "\nJSON report: {} (total {:.1} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        anyhow::bail!("{} section(s) failed", failures.len());
    }
    Ok(())
}
