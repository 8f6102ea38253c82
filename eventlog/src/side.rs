//! A side row: one row of another table written in the SAME commit as the next append made
//! inside [`carrying`], so it is exactly as durable as the events and costs no commit of its
//! own. The webhook ingest carries the raw delivery this way (an insert): a 2xx promises the
//! body is durable, and a second durable commit per delivery would halve the ingest's
//! throughput. A process instance carries its timer this way (an update of its row).
//!
//! The row is offered to every append in the scope until one commits with it (an append that
//! fails, conflicts or finds its idempotency key used writes nothing, so the row is offered
//! again to the next). [`carrying`] reports whether it was written; if not (the work appended
//! nothing), the caller writes it itself.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// One column value of a side row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideValue {
    Text(Option<String>),
    Int(Option<i64>),
}

/// How a side row is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideWrite {
    /// `INSERT INTO table (columns) VALUES (…) on_conflict`, e.g. `ON CONFLICT (provider,
    /// delivery_key) DO NOTHING` (valid on both backends).
    Insert { on_conflict: &'static str },
    /// `UPDATE table SET <the other columns> WHERE <the key columns> = …`: changes an existing
    /// row (none found: nothing written, the append commits all the same). Of two rows with
    /// one key in one shared statement, one is written.
    Update { key: &'static [&'static str] },
}

/// A row of `table`: its columns and their values, and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRow {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub values: Vec<SideValue>,
    pub write: SideWrite,
}

impl SideRow {
    /// The statement writing `rows` rows of this row's shape (an update writes one),
    /// parameters numbered from `first`.
    pub(crate) fn sql(&self, rows: usize, first: usize) -> String {
        let on_conflict = match &self.write {
            SideWrite::Insert { on_conflict } => on_conflict,
            SideWrite::Update { key } => {
                let param = |column: &str| {
                    let index = self.columns.iter().position(|c| *c == column);
                    format!("${}", first + index.unwrap_or_default())
                };
                let set: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !key.contains(c))
                    .map(|c| format!("{c} = {}", param(c)))
                    .collect();
                let filter: Vec<String> =
                    key.iter().map(|c| format!("{c} = {}", param(c))).collect();
                return format!(
                    "UPDATE {} SET {} WHERE {}",
                    self.table,
                    set.join(", "),
                    filter.join(" AND ")
                );
            }
        };
        let width = self.columns.len();
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let params: Vec<String> = (0..width)
                    .map(|c| format!("${}", first + r * width + c))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES {} {on_conflict}",
            self.table,
            self.columns.join(", "),
            tuples.join(", "),
        )
    }

    /// The statement writing rows of this row's shape from JSON parameter `param`: an INSERT
    /// reads a JSON array of any length (the text is the same whatever the number of rows,
    /// prepared once); an UPDATE reads one JSON object, one statement per row (see
    /// [`SideWrite::Update`]'s planning note).
    pub(crate) fn json_sql(&self, param: usize) -> String {
        let types: Vec<String> = self
            .columns
            .iter()
            .zip(&self.values)
            .map(|(column, value)| {
                let ty = match value {
                    SideValue::Text(_) => "text",
                    SideValue::Int(_) => "bigint",
                };
                format!("{column} {ty}")
            })
            .collect();
        let (table, types) = (self.table, types.join(", "));
        match &self.write {
            SideWrite::Insert { on_conflict } => {
                let columns = self.columns.join(", ");
                format!(
                    "INSERT INTO {table} ({columns}) SELECT {columns} \
                     FROM json_to_recordset(${param}::json) AS r({types}) {on_conflict}"
                )
            }
            SideWrite::Update { key } => {
                let set: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !key.contains(c))
                    .map(|c| format!("{c} = r.{c}"))
                    .collect();
                let filter: Vec<String> =
                    key.iter().map(|c| format!("{table}.{c} = r.{c}")).collect();
                // One row (`json_to_record`), never a recordset: PostgreSQL estimates a
                // recordset at 100 rows, and a plan cached while the table was small then
                // joins them by scanning the whole table (measured: 935 pages per process
                // outcome commit once `process_work` had grown). One row planned against a
                // unique key is an index lookup at any table size.
                format!(
                    "UPDATE {table} SET {} FROM json_to_record(${param}::json) AS r({types}) \
                     WHERE {}",
                    set.join(", "),
                    filter.join(" AND ")
                )
            }
        }
    }

    /// Whether [`json_sql`](Self::json_sql) reads one row (an object) rather than many.
    pub(crate) fn one_per_statement(&self) -> bool {
        matches!(self.write, SideWrite::Update { .. })
    }

    /// This row as a JSON object for [`json_sql`](Self::json_sql).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        self.columns
            .iter()
            .zip(&self.values)
            .map(|(column, value)| {
                let value = match value {
                    SideValue::Text(text) => serde_json::json!(text),
                    SideValue::Int(int) => serde_json::json!(int),
                };
                (column.to_string(), value)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Same table, columns, column types and conflict rule: rows that can share one INSERT.
    pub(crate) fn same_shape(&self, other: &SideRow) -> bool {
        self.table == other.table
            && self.columns == other.columns
            && self.write == other.write
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|(a, b)| std::mem::discriminant(a) == std::mem::discriminant(b))
    }

    pub(crate) fn bind<'q>(
        &self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for value in &self.values {
            query = match value {
                SideValue::Text(text) => query.bind(text.clone()),
                SideValue::Int(int) => query.bind(*int),
            };
        }
        query
    }
}

struct Slot {
    row: Arc<SideRow>,
    written: bool,
}

tokio::task_local! {
    static SLOT: RefCell<Slot>;
}

/// Runs `work` offering `row` to its appends; answers its output and whether an append
/// committed the row.
pub async fn carrying<F: Future>(row: SideRow, work: F) -> (F::Output, bool) {
    let slot = RefCell::new(Slot {
        row: Arc::new(row),
        written: false,
    });
    SLOT.scope(slot, async {
        let output = work.await;
        let written = SLOT.try_with(|s| s.borrow().written).unwrap_or(false);
        (output, written)
    })
    .await
}

/// The row an append made now should carry, if any.
pub(crate) fn offered() -> Option<Arc<SideRow>> {
    SLOT.try_with(|s| {
        let slot = s.borrow();
        (!slot.written).then(|| slot.row.clone())
    })
    .ok()
    .flatten()
}

/// An append carrying the row committed.
pub(crate) fn written() {
    let _ = SLOT.try_with(|s| s.borrow_mut().written = true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SideRow {
        SideRow {
            table: "t",
            columns: &["a", "b"],
            values: vec![SideValue::Text(Some("x".into())), SideValue::Int(None)],
            write: SideWrite::Insert {
                on_conflict: "ON CONFLICT (a) DO NOTHING",
            },
        }
    }

    fn update() -> SideRow {
        SideRow {
            write: SideWrite::Update { key: &["a"] },
            ..row()
        }
    }

    #[tokio::test]
    async fn the_row_is_offered_until_an_append_writes_it() {
        assert!(offered().is_none(), "nothing offered outside a scope");
        let ((), written) = carrying(row(), async {
            assert_eq!(offered().as_deref(), Some(&row()));
            assert_eq!(
                offered().as_deref(),
                Some(&row()),
                "still offered: not written"
            );
            written();
            assert!(offered().is_none(), "written once, offered no more");
        })
        .await;
        assert!(written);
        let ((), written) = carrying(row(), async {}).await;
        assert!(!written, "no append: the caller writes it");
    }

    #[test]
    fn rows_of_one_shape_share_an_insert() {
        assert_eq!(
            row().sql(2, 3),
            "INSERT INTO t (a, b) VALUES ($3, $4), ($5, $6) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            row().json_sql(3),
            "INSERT INTO t (a, b) SELECT a, b FROM json_to_recordset($3::json) AS r(a text, \
             b bigint) ON CONFLICT (a) DO NOTHING"
        );
    }

    /// Prepares `sql` as `name`, runs it eight times (PostgreSQL then caches a generic plan)
    /// while table `t` is nearly empty, grows `t` to 5,000 rows and answers the plan the
    /// prepared statement now runs with.
    async fn plan_after_growth(
        conn: &mut sqlx::postgres::PgConnection,
        name: &str,
        sql: &str,
        arg: &str,
    ) -> String {
        use sqlx::Executor;
        conn.execute(format!("PREPARE {name}(json) AS {sql}").as_str())
            .await
            .unwrap();
        for _ in 0..8 {
            conn.execute(format!("EXECUTE {name}('{arg}')").as_str())
                .await
                .unwrap();
        }
        conn.execute(
            "INSERT INTO t SELECT 'g' || i, i, repeat('x', 500) \
             FROM generate_series(1, 5000) i ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}('{arg}')"
        ))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(line,)| line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The plan PostgreSQL caches for a prepared statement (after five runs) is made for the
    /// table as it was then. A side update planned while its table was nearly empty must
    /// still be an index lookup once the table has grown (it was a scan of the whole table:
    /// 935 pages per process outcome commit in the ingest bench).
    #[tokio::test]
    async fn a_side_update_planned_on_an_empty_table_stays_an_index_lookup_as_it_grows() {
        use sqlx::{Connection, Executor};
        let url = crate::testing::fresh_postgres_url().await;
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        conn.execute("CREATE TABLE t (a TEXT PRIMARY KEY, b BIGINT, pad TEXT)")
            .await
            .unwrap();
        let update = update().json_sql(1);
        let recordset = update.replace("json_to_record(", "json_to_recordset(");
        let one = r#"{"a": "k1", "b": 7}"#;
        let plan = plan_after_growth(&mut conn, "one_row", &update, one).await;
        assert!(
            plan.contains("Index Scan") && !plan.contains("Seq Scan"),
            "{plan}"
        );
        // The recordset form (kept for inserts) falls into the trap this test is about.
        let many = r#"[{"a": "k1", "b": 7}]"#;
        conn.execute("TRUNCATE t").await.unwrap();
        let plan = plan_after_growth(&mut conn, "recordset", &recordset, many).await;
        assert!(plan.contains("Seq Scan"), "{plan}");
    }

    #[test]
    fn an_update_sets_the_other_columns_where_its_key_matches() {
        assert_eq!(update().sql(1, 4), "UPDATE t SET b = $5 WHERE a = $4");
        assert_eq!(
            update().json_sql(3),
            "UPDATE t SET b = r.b FROM json_to_record($3::json) AS r(a text, b bigint) \
             WHERE t.a = r.a"
        );
        assert!(
            !update().same_shape(&row()),
            "an update never shares an insert"
        );
    }
}
