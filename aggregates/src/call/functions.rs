//! The seed's four assistant functions (`transferCall`, `logDriverCallout`,
//! `scheduleCallback`, `takeMessage`) as a pure decision: given the
//! arguments VAPI sent and the organization's settings, what action is
//! recorded, what the assistant says next, and which notifications go out.

use serde_json::{Map, Value};

use super::command::{CallAction, Notification, NotificationChannel};
use crate::organization::OrganizationSettings;

/// What running one function decided.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionOutcome {
    pub action: CallAction,
    /// What the assistant says next (VAPI's `result`).
    pub reply: String,
    pub notifications: Vec<Notification>,
}

fn text(args: &Map<String, Value>, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A yes/no argument. Models write it as a boolean, a number or a word ("true", "yes"); a
/// missed urgent flag costs a missed SMS, so every affirmative spelling counts.
fn flag(args: &Map<String, Value>, key: &str) -> bool {
    match args.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "y"
        ),
        _ => false,
    }
}

fn sms(settings: &OrganizationSettings, body: String) -> Vec<Notification> {
    let sms = &settings.notifications;
    if sms.sms_enabled && !sms.sms_numbers.is_empty() {
        vec![Notification {
            channel: NotificationChannel::Sms,
            recipients: sms.sms_numbers.clone(),
            subject: None,
            body,
        }]
    } else {
        Vec::new()
    }
}

fn missing(name: &str, what: &str) -> FunctionOutcome {
    FunctionOutcome {
        action: CallAction::Unknown {
            name: name.to_string(),
        },
        reply: format!("I'm sorry, I still need {what} before I can do that."),
        notifications: Vec::new(),
    }
}

/// Runs function `name` (names match case-insensitively, with or without `_`).
pub fn decide(
    name: &str,
    args: &Map<String, Value>,
    settings: &OrganizationSettings,
) -> FunctionOutcome {
    let normalized: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    match normalized.as_str() {
        "transfercall" => transfer_call(args, settings),
        "logdrivercallout" => log_driver_callout(args, settings),
        "schedulecallback" => schedule_callback(args),
        "takemessage" => take_message(args, settings),
        _ => FunctionOutcome {
            action: CallAction::Unknown {
                name: name.to_string(),
            },
            reply: "Sorry, I can't do that on this line.".to_string(),
            notifications: Vec::new(),
        },
    }
}

fn transfer_call(args: &Map<String, Value>, settings: &OrganizationSettings) -> FunctionOutcome {
    let destination = text(args, "destination").unwrap_or_else(|| "dispatch".to_string());
    let reason = text(args, "reason").unwrap_or_default();
    let warm = flag(args, "warm");
    let numbers = &settings.transfer_numbers;
    let number = match destination.to_ascii_lowercase().as_str() {
        "dispatch" => numbers.dispatch.clone(),
        "manager" => numbers.manager.clone(),
        "emergency" => numbers.emergency.clone(),
        _ => None,
    }
    .filter(|n| !n.trim().is_empty());
    let reply = match &number {
        Some(_) => format!("I'm transferring you to {destination} now. Please hold."),
        None => format!(
            "Sorry, I don't have a {destination} number configured. Let me take a message instead."
        ),
    };
    FunctionOutcome {
        action: CallAction::Transfer {
            completed: number.is_some(),
            destination,
            phone_number: number,
            reason,
            warm,
        },
        reply,
        notifications: Vec::new(),
    }
}

fn log_driver_callout(
    args: &Map<String, Value>,
    settings: &OrganizationSettings,
) -> FunctionOutcome {
    let (Some(driver_name), Some(reason)) = (text(args, "driverName"), text(args, "reason")) else {
        return missing("logDriverCallout", "the driver's name and the reason");
    };
    let route_number = text(args, "routeNumber");
    let expected_return = text(args, "expectedReturn");
    let additional_notes = text(args, "additionalNotes");
    let mut body = format!("🚨 DRIVER CALLOUT\nDriver: {driver_name}\nReason: {reason}\n");
    if let Some(route) = &route_number {
        body.push_str(&format!("Route: {route}\n"));
    }
    if let Some(back) = &expected_return {
        body.push_str(&format!("Return: {back}\n"));
    }
    if let Some(notes) = &additional_notes {
        body.push_str(&format!("Notes: {notes}"));
    }
    let reply = format!(
        "Got it, {driver_name}. I've logged your call-out ({reason}) and notified dispatch. Take \
         care and we'll see you {}.",
        expected_return
            .clone()
            .unwrap_or_else(|| "when you're feeling better".to_string())
    );
    FunctionOutcome {
        notifications: sms(settings, body),
        action: CallAction::DriverCallout {
            driver_name,
            reason,
            route_number,
            expected_return,
            additional_notes,
        },
        reply,
    }
}

fn schedule_callback(args: &Map<String, Value>) -> FunctionOutcome {
    let (Some(phone_number), Some(reason)) = (text(args, "phoneNumber"), text(args, "reason"))
    else {
        return missing(
            "scheduleCallback",
            "a phone number and what the call is about",
        );
    };
    let preferred_time = text(args, "preferredTime");
    let urgency = match text(args, "urgency").as_deref() {
        Some("low") => "low",
        Some("high") => "high",
        _ => "normal",
    };
    let when = match &preferred_time {
        Some(time) => format!("around {time}"),
        None => "as soon as possible".to_string(),
    };
    FunctionOutcome {
        reply: format!(
            "Perfect, I've scheduled a callback for you. Someone will call you at {phone_number} \
             {when}."
        ),
        action: CallAction::CallbackScheduled {
            phone_number,
            caller_name: text(args, "callerName"),
            reason,
            preferred_time,
            urgency: urgency.to_string(),
        },
        notifications: Vec::new(),
    }
}

fn take_message(args: &Map<String, Value>, settings: &OrganizationSettings) -> FunctionOutcome {
    let Some(message) = text(args, "message") else {
        return missing("takeMessage", "the message");
    };
    let caller_name = text(args, "callerName");
    let caller_phone = text(args, "callerPhone");
    let message_for = text(args, "messageFor");
    let urgent = flag(args, "urgent");
    let notifications = if urgent {
        let mut body = "⚠️ URGENT MESSAGE\n".to_string();
        if let Some(name) = &caller_name {
            body.push_str(&format!("From: {name}\n"));
        }
        if let Some(phone) = &caller_phone {
            body.push_str(&format!("Phone: {phone}\n"));
        }
        body.push_str(&format!("Message: {message}"));
        sms(settings, body)
    } else {
        Vec::new()
    };
    let reply = format!(
        "I've taken your message{}. Someone will get back to you soon.",
        message_for
            .as_ref()
            .map(|who| format!(" for {who}"))
            .unwrap_or_default()
    );
    FunctionOutcome {
        action: CallAction::MessageTaken {
            caller_name,
            caller_phone,
            message_for,
            message,
            urgent,
        },
        reply,
        notifications,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::organization::{NotificationSettings, TransferNumbers};

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn settings() -> OrganizationSettings {
        OrganizationSettings {
            notifications: NotificationSettings {
                sms_enabled: true,
                sms_numbers: vec!["+15550001111".into()],
                ..Default::default()
            },
            transfer_numbers: TransferNumbers {
                dispatch: Some("+15550002222".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn every_affirmative_spelling_of_a_flag_counts() {
        for yes in [
            json!(true),
            json!("true"),
            json!(" Yes "),
            json!("y"),
            json!("1"),
            json!(1),
        ] {
            assert!(flag(&args(json!({"urgent": yes})), "urgent"), "{yes}");
        }
        for no in [
            json!(false),
            json!("no"),
            json!("maybe"),
            json!(0),
            json!(null),
            json!([]),
        ] {
            assert!(!flag(&args(json!({"urgent": no})), "urgent"), "{no}");
        }
        assert!(!flag(&args(json!({})), "urgent"));
    }

    #[test]
    fn a_transfer_to_a_configured_destination_is_completed() {
        let out = decide(
            "transferCall",
            &args(json!({"destination": "dispatch", "reason": "load question"})),
            &settings(),
        );
        assert_eq!(
            out.reply,
            "I'm transferring you to dispatch now. Please hold."
        );
        assert!(matches!(
            out.action,
            CallAction::Transfer { completed: true, ref phone_number, .. }
                if phone_number.as_deref() == Some("+15550002222")
        ));
    }

    #[test]
    fn a_transfer_to_an_unconfigured_destination_offers_to_take_a_message() {
        let out = decide(
            "transferCall",
            &args(json!({"destination": "manager", "reason": "x"})),
            &settings(),
        );
        assert_eq!(
            out.reply,
            "Sorry, I don't have a manager number configured. Let me take a message instead."
        );
        assert!(matches!(
            out.action,
            CallAction::Transfer {
                completed: false,
                ..
            }
        ));
    }

    #[test]
    fn a_driver_callout_is_logged_and_dispatch_is_texted() {
        let out = decide(
            "logDriverCallout",
            &args(
                json!({"driverName": "Sam", "reason": "sick", "routeNumber": "12",
                         "expectedReturn": "Monday"}),
            ),
            &settings(),
        );
        assert_eq!(
            out.reply,
            "Got it, Sam. I've logged your call-out (sick) and notified dispatch. Take care and we'll see \
             you Monday."
        );
        assert_eq!(out.notifications.len(), 1);
        assert!(out.notifications[0]
            .body
            .starts_with("🚨 DRIVER CALLOUT\nDriver: Sam\n"));
        assert!(out.notifications[0].body.contains("Route: 12\n"));
    }

    #[test]
    fn no_text_goes_out_when_sms_notifications_are_disabled() {
        let mut quiet = settings();
        quiet.notifications.sms_enabled = false;
        let out = decide(
            "logDriverCallout",
            &args(json!({"driverName": "Sam", "reason": "sick"})),
            &quiet,
        );
        assert!(out.notifications.is_empty());
        assert!(out
            .reply
            .ends_with("we'll see you when you're feeling better."));
    }

    #[test]
    fn a_callback_reply_names_the_number_and_time() {
        let out = decide(
            "scheduleCallback",
            &args(json!({"phoneNumber": "+15551234567", "reason": "quote",
                         "preferredTime": "3pm", "urgency": "high"})),
            &settings(),
        );
        assert_eq!(
            out.reply,
            "Perfect, I've scheduled a callback for you. Someone will call you at +15551234567 \
             around 3pm."
        );
        assert!(
            matches!(out.action, CallAction::CallbackScheduled { ref urgency, .. } if urgency == "high")
        );
    }

    #[test]
    fn an_urgent_message_is_texted_and_a_normal_one_is_not() {
        let urgent = decide(
            "takeMessage",
            &args(
                json!({"message": "pipe burst", "urgent": true, "messageFor": "Bob",
                         "callerName": "Ann"}),
            ),
            &settings(),
        );
        assert_eq!(
            urgent.reply,
            "I've taken your message for Bob. Someone will get back to you soon."
        );
        assert_eq!(
            urgent.notifications[0].body,
            "⚠️ URGENT MESSAGE\nFrom: Ann\nMessage: pipe burst"
        );
        let normal = decide("takeMessage", &args(json!({"message": "hi"})), &settings());
        assert!(normal.notifications.is_empty());
    }

    #[test]
    fn missing_required_arguments_ask_again_and_unknown_functions_are_refused() {
        let out = decide("takeMessage", &args(json!({})), &settings());
        assert!(matches!(out.action, CallAction::Unknown { .. }));
        assert!(out.reply.contains("the message"));
        let out = decide("orderPizza", &args(json!({})), &settings());
        assert_eq!(out.reply, "Sorry, I can't do that on this line.");
    }
}
