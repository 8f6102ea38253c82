//! An analyst's replay (`callflex replay --from … --to … NAME`): the events of a slice of the
//! log applied to empty copies of a projector's tables (`<table>__replay`), which are left
//! for analysis and never swapped in. The live read models are not touched. The scratch
//! tables hold what the slice's events produced on their own: a call that started before
//! the slice shows only what happened to it within the slice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{Checkpoint, EventStore};

use crate::feed::read_decoded;
use crate::projector::{ProjectionError, Projector, Tables};
use crate::rebuild::{prepare_fresh_tables, OnProgress, Progress};
use crate::runner::apply_batch;

const BATCH: i64 = 5_000;

/// Which events a replay takes: by log position and/or record time, both ends inclusive
/// for positions, `[from, to)` for times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slice {
    pub from_position: Option<i64>,
    pub to_position: Option<i64>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl Slice {
    fn holds(&self, position: i64, recorded_at: i64) -> bool {
        self.from_position.is_none_or(|p| position >= p)
            && self.to_position.is_none_or(|p| position <= p)
            && self.from_ms.is_none_or(|t| recorded_at >= t)
            && self.to_ms.is_none_or(|t| recorded_at < t)
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    pub projector: &'static str,
    /// Events of the slice applied, and events read to find them.
    pub events: u64,
    pub read: u64,
    /// The scratch tables written.
    pub tables: Vec<String>,
    pub took: Duration,
}

fn checkpoint_name(projector: &dyn Projector) -> String {
    format!("{}__replay", projector.name())
}

/// Replays `slice` of the log into fresh scratch tables of `projector`.
pub async fn replay(
    store: &EventStore,
    projector: Arc<dyn Projector>,
    slice: Slice,
    on_progress: Option<OnProgress>,
) -> Result<ReplayReport, ProjectionError> {
    let started = Instant::now();
    let name = checkpoint_name(projector.as_ref());
    prepare_fresh_tables(store, projector.as_ref(), Tables::REPLAY, &name, false).await?;
    let mut read_from = Checkpoint::START;
    let mut applied_to = Checkpoint::START;
    let (mut events, mut read) = (0u64, 0u64);
    loop {
        let batch = read_decoded(store, read_from, BATCH).await?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        read_from = last.checkpoint();
        read += batch.len() as u64;
        let last_position = last.position;
        let past_the_end = slice.to_position.is_some_and(|p| batch[0].0.position > p);
        let kept: Vec<_> = batch
            .into_iter()
            .filter(|(stored, _)| slice.holds(stored.position, stored.recorded_at))
            .collect();
        if let Some((last_kept, _)) = kept.last() {
            let to = last_kept.checkpoint();
            if !apply_batch(
                store,
                projector.as_ref(),
                Tables::REPLAY,
                &name,
                applied_to,
                &kept,
            )
            .await?
            {
                return Err(ProjectionError::Rebuild(format!(
                    "replay checkpoint {name} moved under the replay; is another replay running?"
                )));
            }
            applied_to = to;
            events += kept.len() as u64;
        }
        if let Some(on_progress) = &on_progress {
            on_progress(Progress {
                projector: projector.name(),
                events: read,
                position: last_position,
            });
        }
        // Commit order and position order differ only among concurrent commits: a batch
        // starting past the slice's last position ends the replay.
        if past_the_end {
            break;
        }
    }
    Ok(ReplayReport {
        projector: projector.name(),
        events,
        read,
        tables: projector
            .tables()
            .iter()
            .map(|t| Tables::REPLAY.name(t))
            .collect(),
        took: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::Slice;

    #[test]
    fn a_slice_holds_positions_inclusively_and_times_half_open() {
        let slice = Slice {
            from_position: Some(10),
            to_position: Some(20),
            from_ms: Some(1_000),
            to_ms: Some(2_000),
        };
        assert!(slice.holds(10, 1_000) && slice.holds(20, 1_999));
        assert!(!slice.holds(9, 1_500) && !slice.holds(21, 1_500));
        assert!(!slice.holds(15, 999) && !slice.holds(15, 2_000));
        assert!(Slice::default().holds(1, 0));
    }
}
