//! Subscription events.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::SubscriptionStatus;
use crate::call::Notification;
use crate::common::{Cents, Timestamp};

/// Events of the [`super::Subscription`] aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    CheckoutCompleted {
        organization_id: Uuid,
        customer_id: String,
        subscription_id: String,
        plan: Option<String>,
        checkout_session_id: String,
        stripe_event_id: String,
        stripe_created: i64,
    },
    /// Full status snapshot. `None` optional fields mean "unchanged"; an
    /// empty `customer_id` means "unchanged".
    SubscriptionStatusChanged {
        organization_id: Option<Uuid>,
        customer_id: String,
        status: SubscriptionStatus,
        plan: Option<String>,
        price_id: Option<String>,
        subscription_item_id: Option<String>,
        included_minutes: Option<i64>,
        current_period_start: Option<i64>,
        current_period_end: Option<i64>,
        cancel_at_period_end: bool,
        stripe_event_id: String,
        stripe_created: i64,
    },
    SubscriptionCanceled {
        stripe_event_id: String,
        stripe_created: i64,
    },
    InvoicePaid {
        invoice_id: String,
        amount_paid_cents: Cents,
        currency: String,
        period_start: i64,
        period_end: i64,
        hosted_invoice_url: Option<String>,
        stripe_event_id: String,
        stripe_created: i64,
    },
    PaymentFailed {
        invoice_id: String,
        amount_due_cents: Cents,
        currency: String,
        stripe_event_id: String,
        stripe_created: i64,
    },
    /// `period_start`: the metering period the minutes count in; `overage_minutes`: how many
    /// of them are beyond the plan's included minutes: a pending report `usage:{call_id}`
    /// until Stripe accepts it (`OverageReported`).
    UsageRecorded {
        call_id: String,
        minutes: i64,
        at: Timestamp,
        period_start: i64,
        #[serde(default)]
        overage_minutes: i64,
    },
    /// A metering period began (epoch seconds, as Stripe's bounds).
    PeriodOpened {
        period_start: i64,
        period_end: i64,
    },
    /// Used minutes reached `threshold_pct` percent of the included ones in the period.
    UsageThresholdReached {
        period_start: i64,
        period_end: i64,
        threshold_pct: u32,
        used_minutes: i64,
        included_minutes: i64,
    },
    PeriodCloseRequested {
        period_start: i64,
        period_end: i64,
    },
    /// `reported_minutes`: overage already reported to Stripe when the period closed;
    /// `unbilled_minutes`: overage no call's report covers (the plan's minutes changed during
    /// the period), now pending as the report `close:{period_start}`.
    PeriodClosed {
        period_start: i64,
        period_end: i64,
        total_minutes: i64,
        included_minutes: i64,
        overage_minutes: i64,
        overage_rate_cents: Cents,
        overage_cost_cents: Cents,
        reported_minutes: i64,
        #[serde(default)]
        unbilled_minutes: i64,
    },
    /// Stripe accepted the pending report `key`.
    OverageReported {
        key: String,
        period_start: i64,
        overage_minutes: i64,
        meter_event_identifier: String,
    },
    NotificationsRequested {
        key: String,
        reason: String,
        notifications: Vec<Notification>,
        at: Timestamp,
    },
}

impl SubscriptionEvent {
    /// Stable event type name (equal to the variant name).
    pub fn name(&self) -> &'static str {
        use SubscriptionEvent::*;
        match self {
            CheckoutCompleted { .. } => "CheckoutCompleted",
            SubscriptionStatusChanged { .. } => "SubscriptionStatusChanged",
            SubscriptionCanceled { .. } => "SubscriptionCanceled",
            InvoicePaid { .. } => "InvoicePaid",
            PaymentFailed { .. } => "PaymentFailed",
            UsageRecorded { .. } => "UsageRecorded",
            PeriodOpened { .. } => "PeriodOpened",
            UsageThresholdReached { .. } => "UsageThresholdReached",
            PeriodCloseRequested { .. } => "PeriodCloseRequested",
            PeriodClosed { .. } => "PeriodClosed",
            OverageReported { .. } => "OverageReported",
            NotificationsRequested { .. } => "NotificationsRequested",
        }
    }

    /// The Stripe event this event was derived from, if any.
    pub fn stripe_event_id(&self) -> Option<&str> {
        use SubscriptionEvent::*;
        match self {
            CheckoutCompleted {
                stripe_event_id, ..
            }
            | SubscriptionStatusChanged {
                stripe_event_id, ..
            }
            | SubscriptionCanceled {
                stripe_event_id, ..
            }
            | InvoicePaid {
                stripe_event_id, ..
            }
            | PaymentFailed {
                stripe_event_id, ..
            } => Some(stripe_event_id.as_str()),
            UsageRecorded { .. }
            | PeriodOpened { .. }
            | UsageThresholdReached { .. }
            | PeriodCloseRequested { .. }
            | PeriodClosed { .. }
            | OverageReported { .. }
            | NotificationsRequested { .. } => None,
        }
    }
}

impl DomainEvent for SubscriptionEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
