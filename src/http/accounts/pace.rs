//! Sign-up answers take as long whether or not the address has an account. A new address
//! costs several durable appends and a read-model wait; an address with an account costs
//! one refused claim. Without care the difference (25 ms here) tells anyone who asks which
//! addresses are registered. Both paths therefore answer no earlier than a pace set by recent
//! new-address sign-ups on this process (the 90th percentile of their own work, with a little
//! jitter): most answers of either kind leave at that pace, so the two distributions match,
//! not only their medians (padding only the known path to the new path's median left the
//! known path slower whenever its own work ran past that median on a loaded machine). The
//! owner's email goes out in the background either way.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many recent new-address sign-ups the pace is taken over: few enough to follow the
/// current speed (a cold start's slow first sign-ups must not set the pace for long).
const WINDOW: usize = 32;
/// tokio's timer sleeps at least the duration asked, rounded up to its 1 ms tick.
const TIMER_OVERSHOOT: Duration = Duration::from_millis(1);
/// Before any new-address sign-up was measured.
const FIRST_GUESS: Duration = Duration::from_millis(40);
/// Longest wait (a stalled database must not hold every known-address answer).
const CEILING: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct SignUpPace {
    recent: Mutex<VecDeque<Duration>>,
}

impl SignUpPace {
    /// Records how long a new-address sign-up took, start to answer.
    pub fn new_address_took(&self, took: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(took.min(CEILING));
    }

    /// How long a sign-up should take in all: the 90th percentile of recent new-address
    /// sign-ups' own work.
    pub fn target(&self) -> Duration {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.is_empty() {
            return FIRST_GUESS;
        }
        let mut sorted: Vec<Duration> = recent.iter().copied().collect();
        sorted.sort_unstable();
        sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)]
    }

    /// Waits until a sign-up (of either kind) that started at `started` has taken the pace's
    /// time (give or take a millisecond of jitter).
    pub async fn wait_out(&self, started: Instant) {
        let jitter = Duration::from_micros(rand::random::<u64>() % 2_000);
        let target = (self.target() + jitter).saturating_sub(TIMER_OVERSHOOT * 2);
        if let Some(rest) = target.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_90th_percentile_of_recent_new_sign_ups() {
        let pace = SignUpPace::default();
        assert_eq!(pace.target(), FIRST_GUESS);
        for ms in [10, 50, 30, 20, 40] {
            pace.new_address_took(Duration::from_millis(ms));
        }
        assert_eq!(pace.target(), Duration::from_millis(50));
        for ms in [12, 14, 16, 18, 22] {
            pace.new_address_took(Duration::from_millis(ms));
        }
        assert_eq!(pace.target(), Duration::from_millis(50));
        pace.new_address_took(Duration::from_millis(11));
        assert_eq!(pace.target(), Duration::from_millis(40));
        pace.new_address_took(Duration::from_secs(60));
        assert!(pace.target() <= CEILING);
    }

    #[tokio::test]
    async fn a_known_address_waits_out_the_rest() {
        let pace = SignUpPace::default();
        pace.new_address_took(Duration::from_millis(30));
        let started = Instant::now();
        pace.wait_out(started).await;
        // Up to two timer ticks early (they are given back to the timer's overshoot).
        assert!(started.elapsed() >= Duration::from_millis(27));
    }
}
