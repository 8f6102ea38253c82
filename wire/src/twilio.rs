//! Twilio form-encoded webhooks: call status callbacks and inbound SMS.
//!
//! Why keep `params`: signature verification ([`crate::signature::twilio`]) needs every POSTed
//! pair exactly as received, so parsers return them in order next to the typed fields.
//! Twilio bodies are ASCII (percent-encoded); a raw non-UTF-8 body is rejected, while invalid
//! UTF-8 inside percent-escapes is decoded lossily (the signature check then fails on it).

use chrono::{DateTime, Utc};

use crate::error::WireError;

/// A call status callback (`StatusCallback` URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioStatus {
    pub call_sid: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// queued | initiated | ringing | in-progress | completed | busy | failed | no-answer | canceled
    pub call_status: Option<String>,
    /// inbound | outbound-api | outbound-dial
    pub direction: Option<String>,
    /// `CallDuration`: seconds, on completed calls.
    pub call_duration: Option<i64>,
    /// `Duration`: sent by some callbacks (billed minutes); kept separately from `CallDuration`.
    pub duration: Option<i64>,
    /// `Timestamp` (RFC 2822).
    pub timestamp: Option<DateTime<Utc>>,
    /// `SequenceNumber`: orders callbacks of one call (they can arrive out of order).
    pub sequence_number: Option<i64>,
    /// All pairs in body order, for signature checking.
    pub params: Vec<(String, String)>,
}

/// An inbound SMS webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioSms {
    /// `MessageSid` (or the legacy `SmsSid`).
    pub message_sid: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Empty when absent.
    pub body: String,
    pub num_media: Option<i64>,
    pub params: Vec<(String, String)>,
}

/// Decodes an `application/x-www-form-urlencoded` body into ordered pairs.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    std::str::from_utf8(body).map_err(|e| WireError::InvalidForm(e.to_string()))?;
    Ok(form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn get(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn get_i64(params: &[(String, String)], key: &str) -> Option<i64> {
    get(params, key).and_then(|v| v.parse().ok())
}

/// Parses a call status callback. `CallSid` is required; everything else is optional and
/// unparseable numbers/dates become `None`.
pub fn parse_status_callback(form_body: &[u8]) -> Result<TwilioStatus, WireError> {
    let params = parse_form(form_body)?;
    let call_sid =
        get(&params, "CallSid").ok_or_else(|| WireError::InvalidShape("missing CallSid".into()))?;
    Ok(TwilioStatus {
        call_sid,
        account_sid: get(&params, "AccountSid"),
        from: get(&params, "From"),
        to: get(&params, "To"),
        call_status: get(&params, "CallStatus"),
        direction: get(&params, "Direction"),
        call_duration: get_i64(&params, "CallDuration"),
        duration: get_i64(&params, "Duration"),
        timestamp: get(&params, "Timestamp")
            .and_then(|t| DateTime::parse_from_rfc2822(&t).ok())
            .map(|t| t.with_timezone(&Utc)),
        sequence_number: get_i64(&params, "SequenceNumber"),
        params,
    })
}

/// Parses an inbound SMS webhook. `MessageSid` (or `SmsSid`) is required.
pub fn parse_inbound_sms(form_body: &[u8]) -> Result<TwilioSms, WireError> {
    let params = parse_form(form_body)?;
    let message_sid = get(&params, "MessageSid")
        .or_else(|| get(&params, "SmsSid"))
        .ok_or_else(|| WireError::InvalidShape("missing MessageSid".into()))?;
    Ok(TwilioSms {
        message_sid,
        account_sid: get(&params, "AccountSid"),
        from: get(&params, "From"),
        to: get(&params, "To"),
        // The body is kept verbatim (no trimming): it is user content.
        body: params
            .iter()
            .find(|(k, _)| k == "Body")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        num_media: get_i64(&params, "NumMedia"),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature;

    const STATUS: &str = "Called=%2B18005551212&ToState=CA&CallerCountry=US&Direction=inbound\
&Timestamp=Mon%2C+16+Aug+2010+03%3A45%3A01+%2B0000&CallbackSource=call-progress-events\
&SequenceNumber=3&CallerState=CA&ToZip=&CallSid=CA1234567890ABCDE&To=%2B18005551212\
&CallerZip=&ToCountry=US&ApiVersion=2010-04-01&CalledZip=&CallStatus=completed\
&CallDuration=42&Duration=1&From=%2B14158675309&AccountSid=AC123&Caller=%2B14158675309";

    #[test]
    fn a_completed_status_callback_is_parsed_into_typed_fields() {
        let s = parse_status_callback(STATUS.as_bytes()).unwrap();
        assert_eq!(s.call_sid, "CA1234567890ABCDE");
        assert_eq!(s.account_sid.as_deref(), Some("AC123"));
        assert_eq!(s.from.as_deref(), Some("+14158675309"));
        assert_eq!(s.to.as_deref(), Some("+18005551212"));
        assert_eq!(s.call_status.as_deref(), Some("completed"));
        assert_eq!(s.direction.as_deref(), Some("inbound"));
        assert_eq!(s.call_duration, Some(42));
        assert_eq!(s.duration, Some(1));
        assert_eq!(s.sequence_number, Some(3));
        assert_eq!(
            s.timestamp.unwrap().to_rfc3339(),
            "2010-08-16T03:45:01+00:00"
        );
        assert_eq!(s.params.len(), 21);
        assert_eq!(
            s.params[0],
            ("Called".to_owned(), "+18005551212".to_owned())
        );
    }

    #[test]
    fn parsed_params_verify_against_a_twilio_signature() {
        let s = parse_status_callback(STATUS.as_bytes()).unwrap();
        let url = "https://api.callflex.test/webhooks/twilio/status";
        let sig = signature::twilio_signature("tok", url, &s.params);
        assert_eq!(signature::twilio("tok", url, &s.params, Some(&sig)), Ok(()));
    }

    #[test]
    fn a_status_callback_without_call_sid_is_rejected() {
        assert!(matches!(
            parse_status_callback(b"CallStatus=ringing"),
            Err(WireError::InvalidShape(_))
        ));
        assert!(parse_status_callback(b"CallSid=").is_err());
        assert!(parse_status_callback(b"").is_err());
    }

    #[test]
    fn garbage_numbers_and_dates_become_none() {
        let s = parse_status_callback(
            b"CallSid=CA1&CallDuration=forty&Duration=99999999999999999999&SequenceNumber=-&Timestamp=yesterday",
        )
        .unwrap();
        assert_eq!(s.call_duration, None);
        assert_eq!(s.duration, None);
        assert_eq!(s.sequence_number, None);
        assert_eq!(s.timestamp, None);
    }

    #[test]
    fn non_utf8_form_bodies_are_rejected_or_decoded_lossily() {
        assert!(matches!(
            parse_status_callback(b"CallSid=CA\xff\xfe"),
            Err(WireError::InvalidForm(_))
        ));
        let s = parse_status_callback(b"CallSid=CA%FF%FE&From=%").unwrap();
        assert!(s.call_sid.starts_with("CA"));
        assert_eq!(s.from.as_deref(), Some("%"));
    }

    #[test]
    fn the_first_duplicate_key_wins_but_all_pairs_are_kept() {
        let s = parse_status_callback(b"CallSid=CA1&CallSid=CA2&&=&x").unwrap();
        assert_eq!(s.call_sid, "CA1");
        assert_eq!(s.params.len(), 4);
    }

    #[test]
    fn an_inbound_sms_keeps_its_body_verbatim() {
        let sms = parse_inbound_sms(
            b"ToCountry=US&SmsSid=SM1&NumMedia=0&Body=++Call+me+back%21%0A&MessageSid=SM1&From=%2B15551230000&To=%2B15559870000&AccountSid=AC1",
        )
        .unwrap();
        assert_eq!(sms.message_sid, "SM1");
        assert_eq!(sms.body, "  Call me back!\n");
        assert_eq!(sms.num_media, Some(0));
        assert_eq!(sms.from.as_deref(), Some("+15551230000"));
        assert_eq!(sms.to.as_deref(), Some("+15559870000"));
        assert_eq!(sms.account_sid.as_deref(), Some("AC1"));
    }

    #[test]
    fn an_sms_falls_back_to_sms_sid_and_requires_one() {
        assert_eq!(parse_inbound_sms(b"SmsSid=SM9").unwrap().message_sid, "SM9");
        assert_eq!(parse_inbound_sms(b"SmsSid=SM9").unwrap().body, "");
        assert!(parse_inbound_sms(b"Body=hi").is_err());
        assert!(parse_inbound_sms(b"\xc3").is_err());
    }
}
