//! Fresh, isolated databases for tests: one new PostgreSQL database or SQLite file per call.
//! PostgreSQL tests never skip: if the server is unreachable they fail loudly.

use sqlx::{Connection, Executor};

/// Admin URL of the PostgreSQL server used by tests (`TEST_POSTGRES_URL`, default local trust).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Test databases older than this are dropped by the next test run (names carry their birth).
const KEEP_TEST_DATABASES_SECS: u64 = 3_600;

static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Drops test databases of earlier runs (older than an hour, so never one a concurrent test
/// process is using); best effort, once per process.
async fn drop_old_test_databases(conn: &mut sqlx::postgres::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'callflex_test_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    let cutoff = unix_now().saturating_sub(KEEP_TEST_DATABASES_SECS);
    for name in names {
        let born = name
            .strip_prefix("callflex_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        // Names without a birth time come from older builds: also stale.
        if born.is_none_or(|born| born < cutoff) {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                .await;
        }
    }
}

/// Creates an empty database and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let admin = postgres_admin_url();
    let name = format!(
        "callflex_test_{}_{}",
        unix_now(),
        uuid::Uuid::new_v4().simple()
    );
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for tests ({admin}): {e}"));
    CLEANED
        .get_or_init(|| drop_old_test_databases(&mut conn))
        .await;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A SQLite file in the temp directory. The first call of a process also removes test files
/// of earlier runs (older than an hour).
pub fn fresh_sqlite_url() -> String {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(remove_old_sqlite_files);
    let path = std::env::temp_dir().join(format!("callflex-test-{}.db", uuid::Uuid::new_v4()));
    format!("sqlite://{}", path.display())
}

fn remove_old_sqlite_files() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let keep = std::time::Duration::from_secs(KEEP_TEST_DATABASES_SECS);
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep);
        if old
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with("callflex-test-")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A fresh URL for the named backend ("postgres" or "sqlite").
pub async fn fresh_url(backend: &str) -> String {
    match backend {
        "postgres" => fresh_postgres_url().await,
        _ => fresh_sqlite_url(),
    }
}
