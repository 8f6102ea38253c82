//! Set-based SQL for projectors that fold a batch in memory: fetch the rows a batch touches
//! in one query, write them back in one multi-row statement. A rebuild replays millions of
//! events; one statement per row per batch instead of one per event is what makes it fast.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Transaction};

use crate::projector::ProjectionError;
use crate::sql::bind_f64;

/// Bind parameters per statement on PostgreSQL (its limit is 65,535).
const MAX_PARAMETERS_POSTGRES: usize = 30_000;
/// Bind parameters per statement on SQLite. Its parser looks every `$N` up among the names seen
/// so far, so preparing a statement costs O(parameters²): 30,000 took 8 s, 1,000 takes 16 ms.
const MAX_PARAMETERS_SQLITE: usize = 900;

/// How many parameters one statement on `tx`'s backend should carry.
pub fn max_parameters(tx: &Transaction<'static, Any>) -> usize {
    max_parameters_on(tx)
}

/// How many parameters one statement on `conn`'s backend should carry.
pub fn max_parameters_on(conn: &AnyConnection) -> usize {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        MAX_PARAMETERS_SQLITE
    } else {
        MAX_PARAMETERS_POSTGRES
    }
}

/// One value of a row written by a batched statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(Some(value))
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(Some(value.to_string()))
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        Cell::Text(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Cell::Int(Some(value))
    }
}

impl From<Option<i64>> for Cell {
    fn from(value: Option<i64>) -> Self {
        Cell::Int(value)
    }
}

impl From<f64> for Cell {
    fn from(value: f64) -> Self {
        Cell::Real(Some(value))
    }
}

impl From<Option<f64>> for Cell {
    fn from(value: Option<f64>) -> Self {
        Cell::Real(value)
    }
}

fn bind<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    cell: Cell,
) -> Query<'q, Any, AnyArguments<'q>> {
    match cell {
        Cell::Text(v) => query.bind(v),
        Cell::Int(v) => query.bind(v),
        Cell::Real(v) => bind_f64(query, v),
    }
}

/// `col = excluded.col` for every column not in `keys`: an upsert that replaces the row.
pub fn replace_all(columns: &[&str], keys: &[&str]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "ON CONFLICT ({}) DO UPDATE SET {}",
        keys.join(", "),
        sets.join(", ")
    )
}

/// Inserts `rows` (each with one cell per column, in order) with as few statements as the
/// parameter limit allows; `tail` is appended to each (`ON CONFLICT ...`).
pub async fn insert_rows(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Cell>>,
    tail: &str,
) -> Result<(), ProjectionError> {
    insert_rows_on(tx, table, columns, rows, tail).await
}

/// How many rows of `columns` cells one statement on `conn`'s backend carries: a caller whose
/// rows fit in one may write them without a transaction of its own.
pub fn rows_per_statement(conn: &AnyConnection, columns: usize) -> usize {
    (max_parameters_on(conn) / columns.max(1)).max(1)
}

/// [`insert_rows`] on any connection: in autocommit, each statement commits on its own.
pub async fn insert_rows_on(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Cell>>,
    tail: &str,
) -> Result<(), ProjectionError> {
    let per_statement = rows_per_statement(conn, columns.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Cell>> = rows.by_ref().take(per_statement).collect();
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for (r, row) in chunk.iter().enumerate() {
            debug_assert_eq!(row.len(), columns.len());
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..row.len() {
                n += 1;
                sql.push_str(&format!("{}${n}", if c == 0 { "" } else { ", " }));
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        let mut query = sqlx::query(&sql);
        for cell in chunk.into_iter().flatten() {
            query = bind(query, cell);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs `select` (ending in `... IN `) once per chunk of `keys`, returning every row.
pub async fn fetch_in(
    tx: &mut Transaction<'static, Any>,
    select: &str,
    keys: &[String],
) -> Result<Vec<AnyRow>, ProjectionError> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(max_parameters(tx)) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("{select}({})", placeholders.join(", "));
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.clone());
        }
        rows.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

/// Runs `select` (ending in `WHERE (a, b) IN `) once per chunk of `keys` (pairs), returning
/// every row. Row values against a `VALUES` list work on both backends.
pub async fn fetch_in_pairs(
    tx: &mut Transaction<'static, Any>,
    select: &str,
    keys: &[(String, String)],
) -> Result<Vec<AnyRow>, ProjectionError> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(max_parameters(tx) / 2) {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!("{select}(VALUES {})", tuples.join(", "));
        let mut query = sqlx::query(&sql);
        for (a, b) in chunk {
            query = query.bind(a.clone()).bind(b.clone());
        }
        rows.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::replace_all;

    #[test]
    fn replace_all_updates_every_non_key_column() {
        assert_eq!(
            replace_all(&["id", "a", "b"], &["id"]),
            "ON CONFLICT (id) DO UPDATE SET a = excluded.a, b = excluded.b"
        );
    }
}
