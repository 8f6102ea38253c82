//! The post-call summary notification (the seed's `sendNotifications`): which messages a
//! processed call sends, from the organization's settings. Pure.

use super::command::{Notification, NotificationChannel};
use crate::organization::NotificationSettings;

/// What the summary says about the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallDigest {
    pub from_number: Option<String>,
    pub duration_seconds: Option<f64>,
    pub summary: Option<String>,
    pub call_type: Option<String>,
}

/// The seed's message: caller, whole minutes (rounded up), summary.
pub fn summary_text(call: &CallDigest) -> String {
    let minutes = call
        .duration_seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(0, |s| (s / 60.0).ceil() as i64);
    format!(
        "New call\nFrom: {}\nDuration: {minutes}min\n{}",
        call.from_number.as_deref().unwrap_or("unknown"),
        call.summary.as_deref().unwrap_or("No summary available"),
    )
}

/// An SMS to every SMS number and one email to every address, on the enabled channels, when
/// the organization wants post-call summaries.
pub fn post_call_notifications(
    settings: &NotificationSettings,
    call: &CallDigest,
) -> Vec<Notification> {
    if !settings.post_call_summary {
        return Vec::new();
    }
    let text = summary_text(call);
    let mut out = Vec::new();
    if settings.sms_enabled && !settings.sms_numbers.is_empty() {
        out.push(Notification {
            channel: NotificationChannel::Sms,
            recipients: settings.sms_numbers.clone(),
            subject: None,
            body: text.clone(),
        });
    }
    if settings.email_enabled && !settings.email_addresses.is_empty() {
        let kind = call.call_type.as_deref().unwrap_or("inquiry");
        out.push(Notification {
            channel: NotificationChannel::Email,
            recipients: settings.email_addresses.clone(),
            subject: Some(format!("New call: {kind}")),
            body: text,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NotificationSettings {
        NotificationSettings {
            sms_enabled: true,
            sms_numbers: vec!["+15550001111".into()],
            email_enabled: true,
            email_addresses: vec!["ops@acme.test".into(), "boss@acme.test".into()],
            post_call_summary: true,
            quiet_hours: None,
            usage_alerts_sms: false,
        }
    }

    fn digest() -> CallDigest {
        CallDigest {
            from_number: Some("+15559990000".into()),
            duration_seconds: Some(61.0),
            summary: Some("Dana asked to reschedule.".into()),
            call_type: Some("booking".into()),
        }
    }

    #[test]
    fn a_processed_call_notifies_every_enabled_channel_with_the_seed_message() {
        let out = post_call_notifications(&settings(), &digest());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].channel, NotificationChannel::Sms);
        assert_eq!(
            out[0].body,
            "New call\nFrom: +15559990000\nDuration: 2min\nDana asked to reschedule."
        );
        assert_eq!(out[1].recipients.len(), 2);
        assert_eq!(out[1].subject.as_deref(), Some("New call: booking"));
    }

    #[test]
    fn no_summary_is_said_so_not_invented() {
        let text = summary_text(&CallDigest::default());
        assert_eq!(
            text,
            "New call\nFrom: unknown\nDuration: 0min\nNo summary available"
        );
    }

    #[test]
    fn disabled_channels_empty_lists_and_the_opt_out_send_nothing() {
        let mut quiet = settings();
        quiet.post_call_summary = false;
        assert!(post_call_notifications(&quiet, &digest()).is_empty());
        let mut off = settings();
        off.sms_enabled = false;
        off.email_addresses.clear();
        assert!(post_call_notifications(&off, &digest()).is_empty());
    }
}
