//! A process's plan: its steps, what each waits for, and how each is retried.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::common::Timestamp;

/// The longest a retry waits.
const MAX_BACKOFF_MS: i64 = 24 * 3_600_000;

/// How a failing step is retried. Attempt `n` (1-based) that fails is retried after
/// `schedule_ms[n-1]` when a schedule is given (its last entry repeats), else after
/// `first_backoff_ms * factor^(n-1)`, until `max_attempts` have been made. `jitter_pct` adds
/// up to that share of the wait, the same for the same instance and attempt (the aggregate
/// is pure: the spread comes from the instance's subject, not from a random source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_backoff_ms: i64,
    pub factor: u32,
    /// How long one attempt may take before it counts as failed.
    pub timeout_ms: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_ms: Vec<i64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_pct: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// FNV-1a: a stable spread for the jitter (std's hasher is not stable across releases).
fn spread(salt: &str, attempt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in salt.bytes().chain(attempt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Default for RetryPolicy {
    /// The seed's call processing: 2 minutes per attempt, 3 attempts, back-off doubling.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            first_backoff_ms: 1_000,
            factor: 2,
            timeout_ms: 120_000,
            schedule_ms: Vec::new(),
            jitter_pct: 0,
        }
    }
}

impl RetryPolicy {
    /// When failed attempt `attempt` of instance `salt` is retried; `None` once the attempts
    /// are spent.
    pub fn retry_at(&self, attempt: u32, failed_at: Timestamp, salt: &str) -> Option<Timestamp> {
        if attempt >= self.max_attempts {
            return None;
        }
        let backoff = match self.schedule_ms.as_slice() {
            [] => {
                let factor = i64::from(self.factor.max(1));
                (0..attempt.saturating_sub(1)).fold(self.first_backoff_ms.max(0), |b, _| {
                    b.saturating_mul(factor)
                })
            }
            schedule => {
                let i = (attempt.max(1) as usize - 1).min(schedule.len() - 1);
                schedule[i].max(0)
            }
        };
        let jitter = if self.jitter_pct > 0 && backoff > 0 {
            let span = backoff.saturating_mul(i64::from(self.jitter_pct.min(100))) / 100;
            (spread(salt, attempt) % (span.max(0) as u64 + 1)) as i64
        } else {
            0
        };
        let backoff = backoff.saturating_add(jitter);
        // Capped at a day: a policy's numbers come from code, but a timestamp must not overflow.
        let backoff = Duration::milliseconds(backoff.min(MAX_BACKOFF_MS));
        Some(failed_at.checked_add_signed(backoff).unwrap_or(failed_at))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepPlan {
    pub name: String,
    /// Steps that must have finished first, however they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Steps that must have succeeded: if one gives up or is skipped, this one is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    pub policy: RetryPolicy,
}

impl StepPlan {
    pub fn new(name: &str, policy: RetryPolicy) -> Self {
        StepPlan {
            name: name.to_string(),
            after: Vec::new(),
            needs: Vec::new(),
            policy,
        }
    }

    pub fn after(mut self, steps: &[&str]) -> Self {
        self.after.extend(steps.iter().map(|s| s.to_string()));
        self
    }

    pub fn needs(mut self, steps: &[&str]) -> Self {
        self.needs.extend(steps.iter().map(|s| s.to_string()));
        self
    }
}

/// A plan is valid when its names are unique, non-empty, every dependency names an earlier
/// step (so there are no cycles) and every step may be attempted at least once.
pub(crate) fn validate(steps: &[StepPlan]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("a process needs at least one step".into());
    }
    for (i, step) in steps.iter().enumerate() {
        if step.name.trim().is_empty() {
            return Err("a step needs a name".into());
        }
        if step.policy.max_attempts == 0 {
            return Err(format!("step {:?} allows no attempt", step.name));
        }
        let earlier = &steps[..i];
        if earlier.iter().any(|s| s.name == step.name) {
            return Err(format!("step {:?} is planned twice", step.name));
        }
        for dep in step.after.iter().chain(&step.needs) {
            if !earlier.iter().any(|s| &s.name == dep) {
                return Err(format!(
                    "step {:?} waits for {dep:?}, which is not an earlier step",
                    step.name
                ));
            }
        }
    }
    Ok(())
}
