//! Subscription events.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::SubscriptionStatus;
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
    UsageRecorded {
        call_id: String,
        minutes: i64,
        at: Timestamp,
    },
    PeriodClosed {
        period_start: i64,
        period_end: i64,
        total_minutes: i64,
        included_minutes: i64,
        overage_minutes: i64,
        overage_rate_cents: Cents,
    },
    OverageReported {
        period_end: i64,
        overage_minutes: i64,
        meter_event_identifier: String,
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
            PeriodClosed { .. } => "PeriodClosed",
            OverageReported { .. } => "OverageReported",
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
            UsageRecorded { .. } | PeriodClosed { .. } | OverageReported { .. } => None,
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
