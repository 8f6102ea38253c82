//! Billing use cases: the organization's Stripe customer, Checkout and Billing Portal
//! sessions, and what the billing processes do to a subscription (meter a call, report
//! overage, request and close a period, ask for a notice). HTTP and processes call these.

use aggregates::call::{Notification, NotificationChannel};
use aggregates::organization::{MemberStatus, Organization, OrganizationCommand, Role};
use aggregates::subscription::{Subscription, SubscriptionCommand};
use eventlog::{CommandMeta, Executed};

use super::{organizations, AppError, Caller};
use crate::plans::Plan;
use crate::providers::stripe::{Checkout, Stripe};
use crate::state::AppState;

/// A Stripe-hosted page to send the customer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub url: String,
    /// True when nothing was sent to Stripe (no `STRIPE_SECRET_KEY`).
    pub sandbox: bool,
}

pub fn stripe(state: &AppState) -> Stripe {
    Stripe::new(
        state.config.stripe.clone(),
        state.store.clone(),
        &state.config.public_url,
    )
}

/// The addresses of the organization's active members with one of `roles`.
pub fn member_emails(organization: &Organization, roles: &[Role]) -> Vec<String> {
    let mut out: Vec<String> = organization
        .members
        .values()
        .filter(|m| m.status == MemberStatus::Active && roles.contains(&m.role))
        .map(|m| m.email.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The organization's Stripe customer, created the first time (with the key
/// `customer:{organization}`, so two callers racing get Stripe's one customer).
pub async fn ensure_customer(
    state: &AppState,
    caller: &Caller,
    stripe: &Stripe,
) -> Result<String, AppError> {
    let organization = organizations::load(state, caller).await?;
    if let Some(id) = organization.billing_customer_id {
        return Ok(id);
    }
    let org = caller.organization_id.to_string();
    let email = member_emails(&organization, &[Role::Owner])
        .into_iter()
        .next()
        .unwrap_or_default();
    let created = stripe
        .create_customer(&org, &email, &organization.name, &format!("customer:{org}"))
        .await?;
    let command = OrganizationCommand::SetBillingCustomer {
        customer_id: created.id.clone(),
        actor: caller.actor.clone(),
    };
    match organizations::execute_as(state, caller, "billing", None, command).await {
        Ok(_) => Ok(created.id),
        // Recorded meanwhile by another caller: theirs stays.
        Err(err) if err.code == "billing_customer_exists" => {
            let organization = organizations::load(state, caller).await?;
            organization
                .billing_customer_id
                .ok_or_else(|| AppError::internal("the billing customer vanished"))
        }
        Err(err) => Err(err),
    }
}

/// Only owners and admins manage billing (an API key may not).
fn require_billing_manager(organization: &Organization, caller: &Caller) -> Result<(), AppError> {
    let allowed = caller
        .actor
        .strip_prefix("user:")
        .and_then(|id| organization.active_member(id))
        .is_some_and(|m| matches!(m.role, Role::Owner | Role::Admin));
    if allowed {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "forbidden",
            "only the organization's owners and admins manage billing",
        ))
    }
}

/// The Stripe idempotency key of a session request: the client's key (a retry answers the
/// same session), else a fresh one.
fn session_key(what: &str, org: &str, client_key: Option<&str>) -> String {
    match client_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => format!("{what}:{org}:{k}"),
        None => format!("{what}:{org}:{}", uuid::Uuid::new_v4()),
    }
}

fn session(created: crate::providers::stripe::Created) -> Result<Session, AppError> {
    let url = created
        .url
        .ok_or_else(|| AppError::internal("Stripe answered a session without a URL"))?;
    Ok(Session {
        id: created.id,
        url,
        sandbox: created.sandbox,
    })
}

/// A Checkout Session subscribing the organization to `plan`. `client_key` (the request's
/// `Idempotency-Key`) makes a retry answer the same session.
pub async fn checkout(
    state: &AppState,
    caller: &Caller,
    plan: &Plan,
    success_url: &str,
    cancel_url: &str,
    client_key: Option<&str>,
) -> Result<Session, AppError> {
    let organization = organizations::load(state, caller).await?;
    require_billing_manager(&organization, caller)?;
    let stripe = stripe(state);
    let customer = ensure_customer(state, caller, &stripe).await?;
    let org = caller.organization_id.to_string();
    let key = session_key("checkout", &org, client_key);
    let created = stripe
        .create_checkout(
            &Checkout {
                customer_id: &customer,
                price_id: &plan.stripe_price_id,
                plan_id: &plan.id,
                organization_id: &org,
                success_url,
                cancel_url,
            },
            &key,
        )
        .await?;
    session(created)
}

/// A Billing Portal session for the organization's customer.
pub async fn portal(
    state: &AppState,
    caller: &Caller,
    return_url: &str,
    client_key: Option<&str>,
) -> Result<Session, AppError> {
    let organization = organizations::load(state, caller).await?;
    require_billing_manager(&organization, caller)?;
    let stripe = stripe(state);
    let customer = ensure_customer(state, caller, &stripe).await?;
    let org = caller.organization_id.to_string();
    let key = session_key("portal", &org, client_key);
    let created = stripe
        .create_portal(&customer, return_url, &org, &key)
        .await?;
    session(created)
}

/// Runs a metering command on `subscription_id` as a process of the caller's organization.
/// `key` makes a retried step's command a no-op.
pub async fn execute(
    state: &AppState,
    caller: &Caller,
    subscription_id: &str,
    command: SubscriptionCommand,
    key: &str,
) -> Result<Executed<Subscription>, AppError> {
    let meta = CommandMeta::new(caller.actor.clone())
        .tenant(caller.organization_id)
        .idempotency_key(key.to_string());
    Ok(state
        .subscriptions
        .execute(subscription_id, command, &meta)
        .await?)
}

pub async fn load(state: &AppState, subscription_id: &str) -> Result<Subscription, AppError> {
    let (subscription, version) = state.subscriptions.load(subscription_id).await?;
    if version == 0 {
        return Err(AppError::not_found(
            "subscription_not_found",
            "no such subscription",
        ));
    }
    Ok(subscription)
}

/// An email to each address (one notification, several recipients) and, when `sms` is
/// given, an SMS to each of those numbers.
pub fn notices(
    emails: Vec<String>,
    sms: Vec<String>,
    subject: &str,
    body: &str,
) -> Vec<Notification> {
    let mut out = Vec::new();
    if !emails.is_empty() {
        out.push(Notification {
            channel: NotificationChannel::Email,
            recipients: emails,
            subject: Some(subject.to_string()),
            body: body.to_string(),
        });
    }
    if !sms.is_empty() {
        out.push(Notification {
            channel: NotificationChannel::Sms,
            recipients: sms,
            subject: None,
            body: format!("CallFlex: {subject}"),
        });
    }
    out
}

/// Dollars and cents of an amount in cents.
pub fn money(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, (cents % 100).abs())
}
