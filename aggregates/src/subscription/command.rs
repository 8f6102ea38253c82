//! Subscription commands and the value types they carry.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::call::Notification;
use crate::common::{Cents, Timestamp};

/// Stripe subscription status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
}

/// Commands accepted by the [`super::Subscription`] aggregate (one per
/// Stripe subscription id). Stripe-originated commands carry the Stripe
/// event id (for redelivery dedupe) and its `created` epoch seconds (for
/// ordering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionCommand {
    CompleteCheckout {
        organization_id: Uuid,
        customer_id: String,
        subscription_id: String,
        plan: Option<String>,
        checkout_session_id: String,
        stripe_event_id: String,
        stripe_created: i64,
    },
    /// `None` optional fields keep the previously known value.
    SyncSubscription {
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
    Cancel {
        stripe_event_id: String,
        stripe_created: i64,
    },
    RecordInvoicePaid {
        invoice_id: String,
        amount_paid_cents: Cents,
        currency: String,
        period_start: i64,
        period_end: i64,
        hosted_invoice_url: Option<String>,
        stripe_event_id: String,
        stripe_created: i64,
    },
    RecordPaymentFailed {
        invoice_id: String,
        amount_due_cents: Cents,
        currency: String,
        stripe_event_id: String,
        stripe_created: i64,
    },
    /// A call's billable minutes, metered once per call (`at`: when it ended). The minutes
    /// go to the metering period `at` falls in (the next one when `at` is past the current
    /// period's end and the period is not closed yet).
    RecordUsage {
        call_id: String,
        minutes: i64,
        at: Timestamp,
    },
    /// The safety net: any usage threshold crossed in the current period and not yet
    /// announced is announced now.
    CheckThresholds { at: Timestamp },
    /// The current metering period has ended: its billing cycle may run.
    RequestPeriodClose { period_start: i64, at: Timestamp },
    /// Closes metering period `period_start` (after its end): totals from the state, the
    /// overage priced at `overage_rate_cents` per minute; the next period opens while the
    /// subscription lives.
    ClosePeriod {
        period_start: i64,
        overage_rate_cents: Cents,
        at: Timestamp,
    },
    /// The pending overage report `key` (`usage:{call}` or `close:{period_start}`) was
    /// accepted by Stripe as the meter event `meter_event_identifier`.
    ReportOverage {
        key: String,
        meter_event_identifier: String,
    },
    /// Notifications about this subscription (usage alerts, the period's summary, a failed
    /// payment), requested once per `key`.
    RequestNotifications {
        key: String,
        reason: String,
        notifications: Vec<Notification>,
        at: Timestamp,
    },
}

impl SubscriptionCommand {
    /// `(stripe_event_id, stripe_created)` for Stripe-originated commands.
    pub fn stripe_origin(&self) -> Option<(&str, i64)> {
        use SubscriptionCommand::*;
        match self {
            CompleteCheckout {
                stripe_event_id,
                stripe_created,
                ..
            }
            | SyncSubscription {
                stripe_event_id,
                stripe_created,
                ..
            }
            | Cancel {
                stripe_event_id,
                stripe_created,
            }
            | RecordInvoicePaid {
                stripe_event_id,
                stripe_created,
                ..
            }
            | RecordPaymentFailed {
                stripe_event_id,
                stripe_created,
                ..
            } => Some((stripe_event_id.as_str(), *stripe_created)),
            RecordUsage { .. }
            | CheckThresholds { .. }
            | RequestPeriodClose { .. }
            | ClosePeriod { .. }
            | ReportOverage { .. }
            | RequestNotifications { .. } => None,
        }
    }
}
