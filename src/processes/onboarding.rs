//! Customer onboarding (the seed's Workflow 4), one instance per organization, started by
//! `OnboardingRequested`: create the assistant from the template → sync it to VAPI → buy a
//! number in the area code (imported into VAPI answered by the assistant) → check the
//! number is linked → create the Stripe customer → send the welcome email with the number.
//!
//! Every step reuses a use case and is idempotent, so a crash anywhere resumes without
//! doubling anything: the assistant and the purchase have ids derived from the organization
//! (a second create or buy finds the first); a sync or purchase a crash left "in progress"
//! is waited for (`Postponed`) until it may be taken over, and the take-over looks in VAPI
//! or Twilio before creating or buying again; the Stripe customer and the welcome email
//! carry idempotency keys. A step that gives up skips the steps that need it; `POST
//! /onboarding/retry` reopens them.

use std::sync::Arc;

use aggregates::organization::{OrganizationEvent, PurchaseStatus};
use aggregates::process::{RetryPolicy, StepPlan};
use async_trait::async_trait;
use chrono::Duration;
use eventlog::StoredEvent;
use projections::DomainEvent;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{ProcessDefinition, Start, StepContext, StepResult};
use crate::app::{self, AppError, Caller};
use crate::providers::resend::{Email, Resend};
use crate::state::AppState;

pub const KIND: &str = "onboarding";

/// The steps, in order (each needs the one before).
pub const STEPS: [&str; 6] = [
    "creating_assistant",
    "syncing_assistant",
    "provisioning_number",
    "linking_number",
    "setting_up_billing",
    "sending_welcome",
];

/// The assistant onboarding creates for `organization`.
pub fn assistant_id(organization: Uuid) -> String {
    Uuid::new_v5(&organization, b"onboarding:assistant").to_string()
}

/// The purchase (and phone number) id onboarding buys for `organization`.
pub fn number_id(organization: Uuid) -> String {
    Uuid::new_v5(&organization, b"onboarding:number").to_string()
}

pub struct Onboarding {
    resend: Resend,
}

impl Onboarding {
    pub fn new(state: &Arc<AppState>) -> Self {
        Onboarding {
            resend: Resend::new(state.config.resend.clone(), state.store.clone()),
        }
    }
}

fn text(input: &Value, key: &str) -> Option<String> {
    input.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A use case's refusal because a crashed run still holds the resource: wait until it may
/// be taken over.
fn wait_or_fail(err: AppError, until: Option<chrono::DateTime<chrono::Utc>>) -> StepResult {
    match until {
        Some(until) => StepResult::Postponed {
            until,
            reason: format!("{}: waiting until it may be taken over", err.code),
        },
        None => err.into(),
    }
}

impl Onboarding {
    async fn create_assistant(&self, ctx: &StepContext<'_>, caller: &Caller) -> StepResult {
        let input = ctx.input();
        let id = assistant_id(caller.organization_id);
        let org = match app::organizations::load(ctx.state, caller).await {
            Ok(org) => org,
            Err(err) => return err.into(),
        };
        if org.assistants.contains_key(&id) {
            return StepResult::Succeeded(json!({ "assistant_id": id }));
        }
        let business = text(input, "business_name").unwrap_or_default();
        let mut variables: std::collections::BTreeMap<String, String> = input
            .get("variables")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        variables
            .entry("company_name".into())
            .or_insert_with(|| business.clone());
        let new = app::assistants::NewAssistant {
            id: id.clone(),
            name: format!("{business} receptionist"),
            template_slug: text(input, "template_slug"),
            variables,
            ..Default::default()
        };
        match app::assistants::create(ctx.state, caller, new, Some("onboarding")).await {
            Ok(_) => StepResult::Succeeded(json!({ "assistant_id": id })),
            Err(err) => err.into(),
        }
    }

    async fn sync_assistant(&self, ctx: &StepContext<'_>, caller: &Caller) -> StepResult {
        let id = assistant_id(caller.organization_id);
        let org = match app::organizations::load(ctx.state, caller).await {
            Ok(org) => org,
            Err(err) => return err.into(),
        };
        if let Some(vapi_id) = org
            .live_assistant(&id)
            .filter(|a| !a.needs_sync)
            .and_then(|a| a.vapi_assistant_id.clone())
        {
            return StepResult::Succeeded(json!({ "vapi_assistant_id": vapi_id }));
        }
        match app::assistants::sync(ctx.state, caller, &id).await {
            Ok(done) => StepResult::Succeeded(json!({
                "vapi_assistant_id": done.vapi_assistant_id,
                "sandbox": done.sandbox,
            })),
            Err(err) if err.code == "sync_in_progress" => {
                let timeout = ctx.state.config.provisioning_timeout_secs;
                let until = org
                    .live_assistant(&id)
                    .and_then(|a| a.sync_in_progress.as_ref())
                    .map(|claim| claim.started_at + Duration::seconds(timeout))
                    .or_else(|| Some(ctx.now + Duration::seconds(timeout)));
                wait_or_fail(err, until)
            }
            Err(err) => err.into(),
        }
    }

    async fn provision_number(&self, ctx: &StepContext<'_>, caller: &Caller) -> StepResult {
        let org = caller.organization_id;
        let purchase = app::phone_numbers::Purchase {
            id: number_id(org),
            number: None,
            area_code: Some(text(ctx.input(), "area_code").unwrap_or_else(|| "415".into())),
            assistant_id: Some(assistant_id(org)),
            friendly_name: text(ctx.input(), "business_name").map(|b| b.chars().take(64).collect()),
        };
        match app::phone_numbers::buy(ctx.state, caller, purchase).await {
            Ok(bought) => StepResult::Succeeded(json!({
                "phone_number_id": number_id(org),
                "phone_number": bought.number.number,
                "sandbox": bought.sandbox,
            })),
            Err(err) if err.code == "purchase_in_progress" => {
                let left = err
                    .details
                    .as_ref()
                    .and_then(|d| d["retry_after_seconds"].as_i64())
                    .unwrap_or(ctx.state.config.provisioning_timeout_secs);
                wait_or_fail(err, Some(ctx.now + Duration::seconds(left)))
            }
            Err(err) => err.into(),
        }
    }

    async fn check_link(&self, ctx: &StepContext<'_>, caller: &Caller) -> StepResult {
        let org = match app::organizations::load(ctx.state, caller).await {
            Ok(org) => org,
            Err(err) => return err.into(),
        };
        let (assistant, number) = (
            assistant_id(caller.organization_id),
            number_id(caller.organization_id),
        );
        let Some(phone) = org.phone_numbers.get(&number).filter(|p| !p.released) else {
            // Released meanwhile: the purchase must run again (a retry reopens it).
            let failed = org
                .purchases
                .get(&number)
                .is_some_and(|p| p.status == PurchaseStatus::Failed);
            return StepResult::give_up(if failed {
                "the number purchase failed"
            } else {
                "the onboarding number is gone"
            });
        };
        match (&phone.vapi_phone_number_id, &phone.assistant_id) {
            (Some(vapi_number), Some(linked)) if *linked == assistant => {
                StepResult::Succeeded(json!({
                    "vapi_phone_number_id": vapi_number,
                    "assistant_id": assistant,
                }))
            }
            _ => {
                StepResult::give_up("the number is not linked to the onboarding assistant in VAPI")
            }
        }
    }

    async fn welcome(&self, ctx: &StepContext<'_>, caller: &Caller) -> StepResult {
        let (Some(to), Some(business)) = (
            text(ctx.input(), "email"),
            text(ctx.input(), "business_name"),
        ) else {
            return StepResult::give_up("the onboarding has no email address");
        };
        let number = ctx
            .output_of("provisioning_number")
            .and_then(|o| o["phone_number"].as_str())
            .unwrap_or("your new number")
            .to_string();
        let email = Email {
            from: crate::http::accounts::EMAIL_FROM.to_string(),
            to: vec![to],
            subject: format!("Welcome to CallFlex, {business}"),
            text: format!(
                "Your AI receptionist for {business} is live.\n\nCalls to {number} are answered \
                 now. Forward your business line to it, or give it out as is. Messages, \
                 callbacks and driver call-outs it takes show in your dashboard and reach you \
                 by email and SMS as you choose in the settings.\n\nTry it: call {number}."
            ),
            html: None,
            idempotency_key: Some(format!("onboarding-welcome:{}", caller.organization_id)),
        };
        match self.resend.send(&email).await {
            Ok(id) => StepResult::Succeeded(json!({ "email_id": id, "phone_number": number })),
            Err(err) => StepResult::from_provider(err),
        }
    }
}

#[async_trait]
impl ProcessDefinition for Onboarding {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:onboarding"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Organization(OrganizationEvent::OnboardingRequested { .. })
        )
    }

    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start> {
        let DomainEvent::Organization(OrganizationEvent::OnboardingRequested {
            business_name,
            template_slug,
            variables,
            area_code,
            email,
            ..
        }) = event
        else {
            return Vec::new();
        };
        let Ok(organization) = Uuid::parse_str(&stored.aggregate_id) else {
            return Vec::new();
        };
        vec![Start::new(
            stored.aggregate_id.clone(),
            Some(organization),
            json!({
                "business_name": business_name,
                "template_slug": template_slug,
                "variables": variables,
                "area_code": area_code,
                "email": email,
            }),
        )]
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        // The seed's onboarding: 2 minutes per attempt, 3 attempts.
        let policy = RetryPolicy {
            max_attempts: 3,
            first_backoff_ms,
            factor: 2,
            timeout_ms: 120_000,
            ..RetryPolicy::default()
        };
        let mut steps = Vec::new();
        for (i, name) in STEPS.iter().enumerate() {
            let step = StepPlan::new(name, policy.clone());
            steps.push(match i {
                0 => step,
                _ => step.needs(&[STEPS[i - 1]]),
            });
        }
        steps
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the onboarding has no organization");
        };
        match ctx.step.plan.name.as_str() {
            "creating_assistant" => self.create_assistant(&ctx, &caller).await,
            "syncing_assistant" => self.sync_assistant(&ctx, &caller).await,
            "provisioning_number" => self.provision_number(&ctx, &caller).await,
            "linking_number" => self.check_link(&ctx, &caller).await,
            "setting_up_billing" => {
                let stripe = app::billing::stripe(ctx.state);
                match app::billing::ensure_customer(ctx.state, &caller, &stripe).await {
                    Ok(customer) => StepResult::Succeeded(json!({ "customer_id": customer })),
                    Err(err) => err.into(),
                }
            }
            "sending_welcome" => self.welcome(&ctx, &caller).await,
            other => StepResult::give_up(format!("unknown step {other}")),
        }
    }
}
