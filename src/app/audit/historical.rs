//! Read models as they were: a call's events up to a time or a log position, applied by the
//! calls projector itself to an empty scratch store, so the dashboard's call detail can be
//! answered "as of" in exactly the shape it has now. The scratch store is a SQLite file in
//! the temporary directory, deleted when the answer is read.

use std::path::PathBuf;

use eventlog::{EventStore, StoredEvent};
use projections::{DomainEvent, Projector, Tables};
use sqlx::any::AnyRow;

use crate::app::AppError;
use crate::state::AppState;

/// Which events count: recorded up to `until_ms` and/or at positions up to `position`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Until {
    pub until_ms: Option<i64>,
    pub position: Option<i64>,
}

impl Until {
    pub fn holds(&self, event: &StoredEvent) -> bool {
        self.until_ms.is_none_or(|t| event.recorded_at <= t)
            && self.position.is_none_or(|p| event.position <= p)
    }
}

/// A scratch SQLite store, deleted on drop.
struct Scratch {
    store: EventStore,
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The stream's events that `until` keeps, decoded (the caller has checked the tenant).
pub async fn events_until(
    state: &AppState,
    kind: &str,
    id: &str,
    until: Until,
) -> Result<Vec<(StoredEvent, DomainEvent)>, AppError> {
    let events = state.store.read_stream(kind, id, 0).await?;
    events
        .into_iter()
        .take_while(|e| until.holds(e))
        .map(|e| {
            let decoded = DomainEvent::decode_payload(&e, &e.payload.to_string())
                .map_err(|err| AppError::internal(format!("event {}: {err}", e.position)))?;
            Ok((e, decoded))
        })
        .collect()
}

/// `projector`'s read model of `events` alone; `read` gets the row(s) from it.
pub async fn project<T>(
    projector: &dyn Projector,
    events: &[(StoredEvent, DomainEvent)],
    read: impl AsyncFnOnce(&EventStore) -> Result<T, AppError>,
) -> Result<T, AppError> {
    let path = std::env::temp_dir().join(format!("callflex-as-of-{}.db", uuid::Uuid::new_v4()));
    let store = EventStore::open(&format!("sqlite://{}", path.display()), 1).await?;
    let scratch = Scratch { store, path };
    let mut tx = scratch
        .store
        .backend()
        .begin_write(scratch.store.write_pool())
        .await
        .map_err(AppError::from)?;
    projector
        .apply_batch(&mut tx, Tables::LIVE, events)
        .await
        .map_err(AppError::internal)?;
    tx.commit().await.map_err(AppError::from)?;
    let answer = read(&scratch.store).await;
    scratch.store.pool().close().await;
    scratch.store.write_pool().close().await;
    answer
}

/// The call's row in the `calls` read model as of `until` (`columns` as the API selects
/// them), or `None` when the call had no event yet then.
pub async fn call_row(
    state: &AppState,
    call_id: &str,
    columns: &str,
    until: Until,
) -> Result<Option<(AnyRow, i64)>, AppError> {
    let events = events_until(state, "call", call_id, until).await?;
    let Some(last) = events.last().map(|(e, _)| e.position) else {
        return Ok(None);
    };
    let sql = format!("SELECT {columns} FROM calls WHERE id = $1");
    let row = project(
        &projections::calls::CallsProjector,
        &events,
        async |store| {
            Ok(sqlx::query(&sql)
                .bind(call_id.to_string())
                .fetch_optional(store.pool())
                .await?)
        },
    )
    .await?;
    Ok(row.map(|r| (r, last)))
}
