//! Sign-up answers take as long whether or not the address has an account. A new address
//! costs several durable appends and a read-model wait; an address with an account costs
//! one refused claim. Without care the difference (25 ms here) tells anyone who asks which
//! addresses are registered. The known-address path therefore waits until as much time has
//! passed as recent new-address sign-ups took on this process (their median, with a little
//! jitter); the owner's email goes out in the background either way.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many recent new-address sign-ups the median is taken over: few enough to follow the
/// current speed (a cold start's slow first sign-ups must not set the pace for long).
const WINDOW: usize = 16;
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

    /// How long a sign-up should take in all.
    pub fn target(&self) -> Duration {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.is_empty() {
            return FIRST_GUESS;
        }
        let mut sorted: Vec<Duration> = recent.iter().copied().collect();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    }

    /// Waits until a sign-up that started at `started` has taken as long as a new one
    /// (give or take a millisecond of jitter).
    pub async fn wait_as_new(&self, started: Instant) {
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
    fn the_target_is_the_median_of_recent_new_sign_ups() {
        let pace = SignUpPace::default();
        assert_eq!(pace.target(), FIRST_GUESS);
        for ms in [10, 50, 30, 20, 40] {
            pace.new_address_took(Duration::from_millis(ms));
        }
        assert_eq!(pace.target(), Duration::from_millis(30));
        pace.new_address_took(Duration::from_secs(60));
        assert!(pace.target() <= CEILING);
    }

    #[tokio::test]
    async fn a_known_address_waits_out_the_rest() {
        let pace = SignUpPace::default();
        pace.new_address_took(Duration::from_millis(30));
        let started = Instant::now();
        pace.wait_as_new(started).await;
        // Up to two timer ticks early (they are given back to the timer's overshoot).
        assert!(started.elapsed() >= Duration::from_millis(27));
    }
}
