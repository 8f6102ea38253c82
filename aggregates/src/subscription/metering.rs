//! Metering: a subscription's minutes per period, its usage thresholds, the overage it
//! reports to Stripe, and the close of each period.
//!
//! The metering period is ours, not Stripe's: it opens from Stripe's bounds (or the calendar
//! month of the first call when Stripe has not told us any) and only a `PeriodClosed` moves
//! it on, so a renewal announced by Stripe before our close never moves usage between
//! periods. A call that ends after the period's end, before the close, counts in the next
//! period ("carried").

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use super::{Subscription, SubscriptionCommand, SubscriptionError, SubscriptionEvent};
use super::{SubscriptionStatus, SubscriptionStatus as St};
use crate::common::{emit, Timestamp};

/// Usage alerts, in percent of the plan's included minutes.
pub const USAGE_THRESHOLDS: [u32; 2] = [80, 100];

/// A metering period: epoch seconds, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeteringPeriod {
    pub start: i64,
    pub end: i64,
}

/// Overage minutes to report to Stripe, claimed by the event that accrued them (so a crash
/// between the decision and the report loses nothing, and two reporters of one key send one
/// meter event: its identifier is derived from the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    pub period_start: i64,
    pub minutes: i64,
    /// Epoch seconds the usage happened at (the meter event's timestamp).
    pub at: i64,
}

/// Usage recorded for a period that has not opened yet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CarriedUsage {
    pub minutes: i64,
    pub call_ids: BTreeSet<String>,
}

fn invalid(message: &str) -> SubscriptionError {
    SubscriptionError::InvalidInput(message.to_string())
}

fn month_of(at: Timestamp) -> MeteringPeriod {
    let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap_or_default();
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    let secs = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .unwrap_or_default()
    };
    MeteringPeriod {
        start: secs(first),
        end: secs(next),
    }
}

/// Whether the subscription still bills (a new period opens after a close).
fn lives(status: Option<SubscriptionStatus>) -> bool {
    !matches!(status, Some(St::Canceled | St::IncompleteExpired))
}

impl Subscription {
    /// Whether `call_id` was metered in this, the previous or a coming period.
    pub fn has_metered(&self, call_id: &str) -> bool {
        self.period_call_ids.contains(call_id)
            || self.previous_call_ids.contains(call_id)
            || self.carried.values().any(|c| c.call_ids.contains(call_id))
    }

    /// The period a first call at `at` opens: Stripe's when it contains `at`, else the
    /// calendar month (UTC).
    fn first_period(&self, at: Timestamp) -> MeteringPeriod {
        let secs = at.timestamp();
        match (self.current_period_start, self.current_period_end) {
            (Some(start), Some(end)) if start <= secs && secs < end => {
                MeteringPeriod { start, end }
            }
            _ => month_of(at),
        }
    }

    /// The period after `p`: Stripe's next bound when it announced one, else a calendar
    /// month for a monthly period, else a period of the same length.
    fn next_period(&self, p: MeteringPeriod) -> MeteringPeriod {
        if let Some(end) = self.current_period_end.filter(|e| *e > p.end) {
            return MeteringPeriod { start: p.end, end };
        }
        let length = p.end - p.start;
        let monthly = (28 * 86_400..=31 * 86_400).contains(&length);
        let end = DateTime::from_timestamp(p.end, 0)
            .filter(|_| monthly)
            .and_then(|d| d.checked_add_months(Months::new(1)))
            .map_or(p.end + length.max(86_400), |d| d.timestamp());
        MeteringPeriod { start: p.end, end }
    }

    /// Opens the first metering period from Stripe's bounds once the subscription bills, so
    /// a period without calls closes too.
    pub(super) fn open_first_period(&mut self, out: &mut Vec<SubscriptionEvent>) {
        if self.period.is_some() || !lives(self.status) || self.status.is_none() {
            return;
        }
        if let (Some(start), Some(end)) = (self.current_period_start, self.current_period_end) {
            if start < end && !self.closed_periods.contains(&start) {
                let opened = SubscriptionEvent::PeriodOpened {
                    period_start: start,
                    period_end: end,
                };
                emit(self, out, opened);
            }
        }
    }

    /// The pending overage reports of the period starting at `period_start`.
    pub fn pending_reports_of(&self, period_start: i64) -> Vec<(&String, &PendingReport)> {
        self.pending_reports
            .iter()
            .filter(|(_, r)| r.period_start == period_start)
            .collect()
    }

    /// Thresholds the current period's usage has reached and not announced.
    fn announce_thresholds(&mut self, out: &mut Vec<SubscriptionEvent>) {
        let (Some(p), Some(included)) = (self.period, self.included_minutes) else {
            return;
        };
        if included <= 0 {
            return;
        }
        for pct in USAGE_THRESHOLDS {
            let reached =
                self.period_minutes.saturating_mul(100) >= included.saturating_mul(i64::from(pct));
            if reached && !self.period_thresholds.contains(&pct) {
                let event = SubscriptionEvent::UsageThresholdReached {
                    period_start: p.start,
                    period_end: p.end,
                    threshold_pct: pct,
                    used_minutes: self.period_minutes,
                    included_minutes: included,
                };
                emit(self, out, event);
            }
        }
    }

    /// The current period, unless `period_start` names another one. `Ok(None)`: that period
    /// is already closed (a repeat).
    fn current(&self, period_start: i64) -> Result<Option<MeteringPeriod>, SubscriptionError> {
        if self.closed_periods.contains(&period_start) {
            return Ok(None);
        }
        match self.period {
            Some(p) if p.start == period_start => Ok(Some(p)),
            _ => Err(invalid("no such open metering period")),
        }
    }

    pub(super) fn decide_metering(
        &mut self,
        command: SubscriptionCommand,
        out: &mut Vec<SubscriptionEvent>,
    ) -> Result<(), SubscriptionError> {
        use SubscriptionCommand as C;
        use SubscriptionEvent as Ev;
        match command {
            C::RecordUsage {
                call_id,
                minutes,
                at,
            } => {
                if minutes < 0 {
                    return Err(invalid("minutes must not be negative"));
                }
                if self.has_metered(&call_id) || (self.period.is_none() && !lives(self.status)) {
                    return Ok(());
                }
                let p = match self.period {
                    Some(p) => p,
                    None => {
                        let p = self.first_period(at);
                        let opened = Ev::PeriodOpened {
                            period_start: p.start,
                            period_end: p.end,
                        };
                        emit(self, out, opened);
                        p
                    }
                };
                if at.timestamp() >= p.end {
                    let carried = Ev::UsageRecorded {
                        call_id,
                        minutes,
                        at,
                        period_start: p.end,
                        overage_minutes: 0,
                    };
                    emit(self, out, carried);
                    return Ok(());
                }
                let before = self.period_minutes;
                let after = before.saturating_add(minutes);
                let overage = self
                    .included_minutes
                    .map_or(0, |inc| (after - inc).max(0) - (before - inc).max(0));
                let recorded = Ev::UsageRecorded {
                    call_id,
                    minutes,
                    at,
                    period_start: p.start,
                    overage_minutes: overage,
                };
                emit(self, out, recorded);
                self.announce_thresholds(out);
            }
            C::CheckThresholds { at } => {
                if self.period.is_some_and(|p| at.timestamp() < p.end) {
                    self.announce_thresholds(out);
                }
            }
            C::RequestPeriodClose { period_start, at } => {
                let Some(p) = self.current(period_start)? else {
                    return Ok(());
                };
                if at.timestamp() < p.end {
                    return Err(invalid("the metering period has not ended yet"));
                }
                if self.close_requested != Some(p.start) {
                    let requested = Ev::PeriodCloseRequested {
                        period_start: p.start,
                        period_end: p.end,
                    };
                    emit(self, out, requested);
                }
            }
            C::ClosePeriod {
                period_start,
                overage_rate_cents,
                at,
            } => {
                let Some(p) = self.current(period_start)? else {
                    return Ok(());
                };
                if at.timestamp() < p.end {
                    return Err(invalid("the metering period has not ended yet"));
                }
                if overage_rate_cents < 0 {
                    return Err(invalid("overage_rate_cents must not be negative"));
                }
                let total = self.period_minutes;
                let overage = self.included_minutes.map_or(0, |inc| (total - inc).max(0));
                let closed = Ev::PeriodClosed {
                    unbilled_minutes: (overage - self.period_overage_claimed).max(0),
                    period_start: p.start,
                    period_end: p.end,
                    total_minutes: total,
                    included_minutes: self.included_minutes.unwrap_or(0),
                    overage_minutes: overage,
                    overage_rate_cents,
                    overage_cost_cents: overage.saturating_mul(overage_rate_cents),
                    reported_minutes: self.period_reported_minutes,
                };
                emit(self, out, closed);
                if lives(self.status) {
                    let next = self.next_period(p);
                    let opened = Ev::PeriodOpened {
                        period_start: next.start,
                        period_end: next.end,
                    };
                    emit(self, out, opened);
                    self.announce_thresholds(out);
                }
            }
            C::ReportOverage {
                key,
                meter_event_identifier,
            } => {
                if self.reported_identifiers.contains(&key) {
                    return Ok(());
                }
                let pending = self
                    .pending_reports
                    .get(&key)
                    .ok_or_else(|| invalid("no such overage report is pending"))?;
                let reported = Ev::OverageReported {
                    key,
                    period_start: pending.period_start,
                    overage_minutes: pending.minutes,
                    meter_event_identifier,
                };
                emit(self, out, reported);
            }
            C::RequestNotifications {
                key,
                reason,
                notifications,
                at,
            } => {
                if !notifications.is_empty() && !self.notified.contains(&key) {
                    let requested = Ev::NotificationsRequested {
                        key,
                        reason,
                        notifications,
                        at,
                    };
                    emit(self, out, requested);
                }
            }
            _ => return Err(invalid("not a metering command")),
        }
        Ok(())
    }

    /// Starts period `p`, with any usage carried into it.
    fn open(&mut self, p: MeteringPeriod) {
        let carried = self.carried.remove(&p.start).unwrap_or_default();
        self.period = Some(p);
        self.period_minutes = carried.minutes;
        self.period_call_ids = carried.call_ids;
        self.period_reported_minutes = 0;
        self.period_overage_claimed = 0;
        self.period_thresholds.clear();
        self.close_requested = None;
        // Anything carried further ahead than this period stays carried.
        self.carried = std::mem::take(&mut self.carried)
            .into_iter()
            .filter(|(start, _)| *start > p.start)
            .collect::<BTreeMap<_, _>>();
    }

    /// Folds a metering event; `false` when `event` is not one.
    pub(super) fn apply_metering(&mut self, event: &SubscriptionEvent) -> bool {
        use SubscriptionEvent as Ev;
        let current = |s: &Self, start: i64| s.period.is_some_and(|p| p.start == start);
        match event {
            Ev::PeriodOpened {
                period_start,
                period_end,
            } => self.open(MeteringPeriod {
                start: *period_start,
                end: *period_end,
            }),
            Ev::UsageRecorded {
                call_id,
                minutes,
                at,
                period_start,
                overage_minutes,
            } => {
                if *overage_minutes > 0 {
                    let report = PendingReport {
                        period_start: *period_start,
                        minutes: *overage_minutes,
                        at: at.timestamp(),
                    };
                    self.pending_reports
                        .insert(format!("usage:{call_id}"), report);
                }
                if current(self, *period_start) {
                    self.period_call_ids.insert(call_id.clone());
                    self.period_minutes = self.period_minutes.saturating_add(*minutes);
                    self.period_overage_claimed += overage_minutes;
                } else {
                    let carried = self.carried.entry(*period_start).or_default();
                    carried.minutes = carried.minutes.saturating_add(*minutes);
                    carried.call_ids.insert(call_id.clone());
                }
            }
            Ev::UsageThresholdReached {
                period_start,
                threshold_pct,
                ..
            } => {
                if current(self, *period_start) {
                    self.period_thresholds.insert(*threshold_pct);
                }
            }
            Ev::PeriodCloseRequested { period_start, .. } => {
                self.close_requested = Some(*period_start);
            }
            Ev::PeriodClosed {
                period_start,
                period_end,
                unbilled_minutes,
                ..
            } => {
                if *unbilled_minutes > 0 {
                    let report = PendingReport {
                        period_start: *period_start,
                        minutes: *unbilled_minutes,
                        at: period_end - 1,
                    };
                    self.pending_reports
                        .insert(format!("close:{period_start}"), report);
                }
                self.closed_periods.insert(*period_start);
                self.previous_call_ids = std::mem::take(&mut self.period_call_ids);
                self.period = None;
                self.period_minutes = 0;
                self.period_reported_minutes = 0;
                self.period_overage_claimed = 0;
                self.period_thresholds.clear();
                self.close_requested = None;
            }
            Ev::OverageReported {
                key,
                period_start,
                overage_minutes,
                ..
            } => {
                self.pending_reports.remove(key);
                self.reported_identifiers.insert(key.clone());
                if current(self, *period_start) {
                    self.period_reported_minutes += overage_minutes;
                }
            }
            Ev::NotificationsRequested { key, .. } => {
                self.notified.insert(key.clone());
            }
            _ => return false,
        }
        true
    }
}
