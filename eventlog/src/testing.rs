//! Fresh, isolated databases for tests: one new PostgreSQL database or SQLite file per call.
//! PostgreSQL tests never skip: if the server is unreachable they fail loudly.

use sqlx::{Connection, Executor};

/// Admin URL of the PostgreSQL server used by tests (`TEST_POSTGRES_URL`, default local trust).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Creates an empty database and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let admin = postgres_admin_url();
    let name = format!("callflex_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for tests ({admin}): {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A SQLite file in the temp directory.
pub fn fresh_sqlite_url() -> String {
    let path = std::env::temp_dir().join(format!("callflex-test-{}.db", uuid::Uuid::new_v4()));
    format!("sqlite://{}", path.display())
}

/// A fresh URL for the named backend ("postgres" or "sqlite").
pub async fn fresh_url(backend: &str) -> String {
    match backend {
        "postgres" => fresh_postgres_url().await,
        _ => fresh_sqlite_url(),
    }
}
