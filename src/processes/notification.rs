//! One notification: an SMS (Twilio Messages) or an email (Resend) to one recipient, started
//! by the notifications a call's events carry: during the call (`FunctionCallHandled`: a
//! driver call-out, an urgent message) or after it (`NotificationsRequested`: the post-call
//! summary).
//!
//! Guarantees: an email carries `Idempotency-Key: notification:{id}` on every attempt, so
//! Resend sends it once however often we retry or crash. Twilio's Messages API takes no key:
//! the attempt is recorded before the send, and any attempt after a first one (in doubt after
//! a crash, or failed on a timeout that may have sent) first lists the messages sent to the
//! recipient from our number today and takes an identical one as sent. An SMS is therefore
//! sent twice only if Twilio's list does not yet show a message it accepted.

use std::sync::Arc;

use aggregates::call::{CallEvent, Notification, NotificationChannel};
use aggregates::organization::QuietHours;
use aggregates::process::{Process, RetryPolicy, StepPlan};
use aggregates::subscription::SubscriptionEvent;
use async_trait::async_trait;
use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use eventlog::StoredEvent;
use projections::notifications::NOTIFICATION_KIND;
use projections::DomainEvent;
use serde_json::{json, Value};

use super::{ProcessDefinition, Start, StepContext, StepResult};
use crate::app::{self, Caller};
use crate::providers::resend::{Email, Resend};
use crate::providers::twilio::Twilio;
use crate::state::AppState;

pub struct Notify {
    twilio: Twilio,
    resend: Resend,
}

impl Notify {
    pub fn new(state: &Arc<AppState>) -> Self {
        Notify {
            twilio: Twilio::new(&state.config, state.store.clone()).single_attempt(),
            resend: Resend::new(state.config.resend.clone(), state.store.clone()),
        }
    }
}

fn channel_name(channel: NotificationChannel) -> &'static str {
    match channel {
        NotificationChannel::Sms => "sms",
        NotificationChannel::Email => "email",
    }
}

/// One instance per (event, notification, recipient).
fn starts_for(stored: &StoredEvent, reason: &str, notifications: &[Notification]) -> Vec<Start> {
    let organization_id = stored
        .metadata
        .tenant_id
        .as_deref()
        .and_then(|t| uuid::Uuid::parse_str(t).ok());
    let Some(organization_id) = organization_id else {
        return Vec::new();
    };
    let mut starts = Vec::new();
    for (i, notification) in notifications.iter().enumerate() {
        for (j, recipient) in notification.recipients.iter().enumerate() {
            // A call's notification sends from the number the call came in on; a billing
            // notice (on a subscription) from the organization's first number.
            let call_id = (stored.aggregate_type == "call").then_some(&stored.aggregate_id);
            starts.push(Start::new(
                format!("{}:{i}:{j}", stored.metadata.event_id),
                Some(organization_id),
                json!({
                    "call_id": call_id,
                    "reason": reason,
                    "channel": channel_name(notification.channel),
                    "recipient": recipient,
                    "subject": notification.subject,
                    "body": notification.body,
                }),
            ));
        }
    }
    starts
}

/// When the quiet hours `quiet` end, if `now` is inside them in time zone `tz`.
pub fn quiet_until(
    quiet: &QuietHours,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let parse = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").ok();
    let (start, end) = (parse(&quiet.start)?, parse(&quiet.end)?);
    let local = now.with_timezone(&tz);
    let (time, today) = (local.time(), local.date_naive());
    let day = if start < end {
        (time >= start && time < end).then_some(today)?
    } else if start > end && time >= start {
        today.succ_opt()?
    } else if start > end && time < end {
        today
    } else {
        return None;
    };
    let naive = day.and_time(end);
    // A local time skipped by a DST change is taken an hour later.
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|at| at.with_timezone(&Utc))
}

fn text<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

impl Notify {
    /// Our number the SMS goes out from: the number the call came in on, else the
    /// organization's first live number.
    async fn sender(&self, ctx: &StepContext<'_>, caller: &Caller) -> Result<String, StepResult> {
        if let Some(call_id) = text(ctx.input(), "call_id") {
            let numbered = |call: &aggregates::call::Call| call.to_number.is_some();
            if let Ok(call) = app::calls::owned_settled(ctx.state, caller, call_id, numbered).await
            {
                if let Some(number) = call.to_number.filter(|n| !n.is_empty()) {
                    return Ok(number);
                }
            }
        }
        let organization = app::organizations::load_recent(ctx.state, caller).await?;
        organization
            .phone_numbers
            .values()
            .find(|p| !p.released)
            .map(|p| p.number.clone())
            .ok_or_else(|| StepResult::give_up("the organization has no number to send from"))
    }

    async fn sms(&self, ctx: &StepContext<'_>, caller: &Caller) -> StepResult {
        let input = ctx.input();
        let (Some(to), Some(body)) = (text(input, "recipient"), text(input, "body")) else {
            return StepResult::give_up("the notification has no recipient or body");
        };
        let from = match self.sender(ctx, caller).await {
            Ok(from) => from,
            Err(failed) => return failed,
        };
        let org = caller.organization_id.to_string();
        if ctx.step.attempts > 0 {
            // An earlier attempt may have sent it (crash mid-send, or a timeout).
            // Retries are spaced by minutes to hours: two days back covers every attempt.
            let since = ctx.now - chrono::Duration::days(2);
            match self.twilio.find_message(to, &from, body, since, &org).await {
                Ok(Some(found)) => {
                    return StepResult::Succeeded(json!({
                        "provider_message_id": found.sid,
                        "found_after_doubt": true,
                    }))
                }
                Ok(None) => {}
                Err(err) => return StepResult::from_provider(err),
            }
        }
        match self.twilio.send_sms(to, &from, body, &org).await {
            Ok(message) => StepResult::Succeeded(json!({
                "provider_message_id": message.sid,
                "sandbox": message.sandbox,
            })),
            Err(err) => StepResult::from_provider(err),
        }
    }

    async fn email(&self, ctx: &StepContext<'_>) -> StepResult {
        let input = ctx.input();
        let (Some(to), Some(body)) = (text(input, "recipient"), text(input, "body")) else {
            return StepResult::give_up("the notification has no recipient or body");
        };
        let email = Email {
            from: crate::http::accounts::EMAIL_FROM.to_string(),
            to: vec![to.to_string()],
            subject: text(input, "subject")
                .unwrap_or("CallFlex notification")
                .to_string(),
            text: body.to_string(),
            html: None,
            idempotency_key: Some(format!("notification:{}", ctx.process.subject)),
        };
        match self.resend.send(&email).await {
            Ok(id) => StepResult::Succeeded(json!({
                "provider_message_id": id,
                "sandbox": self.resend.client().sandbox(),
            })),
            Err(err) => StepResult::from_provider(err),
        }
    }
}

#[async_trait]
impl ProcessDefinition for Notify {
    fn kind(&self) -> &'static str {
        NOTIFICATION_KIND
    }

    fn consumer(&self) -> &'static str {
        "process:notification"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        match event {
            DomainEvent::Call(CallEvent::FunctionCallHandled { invocation }) => {
                !invocation.notifications.is_empty()
            }
            DomainEvent::Call(CallEvent::NotificationsRequested { .. })
            | DomainEvent::Subscription(SubscriptionEvent::NotificationsRequested { .. }) => true,
            _ => false,
        }
    }

    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start> {
        match event {
            DomainEvent::Call(CallEvent::FunctionCallHandled { invocation }) => starts_for(
                stored,
                &format!("function:{}", invocation.name),
                &invocation.notifications,
            ),
            DomainEvent::Call(CallEvent::NotificationsRequested {
                reason,
                notifications,
                ..
            }) => starts_for(stored, reason, notifications),
            DomainEvent::Subscription(SubscriptionEvent::NotificationsRequested {
                reason,
                notifications,
                ..
            }) => starts_for(stored, reason, notifications),
            _ => Vec::new(),
        }
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        vec![StepPlan::new(
            "send",
            RetryPolicy {
                max_attempts: 5,
                first_backoff_ms,
                factor: 2,
                timeout_ms: 30_000,
                ..RetryPolicy::default()
            },
        )]
    }

    fn records_attempts(&self, process: &Process, _step: &str) -> bool {
        text(&process.input, "channel") == Some("sms")
    }

    /// A summary waits for the end of the organization's quiet hours; an urgent message or a
    /// driver call-out does not.
    async fn postpone(&self, ctx: &StepContext<'_>) -> Option<StepResult> {
        if text(ctx.input(), "reason") != Some("post_call_summary") {
            return None;
        }
        let caller = ctx.caller()?;
        let organization = match app::organizations::load_recent(ctx.state, &caller).await {
            Ok(organization) => organization,
            Err(err) => return Some(err.into()),
        };
        let settings = &organization.settings;
        let quiet = settings.notifications.quiet_hours.as_ref()?;
        let tz = settings
            .timezone
            .as_deref()
            .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
            .unwrap_or(chrono_tz::UTC);
        let until = quiet_until(quiet, tz, ctx.now)?;
        Some(StepResult::Postponed {
            until,
            reason: format!("quiet hours until {} ({tz})", quiet.end),
        })
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the notification has no organization");
        };
        match text(ctx.input(), "channel") {
            Some("sms") => self.sms(&ctx, &caller).await,
            Some("email") => self.email(&ctx).await,
            other => StepResult::give_up(format!("unknown channel {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(start: &str, end: &str) -> QuietHours {
        QuietHours {
            start: start.into(),
            end: end.into(),
        }
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn overnight_quiet_hours_end_the_next_local_morning() {
        let denver: chrono_tz::Tz = "America/Denver".parse().unwrap();
        let night = quiet("22:00", "07:00");
        // 23:30 in Denver (MST, UTC-7) on 15 January → 07:00 on the 16th = 14:00 UTC.
        assert_eq!(
            quiet_until(&night, denver, at("2025-01-16T06:30:00Z")),
            Some(at("2025-01-16T14:00:00Z"))
        );
        // 06:59 local → 07:00 the same day.
        assert_eq!(
            quiet_until(&night, denver, at("2025-01-16T13:59:00Z")),
            Some(at("2025-01-16T14:00:00Z"))
        );
        // 07:00 and noon are not quiet.
        assert_eq!(
            quiet_until(&night, denver, at("2025-01-16T14:00:00Z")),
            None
        );
        assert_eq!(
            quiet_until(&night, denver, at("2025-01-16T19:00:00Z")),
            None
        );
    }

    #[test]
    fn daytime_windows_empty_windows_and_bad_times() {
        let utc = chrono_tz::UTC;
        let lunch = quiet("12:00", "13:00");
        assert_eq!(
            quiet_until(&lunch, utc, at("2025-01-16T12:30:00Z")),
            Some(at("2025-01-16T13:00:00Z"))
        );
        assert_eq!(quiet_until(&lunch, utc, at("2025-01-16T13:30:00Z")), None);
        assert_eq!(
            quiet_until(&quiet("09:00", "09:00"), utc, at("2025-01-16T09:00:00Z")),
            None
        );
        assert_eq!(
            quiet_until(&quiet("25:00", "07:00"), utc, at("2025-01-16T09:00:00Z")),
            None
        );
    }

    #[test]
    fn a_quiet_end_skipped_by_daylight_saving_is_taken_an_hour_later() {
        // 9 March 2025: Denver skips 02:00-03:00.
        let denver: chrono_tz::Tz = "America/Denver".parse().unwrap();
        let until = quiet_until(&quiet("23:00", "02:30"), denver, at("2025-03-09T08:00:00Z"));
        assert_eq!(until, Some(at("2025-03-09T09:30:00Z")));
    }
}
