//! A side row: one row of another table written in the SAME commit as the next append made
//! inside [`carrying`], so it is exactly as durable as the events and costs no commit of its
//! own. The webhook ingest carries the raw delivery this way: a 2xx promises the body is
//! durable, and a second durable commit per delivery would halve the ingest's throughput.
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

/// A row for `table`, inserted with `INSERT INTO table (columns) VALUES (…) on_conflict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRow {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub values: Vec<SideValue>,
    /// E.g. `ON CONFLICT (provider, delivery_key) DO NOTHING` (valid on both backends).
    pub on_conflict: &'static str,
}

impl SideRow {
    /// The INSERT for `rows` rows of this row's shape, parameters numbered from `first`.
    pub(crate) fn insert_sql(&self, rows: usize, first: usize) -> String {
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
            "INSERT INTO {} ({}) VALUES {} {}",
            self.table,
            self.columns.join(", "),
            tuples.join(", "),
            self.on_conflict
        )
    }

    /// The INSERT of many rows of this row's shape from one JSON array (parameter `param`),
    /// so the statement's text is the same whatever the number of rows (prepared once).
    pub(crate) fn insert_json_sql(&self, param: usize) -> String {
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
        let columns = self.columns.join(", ");
        format!(
            "INSERT INTO {} ({columns}) SELECT {columns} FROM json_to_recordset(${param}::json) \
             AS r({}) {}",
            self.table,
            types.join(", "),
            self.on_conflict
        )
    }

    /// This row as a JSON object for [`insert_json_sql`](Self::insert_json_sql).
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
            && self.on_conflict == other.on_conflict
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
            on_conflict: "ON CONFLICT (a) DO NOTHING",
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
            row().insert_sql(2, 3),
            "INSERT INTO t (a, b) VALUES ($3, $4), ($5, $6) ON CONFLICT (a) DO NOTHING"
        );
    }
}
