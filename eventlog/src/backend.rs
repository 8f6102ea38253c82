//! Backend selection: one setting (`DATABASE_URL`) picks PostgreSQL or the embedded SQLite file.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    /// Opens a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// transaction that reads before it writes can never fail to upgrade its lock.
    pub async fn begin_write(
        self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self {
            Backend::Postgres => pool.begin().await,
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    /// A write transaction whose commit does not wait for the WAL flush on PostgreSQL
    /// (`synchronous_commit = off`, set in the same round trip). For data the log stands
    /// behind: read models and their checkpoints (a crash can lose the last few milliseconds
    /// of such commits, each losing its changes and its checkpoint together, so the projector
    /// applies those events again). The log's own appends and the delivery ledger keep waiting.
    pub async fn begin_relaxed(
        self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self {
            Backend::Postgres => {
                pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                    .await
            }
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }
}

/// Hides the password of a connection URL for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The pools of one database: `pool` for everything, and `writes` for write transactions.
///
/// SQLite lets one writer in at a time; other writers spin in its busy handler, which sleeps
/// in steps of up to 100 ms (tool-call answers waited up to ~200 ms behind projector commits
/// at 16 concurrent calls). So on SQLite `writes` is a pool of ONE connection: writers queue
/// for it in order, without sleeping, and nobody is left in the busy handler. On PostgreSQL
/// it is the same pool.
#[derive(Clone)]
pub struct Pools {
    pub pool: AnyPool,
    pub writes: AnyPool,
    /// For single relaxed writes (see [`crate::EventStore::relaxed_pool`]).
    pub relaxed: AnyPool,
}

/// Connections of the relaxed pool: its writes are single short statements.
const RELAXED_CONNECTIONS: u32 = 2;

/// Connects the pools. For SQLite the file's directory is created, WAL is enabled and a busy
/// timeout lets writers outside the write pool queue instead of failing.
pub async fn connect(url: &str, max_connections: u32) -> Result<(Pools, Backend), StoreError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::from_url(url)?;
    let mut url = url.to_string();
    if backend == Backend::Sqlite {
        if let Some(path) = sqlite_path(&url) {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Database(sqlx::Error::Configuration(Box::new(e)))
                    })?;
                }
            }
        }
        if !url.contains("mode=") && !url.contains(":memory:") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
    }
    let options = AnyConnectOptions::from_str(&url)?;
    let pool = open_pool(&options, backend, max_connections).await?;
    // An in-memory SQLite database exists once per connection: it cannot have a second pool.
    let writes = if backend == Backend::Sqlite && !url.contains(":memory:") {
        open_pool(&options, backend, 1).await?
    } else {
        pool.clone()
    };
    let relaxed = match backend {
        Backend::Postgres => open_pool_with(&options, backend, RELAXED_CONNECTIONS, true).await?,
        Backend::Sqlite => writes.clone(),
    };
    Ok((
        Pools {
            pool,
            writes,
            relaxed,
        },
        backend,
    ))
}

/// How long a pooled connection may sit idle before it is pinged on its way out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

async fn open_pool(
    options: &AnyConnectOptions,
    backend: Backend,
    max_connections: u32,
) -> Result<AnyPool, StoreError> {
    open_pool_with(options, backend, max_connections, false).await
}

/// A pool; `relaxed` connections (PostgreSQL) commit without waiting for the WAL flush.
async fn open_pool_with(
    options: &AnyConnectOptions,
    backend: Backend,
    max_connections: u32,
    relaxed: bool,
) -> Result<AnyPool, StoreError> {
    Ok(AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        // sqlx pings every connection before handing it out: a round trip on the path of
        // every statement (ingest at 16 calls ran ~30% faster without it). Only a connection
        // that sat idle long enough to have died unnoticed (a server restart) is pinged.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                         PRAGMA busy_timeout=30000; PRAGMA foreign_keys=ON;",
                    )
                    .await?;
                } else {
                    // A forgotten open transaction would stall every log reader (they wait for
                    // the oldest running transaction); cap how long one may sit idle.
                    conn.execute("SET idle_in_transaction_session_timeout = '60s'")
                        .await?;
                    if relaxed {
                        conn.execute("SET synchronous_commit = off").await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Applies the migrations of the backend (they own all schema, including the log's tables).
pub async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    match backend {
        Backend::Postgres => sqlx::migrate!("../migrations/postgres").run(pool).await?,
        Backend::Sqlite => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
    }
    Ok(())
}
