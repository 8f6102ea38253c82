//! The request path first: under a burst the post-call processes give the machine to the
//! requests that are waiting for an answer.
//!
//! A provider's delivery must be answered within its timeout (a tool call while the caller
//! waits on the line); a call's summary, notifications and outbound webhooks are durable work
//! that may run seconds later. Left alone, both compete as equals for the same cores and the
//! same database, and a burst of calls slows every answer. So the service keeps a gauge of
//! its request path — the requests in flight, averaged over [`WINDOW`] — and while that
//! average is at or above `busy_requests`, background work takes turns: one unit (one
//! instance's run) at a time across all processes, each followed by a pause so that the
//! background's turns fill about `share` of the time, and the processes' starters read the log
//! in fewer, bigger batches. Outside a burst nothing waits. The
//! background is slowed, never stopped: under a burst that never ends it still runs at its
//! share, and what it did not do waits durably in `process_work` for the burst to pass.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock (std's outside tests), so tests can move time forward.
use tokio::time::Instant;

/// The span the request gauge averages over.
pub const WINDOW: Duration = Duration::from_millis(100);
/// How often a process's starter reads the log while the request path is busy (bigger
/// batches, fewer transactions; the starts it records wait for the worker's turn anyway).
pub const STARTER_PACE_UNDER_LOAD: Duration = Duration::from_millis(250);
/// How often the live read models read the log while the request path is busy (25 ms
/// otherwise): each batch writes a call's rows once however many of its events it holds, and
/// read-your-writes waits up to this long. Measured in the ingest bench: see ARCHITECTURE.md.
pub const BUSY_READ_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause after one background unit (a unit slowed by a stall does not stall the
/// background for long after it).
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How the background yields (`BACKGROUND_SHARE`, `FOREGROUND_BUSY_REQUESTS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yielding {
    /// The part of the time background units may take while the request path is busy
    /// (0 < share <= 1; 1 never yields).
    pub share: f64,
    /// The average requests in flight at which the request path counts as busy.
    pub busy_requests: f64,
}

impl Default for Yielding {
    fn default() -> Self {
        Yielding {
            share: 0.1,
            busy_requests: 4.0,
        }
    }
}

/// The request path's gauge and the background's turns.
pub struct Foreground {
    yielding: Yielding,
    gauge: Mutex<Gauge>,
    /// Held by the background unit whose turn it is while the request path is busy.
    turn: tokio::sync::Mutex<()>,
    yielded: AtomicU64,
}

struct Gauge {
    in_flight: u32,
    /// When `in_flight` last changed (or was last settled).
    since: Instant,
    window_start: Instant,
    /// Requests x seconds in the current window.
    area: f64,
    /// The last whole window's average.
    average: f64,
}

impl Gauge {
    fn settle(&mut self, now: Instant) {
        self.area +=
            f64::from(self.in_flight) * now.saturating_duration_since(self.since).as_secs_f64();
        self.since = now;
        let span = now.saturating_duration_since(self.window_start);
        if span >= WINDOW {
            self.average = self.area / span.as_secs_f64();
            self.area = 0.0;
            self.window_start = now;
        }
    }
}

/// One request in flight, counted until it is dropped.
pub struct InFlight<'a>(&'a Foreground);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.change(-1);
    }
}

impl Foreground {
    pub fn new(yielding: Yielding) -> Self {
        let now = Instant::now();
        Foreground {
            yielding,
            gauge: Mutex::new(Gauge {
                in_flight: 0,
                since: now,
                window_start: now,
                area: 0.0,
                average: 0.0,
            }),
            turn: tokio::sync::Mutex::new(()),
            yielded: AtomicU64::new(0),
        }
    }

    /// Counts a request from now until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        self.change(1);
        InFlight(self)
    }

    fn change(&self, by: i32) {
        let now = Instant::now();
        if let Ok(mut gauge) = self.gauge.lock() {
            gauge.settle(now);
            gauge.in_flight = gauge.in_flight.saturating_add_signed(by);
        }
    }

    /// Requests in flight, averaged over the last whole window.
    pub fn average(&self) -> f64 {
        let now = Instant::now();
        match self.gauge.lock() {
            Ok(mut gauge) => {
                gauge.settle(now);
                gauge.average
            }
            Err(_) => 0.0,
        }
    }

    /// Whether the request path is busy enough for the background to yield.
    pub fn busy(&self) -> bool {
        self.yielding.share < 1.0 && self.average() >= self.yielding.busy_requests
    }

    /// A pace for a log consumer allowed to lag: `pause` while the request path is busy,
    /// none otherwise (`projections::ProjectorRunner::pace`, `projections::LogFeed::stretch`).
    pub fn pace_while_busy(self: &Arc<Self>, pause: Duration) -> projections::runner::Pace {
        let foreground = self.clone();
        Arc::new(move || foreground.busy().then_some(pause))
    }

    /// Background units that waited for their turn since start-up.
    pub fn yielded(&self) -> u64 {
        self.yielded.load(Ordering::Relaxed)
    }

    /// Runs one unit of background work: at once while the request path is not busy; while
    /// it is, in turn with every other background unit, then pausing so the background
    /// keeps to its share of the time.
    pub async fn background<F: Future>(&self, work: F) -> F::Output {
        if !self.busy() {
            return work.await;
        }
        self.yielded.fetch_add(1, Ordering::Relaxed);
        let _turn = self.turn.lock().await;
        let started = Instant::now();
        let out = work.await;
        if self.busy() {
            let share = self.yielding.share.clamp(0.01, 1.0);
            let pause = started.elapsed().mul_f64((1.0 - share) / share);
            tokio::time::sleep(pause.min(MAX_PAUSE)).await;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn foreground() -> Arc<Foreground> {
        Arc::new(Foreground::new(Yielding {
            share: 0.25,
            busy_requests: 2.0,
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauge_averages_requests_in_flight_over_a_window() {
        let fg = foreground();
        assert_eq!(fg.average(), 0.0);
        let held: Vec<_> = (0..3).map(|_| fg.enter()).collect();
        tokio::time::advance(WINDOW).await;
        assert!((fg.average() - 3.0).abs() < 0.05, "{}", fg.average());
        assert!(fg.busy());
        drop(held);
        tokio::time::advance(WINDOW).await;
        assert!(fg.average() < 0.05, "{}", fg.average());
        assert!(!fg.busy());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_request_path_lets_background_units_run_together_at_once() {
        let fg = foreground();
        let started = tokio::time::Instant::now();
        let units: Vec<_> = (0..4)
            .map(|_| {
                let fg = fg.clone();
                tokio::spawn(async move {
                    fg.background(tokio::time::sleep(Duration::from_millis(10)))
                        .await
                })
            })
            .collect();
        for unit in units {
            unit.await.expect("unit");
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(15), "{took:?}");
        assert_eq!(fg.yielded(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_request_path_gets_the_time_the_background_gives_up() {
        let fg = foreground();
        let _held: Vec<_> = (0..4).map(|_| fg.enter()).collect();
        tokio::time::advance(WINDOW).await;
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        let units: Vec<_> = (0..4)
            .map(|_| {
                let (fg, running, most) = (fg.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    fg.background(async {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for unit in units {
            unit.await.expect("unit");
        }
        // One at a time, each 10 ms of work and 30 ms of pause (a quarter of the time).
        assert_eq!(most.load(Ordering::SeqCst), 1);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(160) && took < Duration::from_millis(200),
            "{took:?}"
        );
        assert_eq!(fg.yielded(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_of_one_never_yields() {
        let fg = Foreground::new(Yielding {
            share: 1.0,
            busy_requests: 1.0,
        });
        let _held: Vec<_> = (0..8).map(|_| fg.enter()).collect();
        tokio::time::advance(WINDOW).await;
        assert!(!fg.busy());
    }
}
