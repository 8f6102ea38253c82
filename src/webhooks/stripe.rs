//! Stripe events → subscription events. Redeliveries (same event id) record nothing new; the
//! Subscription aggregate ignores updates older than the state it already has.

use aggregates::subscription::{SubscriptionCommand, SubscriptionStatus};
use chrono::Utc;
use eventlog::{CommandMeta, ExecuteError};
use uuid::Uuid;
use wire::{StripeChange, StripeEvent};

use super::deliveries::Delivery;
use super::Outcome;
use crate::app::AppError;
use crate::plans::Plans;
use crate::state::AppState;

fn status(name: &str) -> Option<SubscriptionStatus> {
    Some(match name {
        "incomplete" => SubscriptionStatus::Incomplete,
        "incomplete_expired" => SubscriptionStatus::IncompleteExpired,
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "canceled" => SubscriptionStatus::Canceled,
        "unpaid" => SubscriptionStatus::Unpaid,
        "paused" => SubscriptionStatus::Paused,
        _ => return None,
    })
}

fn org_uuid(value: &Option<String>) -> Option<Uuid> {
    value.as_deref().and_then(|v| Uuid::parse_str(v).ok())
}

/// The command an event maps to, with the subscription it addresses; `None` when the event
/// concerns nothing we bill (e.g. a one-off checkout). The plan (and its included minutes)
/// is the catalogue's plan for the subscription's price, else for its `plan` metadata.
fn command(event: &StripeEvent, plans: &Plans) -> Option<(String, SubscriptionCommand)> {
    let stripe_event_id = event.id.clone();
    let stripe_created = event.created;
    match &event.change {
        StripeChange::CheckoutCompleted {
            session_id,
            customer_id,
            subscription_id,
            organization_id,
            plan,
        } => {
            let subscription_id = subscription_id.clone()?;
            Some((
                subscription_id.clone(),
                SubscriptionCommand::CompleteCheckout {
                    organization_id: org_uuid(organization_id)?,
                    customer_id: customer_id.clone().unwrap_or_default(),
                    subscription_id,
                    plan: plan.clone(),
                    checkout_session_id: session_id.clone(),
                    stripe_event_id,
                    stripe_created,
                },
            ))
        }
        StripeChange::SubscriptionChanged {
            subscription_id,
            deleted: true,
            ..
        } => Some((
            subscription_id.clone(),
            SubscriptionCommand::Cancel {
                stripe_event_id,
                stripe_created,
            },
        )),
        StripeChange::SubscriptionChanged {
            subscription_id,
            customer_id,
            status: status_name,
            organization_id,
            price_id,
            plan,
            subscription_item_id,
            current_period_start,
            current_period_end,
            cancel_at_period_end,
            deleted: false,
        } => {
            let known = plans.resolve(price_id.as_deref(), plan.as_deref());
            if known.is_none() {
                tracing::warn!(subscription = %subscription_id, price = ?price_id,
                    "a subscription on a price no configured plan names: its minutes are unknown");
            }
            Some((
                subscription_id.clone(),
                SubscriptionCommand::SyncSubscription {
                    organization_id: org_uuid(organization_id),
                    customer_id: customer_id.clone(),
                    status: status(status_name)?,
                    plan: known.map(|p| p.id.clone()).or_else(|| plan.clone()),
                    price_id: price_id.clone(),
                    subscription_item_id: subscription_item_id.clone(),
                    included_minutes: known.map(|p| p.included_minutes),
                    current_period_start: *current_period_start,
                    current_period_end: *current_period_end,
                    cancel_at_period_end: *cancel_at_period_end,
                    stripe_event_id,
                    stripe_created,
                },
            ))
        }
        StripeChange::InvoicePaid(invoice) => Some((
            invoice.subscription_id.clone()?,
            SubscriptionCommand::RecordInvoicePaid {
                invoice_id: invoice.id.clone(),
                amount_paid_cents: invoice.amount_paid,
                currency: invoice.currency.clone(),
                period_start: invoice.period_start.unwrap_or_default(),
                period_end: invoice.period_end.unwrap_or_default(),
                hosted_invoice_url: invoice.hosted_invoice_url.clone(),
                stripe_event_id,
                stripe_created,
            },
        )),
        StripeChange::InvoicePaymentFailed(invoice) => Some((
            invoice.subscription_id.clone()?,
            SubscriptionCommand::RecordPaymentFailed {
                invoice_id: invoice.id.clone(),
                amount_due_cents: invoice.amount_due,
                currency: invoice.currency.clone(),
                stripe_event_id,
                stripe_created,
            },
        )),
        StripeChange::Other => None,
    }
}

/// Handles `POST /api/webhooks/stripe`.
pub async fn ingest(
    state: &AppState,
    signature: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    let Some(secret) = state.config.stripe_webhook_secret.as_ref() else {
        return Err(AppError::bad_request(
            "webhook_auth_not_configured",
            "STRIPE_WEBHOOK_SECRET is not configured; Stripe events cannot be verified",
        ));
    };
    wire::signature::stripe(
        secret.expose(),
        signature,
        body,
        Utc::now().timestamp(),
        state.config.signature_tolerance_secs,
    )
    .map_err(|err| {
        AppError::bad_request(
            "invalid_signature",
            format!("Stripe signature check failed: {err}"),
        )
    })?;
    accept(state, content_type, body).await
}

/// The event after its signature check (a stored one replayed by `callflex redeliver`
/// enters here).
pub async fn accept(
    state: &AppState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    let event = wire::parse_stripe_event(body)
        .map_err(|err| AppError::bad_request("invalid_payload", err.to_string()))?;
    if let Some(previous) = state.ledger.find("stripe", &event.id).await? {
        return Ok(previous);
    }
    let mut outcome = Outcome::ok(serde_json::json!({ "received": true }));
    let mut organization_id = None;
    if let Some((subscription_id, cmd)) = command(&event, &state.config.plans) {
        let mut meta = CommandMeta::new(format!("provider:stripe:{}", event.id))
            .idempotency_key(format!("stripe:{}", event.id));
        // The subscription's events belong to its organization (the billing processes and
        // the audit read them by tenant): named by the event, else known from the checkout.
        let named = match &cmd {
            SubscriptionCommand::CompleteCheckout {
                organization_id, ..
            } => Some(*organization_id),
            SubscriptionCommand::SyncSubscription {
                organization_id, ..
            } => *organization_id,
            _ => None,
        };
        let tenant = match named {
            Some(org) => Some(org),
            None => {
                state
                    .subscriptions
                    .load(&subscription_id)
                    .await?
                    .0
                    .organization_id
            }
        };
        if let Some(org) = tenant {
            meta = meta.tenant(org);
        }
        match state
            .subscriptions
            .execute(&subscription_id, cmd, &meta)
            .await
        {
            Ok(executed) => {
                outcome.record(&executed.result);
                organization_id = executed.state.organization_id.map(|o| o.to_string());
            }
            Err(ExecuteError::Domain(err)) => {
                return Err(AppError::unprocessable(err.code(), err.to_string()))
            }
            Err(ExecuteError::Store(err)) => return Err(err.into()),
        }
    } else {
        outcome.body = serde_json::json!({ "received": true, "ignored": event.event_type });
    }
    let outcome = outcome.with_position();
    state
        .ledger
        .record(
            Delivery {
                provider: "stripe",
                key: &event.id,
                organization_id,
                message_type: Some(event.event_type.clone()),
                content_type,
                body,
            },
            &outcome,
        )
        .await?;
    Ok(outcome)
}
