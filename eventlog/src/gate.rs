//! Per-stream gates: commands to one stream inside one process take turns.
//!
//! Why: a provider does not wait for one answer before sending the call's next message, so
//! several deliveries of one call are decided at once. Decided on the same version, all but
//! one would conflict at the append and be decided again — K in flight cost O(K²) decisions
//! and, past a few retries, a refused delivery. Taking turns costs nothing extra: the next
//! command decides on the state the previous one left in the cache (no read), and the
//! stream's appends were serial at the database anyway. Different streams never wait for
//! each other. Conflicts with OTHER processes are still possible and retried by the
//! repository with jittered backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Gates = Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

/// The gates of one repository (one aggregate type), keyed by stream id.
#[derive(Clone, Default)]
pub(crate) struct StreamGates {
    gates: Gates,
}

/// A stream's turn: held while its command is decided and appended. Dropping it hands the
/// turn to the next waiter (tokio's mutex is fair: first come, first served).
pub(crate) struct Turn {
    id: String,
    gate: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
    gates: Gates,
}

impl StreamGates {
    /// Waits for `id`'s turn. Cancel-safe: a caller dropped while waiting leaves no trace.
    pub async fn turn(&self, id: &str) -> Turn {
        let gate = {
            let mut gates = self.lock();
            gates
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(AsyncMutex::new(())))
                .clone()
        };
        // If this future is dropped while waiting, the lock future (declared later) is
        // dropped before `turn`, whose drop then finds the gate unused and removes it.
        let mut turn = Turn {
            id: id.to_string(),
            gate,
            guard: None,
            gates: self.gates.clone(),
        };
        turn.guard = Some(turn.gate.clone().lock_owned().await);
        turn
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AsyncMutex<()>>>> {
        self.gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Streams with a gate right now (commands running or waiting); for tests.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guard.take();
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the map and this turn hold the gate: nobody is waiting, so it goes. The map's
        // lock is held, so no new waiter can pick it up meanwhile.
        if Arc::strong_count(&self.gate) == 2 {
            if let Some(current) = gates.get(&self.id) {
                if Arc::ptr_eq(current, &self.gate) {
                    gates.remove(&self.id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn one_stream_takes_turns_and_other_streams_do_not_wait() {
        let gates = StreamGates::default();
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (gates, inside, most) = (gates.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = gates.turn("a").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        // Another stream's turn is granted while "a" is busy.
        let other = tokio::time::timeout(Duration::from_millis(500), gates.turn("b")).await;
        assert!(other.is_ok(), "stream b waited for stream a");
        drop(other);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two commands of one stream at once"
        );
        assert_eq!(gates.open(), 0, "gates of idle streams are dropped");
    }

    #[tokio::test]
    async fn a_waiter_cancelled_while_waiting_leaves_no_gate_behind() {
        let gates = StreamGates::default();
        let held = gates.turn("a").await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), gates.turn("a")).await;
        assert!(waiting.is_err());
        drop(held);
        assert_eq!(gates.open(), 0);
        let _again = gates.turn("a").await;
        assert_eq!(gates.open(), 1);
    }
}
