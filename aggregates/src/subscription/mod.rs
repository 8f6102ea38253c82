//! The Subscription aggregate: one per Stripe subscription id.
//!
//! Stripe delivers webhooks at least once and out of order, so:
//! - a Stripe event id already seen (last [`SEEN_EVENT_IDS_LIMIT`]) is a no-op;
//! - a status sync older (by Stripe `created`) than the last applied status
//!   change is a no-op, so late deliveries never roll the status back; once
//!   canceled, only a strictly newer sync can change the status;
//! - invoices, usage call ids, closed periods and overage reports are
//!   deduplicated by their ids.

mod command;
mod error;
mod event;
mod metering;
#[cfg(test)]
mod metering_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use command::{SubscriptionCommand, SubscriptionStatus};
pub use error::SubscriptionError;
pub use event::SubscriptionEvent;
pub use metering::{CarriedUsage, MeteringPeriod, PendingReport, USAGE_THRESHOLDS};

use crate::common::{emit, write_all};

/// How many recent Stripe event ids are remembered for dedupe.
pub const SEEN_EVENT_IDS_LIMIT: usize = 200;

/// Subscription state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Subscription {
    pub subscription_id: Option<String>,
    pub organization_id: Option<Uuid>,
    pub customer_id: Option<String>,
    pub checkout_session_id: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub plan: Option<String>,
    pub price_id: Option<String>,
    pub subscription_item_id: Option<String>,
    pub included_minutes: Option<i64>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    /// Stripe `created` of the last applied status change.
    pub last_stripe_created: Option<i64>,
    /// Most recent Stripe event ids, oldest first, at most
    /// [`SEEN_EVENT_IDS_LIMIT`].
    pub seen_event_ids: VecDeque<String>,
    pub paid_invoices: BTreeSet<String>,
    /// The current metering period (see `metering`); `None` before the first and after a
    /// final close.
    #[serde(default)]
    pub period: Option<MeteringPeriod>,
    /// Call ids metered in the current period.
    pub period_call_ids: BTreeSet<String>,
    /// Call ids metered in the previous period (a late repeat is not metered twice).
    #[serde(default)]
    pub previous_call_ids: BTreeSet<String>,
    /// Minutes metered in the current period.
    pub period_minutes: i64,
    /// Overage minutes of the current period already reported to Stripe.
    #[serde(default)]
    pub period_reported_minutes: i64,
    /// Usage thresholds (percent) announced in the current period.
    #[serde(default)]
    pub period_thresholds: BTreeSet<u32>,
    /// The current period's close was requested.
    #[serde(default)]
    pub close_requested: Option<i64>,
    /// Usage of calls that ended after the current period, by the period it counts in.
    #[serde(default)]
    pub carried: BTreeMap<i64, CarriedUsage>,
    /// `period_start` of every closed period.
    pub closed_periods: BTreeSet<i64>,
    /// Keys of the overage reports Stripe accepted.
    pub reported_identifiers: BTreeSet<String>,
    /// Overage claimed and not yet accepted by Stripe, by key.
    #[serde(default)]
    pub pending_reports: BTreeMap<String, PendingReport>,
    /// Overage minutes the current period's calls claimed.
    #[serde(default)]
    pub period_overage_claimed: i64,
    /// Keys of the notifications already requested.
    #[serde(default)]
    pub notified: BTreeSet<String>,
}

impl Subscription {
    /// True when this Stripe event id was already applied.
    pub fn has_seen(&self, stripe_event_id: &str) -> bool {
        self.seen_event_ids.iter().any(|id| id == stripe_event_id)
    }

    /// True when a status change created at `stripe_created` is not older
    /// than the last applied one.
    fn is_current(&self, stripe_created: i64) -> bool {
        self.last_stripe_created
            .is_none_or(|last| stripe_created >= last)
    }

    fn remember(&mut self, stripe_event_id: &str) {
        if !self.has_seen(stripe_event_id) {
            self.seen_event_ids.push_back(stripe_event_id.to_string());
        }
        while self.seen_event_ids.len() > SEEN_EVENT_IDS_LIMIT {
            self.seen_event_ids.pop_front();
        }
    }

    fn bump_created(&mut self, stripe_created: i64) {
        self.last_stripe_created = Some(
            self.last_stripe_created
                .map_or(stripe_created, |last| last.max(stripe_created)),
        );
    }

    /// Pure decision: the events `command` would produce against this state.
    /// Does not modify `self`.
    pub fn decide(
        &self,
        command: SubscriptionCommand,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        if let Some((id, _)) = command.stripe_origin() {
            if self.has_seen(id) {
                return Ok(Vec::new());
            }
        }
        let mut scratch = self.clone();
        let mut out = Vec::new();
        scratch.decide_into(command, &mut out)?;
        Ok(out)
    }

    fn decide_into(
        &mut self,
        command: SubscriptionCommand,
        out: &mut Vec<SubscriptionEvent>,
    ) -> Result<(), SubscriptionError> {
        use SubscriptionCommand as C;
        use SubscriptionEvent as Ev;
        match command {
            C::CompleteCheckout {
                organization_id,
                customer_id,
                subscription_id,
                plan,
                checkout_session_id,
                stripe_event_id,
                stripe_created,
            } => {
                if self.checkout_session_id.is_none() {
                    let event = Ev::CheckoutCompleted {
                        organization_id,
                        customer_id,
                        subscription_id,
                        plan,
                        checkout_session_id,
                        stripe_event_id,
                        stripe_created,
                    };
                    emit(self, out, event);
                }
            }
            C::SyncSubscription {
                organization_id,
                customer_id,
                status,
                plan,
                price_id,
                subscription_item_id,
                included_minutes,
                current_period_start,
                current_period_end,
                cancel_at_period_end,
                stripe_event_id,
                stripe_created,
            } => {
                let revives_canceled = self.status == Some(SubscriptionStatus::Canceled)
                    && status != SubscriptionStatus::Canceled
                    && self
                        .last_stripe_created
                        .is_some_and(|last| stripe_created <= last);
                if self.is_current(stripe_created) && !revives_canceled {
                    let event = Ev::SubscriptionStatusChanged {
                        organization_id,
                        customer_id,
                        status,
                        plan,
                        price_id,
                        subscription_item_id,
                        included_minutes,
                        current_period_start,
                        current_period_end,
                        cancel_at_period_end,
                        stripe_event_id,
                        stripe_created,
                    };
                    emit(self, out, event);
                    self.open_first_period(out);
                }
            }
            C::Cancel {
                stripe_event_id,
                stripe_created,
            } => {
                if self.status != Some(SubscriptionStatus::Canceled) {
                    let event = Ev::SubscriptionCanceled {
                        stripe_event_id,
                        stripe_created,
                    };
                    emit(self, out, event);
                }
            }
            C::RecordInvoicePaid {
                invoice_id,
                amount_paid_cents,
                currency,
                period_start,
                period_end,
                hosted_invoice_url,
                stripe_event_id,
                stripe_created,
            } => {
                if !self.paid_invoices.contains(&invoice_id) {
                    let event = Ev::InvoicePaid {
                        invoice_id,
                        amount_paid_cents,
                        currency,
                        period_start,
                        period_end,
                        hosted_invoice_url,
                        stripe_event_id,
                        stripe_created,
                    };
                    emit(self, out, event);
                }
            }
            C::RecordPaymentFailed {
                invoice_id,
                amount_due_cents,
                currency,
                stripe_event_id,
                stripe_created,
            } => {
                let failed = Ev::PaymentFailed {
                    invoice_id,
                    amount_due_cents,
                    currency,
                    stripe_event_id: stripe_event_id.clone(),
                    stripe_created,
                };
                emit(self, out, failed);
                let moves_to_past_due = !matches!(
                    self.status,
                    Some(SubscriptionStatus::Canceled | SubscriptionStatus::PastDue)
                ) && self.is_current(stripe_created);
                if moves_to_past_due {
                    let changed = Ev::SubscriptionStatusChanged {
                        organization_id: self.organization_id,
                        customer_id: self.customer_id.clone().unwrap_or_default(),
                        status: SubscriptionStatus::PastDue,
                        plan: self.plan.clone(),
                        price_id: self.price_id.clone(),
                        subscription_item_id: self.subscription_item_id.clone(),
                        included_minutes: self.included_minutes,
                        current_period_start: self.current_period_start,
                        current_period_end: self.current_period_end,
                        cancel_at_period_end: self.cancel_at_period_end,
                        stripe_event_id,
                        stripe_created,
                    };
                    emit(self, out, changed);
                }
            }
            metering => self.decide_metering(metering, out)?,
        }
        Ok(())
    }
}

fn keep_or_replace<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

impl Aggregate for Subscription {
    const TYPE: &'static str = "subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use SubscriptionEvent as Ev;
        if let Some(id) = event.stripe_event_id() {
            let id = id.to_string();
            self.remember(&id);
        }
        match event {
            Ev::CheckoutCompleted {
                organization_id,
                customer_id,
                subscription_id,
                plan,
                checkout_session_id,
                ..
            } => {
                self.organization_id = Some(organization_id);
                self.customer_id = Some(customer_id);
                self.subscription_id = Some(subscription_id);
                keep_or_replace(&mut self.plan, plan);
                self.checkout_session_id = Some(checkout_session_id);
            }
            Ev::SubscriptionStatusChanged {
                organization_id,
                customer_id,
                status,
                plan,
                price_id,
                subscription_item_id,
                included_minutes,
                current_period_start,
                current_period_end,
                cancel_at_period_end,
                stripe_created,
                ..
            } => {
                keep_or_replace(&mut self.organization_id, organization_id);
                if !customer_id.is_empty() {
                    self.customer_id = Some(customer_id);
                }
                self.status = Some(status);
                keep_or_replace(&mut self.plan, plan);
                keep_or_replace(&mut self.price_id, price_id);
                keep_or_replace(&mut self.subscription_item_id, subscription_item_id);
                keep_or_replace(&mut self.included_minutes, included_minutes);
                keep_or_replace(&mut self.current_period_start, current_period_start);
                keep_or_replace(&mut self.current_period_end, current_period_end);
                self.cancel_at_period_end = cancel_at_period_end;
                self.bump_created(stripe_created);
            }
            Ev::SubscriptionCanceled { stripe_created, .. } => {
                self.status = Some(SubscriptionStatus::Canceled);
                self.bump_created(stripe_created);
            }
            Ev::InvoicePaid { invoice_id, .. } => {
                self.paid_invoices.insert(invoice_id);
            }
            Ev::PaymentFailed { .. } => {}
            metering => {
                self.apply_metering(&metering);
            }
        }
    }
}
