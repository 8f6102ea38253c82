use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::replay;

type CallTest = TestFramework<Call>;

const ORG: Uuid = Uuid::from_u128(1);
const OTHER_ORG: Uuid = Uuid::from_u128(2);

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0)
        .single()
        .expect("valid timestamp")
}

fn ctx() -> CallContext {
    CallContext {
        organization_id: ORG,
        vapi_call_id: "vapi-1".into(),
        from_number: Some("+15550001".into()),
        to_number: Some("+15550002".into()),
        direction: Direction::Inbound,
        phone_number_id: Some("pn-1".into()),
        assistant_id: Some("asst-1".into()),
        provider_call_id: None,
        started_at: Some(t(0)),
    }
}

fn started() -> CallEvent {
    let c = ctx();
    CallEvent::CallStarted {
        organization_id: c.organization_id,
        vapi_call_id: c.vapi_call_id,
        from_number: c.from_number,
        to_number: c.to_number,
        direction: c.direction,
        phone_number_id: c.phone_number_id,
        assistant_id: c.assistant_id,
        provider_call_id: c.provider_call_id,
        started_at: c.started_at,
    }
}

fn segment(key: &str) -> TranscriptSegment {
    TranscriptSegment {
        key: key.into(),
        role: "user".into(),
        text: "hello".into(),
        at: t(5),
        seconds_from_start: Some(5.0),
    }
}

fn invocation(tool_call_id: &str, reply: &str) -> FunctionInvocation {
    FunctionInvocation {
        tool_call_id: tool_call_id.into(),
        name: "take_message".into(),
        arguments: json!({"message": "call me"}),
        action: CallAction::MessageTaken {
            caller_name: Some("Ann".into()),
            caller_phone: None,
            message_for: None,
            message: "call me".into(),
            urgent: false,
        },
        reply: reply.into(),
        at: t(10),
        notifications: Vec::new(),
    }
}

fn report() -> EndReport {
    EndReport {
        ended_reason: Some("customer-ended-call".into()),
        started_at: Some(t(0)),
        ended_at: Some(t(90)),
        duration_seconds: Some(90.0),
        cost: Some(0.42),
        cost_breakdown: json!({"llm": 0.2}),
        transcript: Some("AI: hi".into()),
        messages: json!([]),
        recording_url: None,
        stereo_recording_url: None,
        summary: None,
        structured_data: json!({}),
        success_evaluation: None,
        at: t(91),
    }
}

fn ended() -> CallEvent {
    CallEvent::CallEnded { report: report() }
}

fn analysis() -> CallAnalysis {
    CallAnalysis {
        summary: "caller left a message".into(),
        call_type: Some("message".into()),
        sentiment: Some("neutral".into()),
        caller_name: Some("Ann".into()),
        action_items: vec!["call back".into()],
        urgency: None,
        source: None,
        at: t(100),
    }
}

fn status_changed(status: CallStatus) -> CallEvent {
    CallEvent::CallStatusChanged {
        status,
        ended_reason: None,
        at: t(1),
    }
}

fn update_status(status: CallStatus) -> CallCommand {
    CallCommand::UpdateStatus {
        ctx: ctx(),
        status,
        ended_reason: None,
        at: t(1),
    }
}

// ---- Start and context ----

#[test]
fn starting_a_new_call_emits_call_started() {
    CallTest::with(())
        .given_no_previous_events()
        .when(CallCommand::Start {
            ctx: ctx(),
            at: t(0),
        })
        .then_expect_events(vec![started()]);
}

#[test]
fn starting_without_a_start_time_uses_the_command_time() {
    let mut c = ctx();
    c.started_at = None;
    let events = Call::default()
        .decide(CallCommand::Start { ctx: c, at: t(3) })
        .expect("decides");
    match &events[..] {
        [CallEvent::CallStarted { started_at, .. }] => assert_eq!(*started_at, Some(t(3))),
        other => panic!("unexpected events {other:?}"),
    }
}

#[test]
fn starting_an_already_started_call_is_a_no_op() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::Start {
            ctx: ctx(),
            at: t(0),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_later_delivery_fills_in_only_the_missing_details() {
    let mut c = ctx();
    c.provider_call_id = Some("CA123".into());
    c.from_number = Some("+19999999".into());
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::Start { ctx: c, at: t(0) })
        .then_expect_events(vec![CallEvent::CallDetailsLearned {
            from_number: None,
            to_number: None,
            provider_call_id: Some("CA123".into()),
            phone_number_id: None,
            assistant_id: None,
        }]);
}

#[test]
fn learned_details_are_kept_in_state() {
    let call = replay::<Call>(vec![
        started(),
        CallEvent::CallDetailsLearned {
            from_number: None,
            to_number: None,
            provider_call_id: Some("CA123".into()),
            phone_number_id: None,
            assistant_id: None,
        },
    ]);
    assert_eq!(call.provider_call_id.as_deref(), Some("CA123"));
    assert_eq!(call.from_number.as_deref(), Some("+15550001"));
}

#[test]
fn a_command_from_another_organization_is_rejected() {
    let mut c = ctx();
    c.organization_id = OTHER_ORG;
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::AddTranscript {
            ctx: c,
            segment: segment("k1"),
        })
        .then_expect_error(CallError::WrongOrganization);
}

#[test]
fn starting_a_call_owned_by_another_organization_is_rejected() {
    let mut c = ctx();
    c.organization_id = OTHER_ORG;
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::Start { ctx: c, at: t(0) })
        .then_expect_error(CallError::WrongOrganization);
}

// ---- Status ----

#[test]
fn a_status_update_on_an_unseen_call_starts_it_first() {
    CallTest::with(())
        .given_no_previous_events()
        .when(update_status(CallStatus::Ringing))
        .then_expect_events(vec![started(), status_changed(CallStatus::Ringing)]);
}

#[test]
fn a_status_moving_forward_is_recorded() {
    CallTest::with(())
        .given(vec![started(), status_changed(CallStatus::Ringing)])
        .when(update_status(CallStatus::InProgress))
        .then_expect_events(vec![status_changed(CallStatus::InProgress)]);
}

#[test]
fn the_same_status_again_is_a_no_op() {
    CallTest::with(())
        .given(vec![started(), status_changed(CallStatus::Ringing)])
        .when(update_status(CallStatus::Ringing))
        .then_expect_events(vec![]);
}

#[test]
fn a_status_never_goes_backwards() {
    CallTest::with(())
        .given(vec![started(), status_changed(CallStatus::InProgress)])
        .when(update_status(CallStatus::Queued))
        .then_expect_events(vec![]);
}

#[test]
fn a_status_update_after_the_end_report_is_a_no_op() {
    CallTest::with(())
        .given(vec![started(), ended()])
        .when(update_status(CallStatus::InProgress))
        .then_expect_events(vec![]);
}

#[test]
fn call_status_serializes_in_kebab_case() {
    assert_eq!(
        serde_json::to_value(CallStatus::InProgress).expect("serializes"),
        json!("in-progress")
    );
    assert_eq!(
        serde_json::to_value(Direction::Outbound).expect("serializes"),
        json!("outbound")
    );
}

// ---- Transcript ----

#[test]
fn a_transcript_segment_is_added() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::AddTranscript {
            ctx: ctx(),
            segment: segment("k1"),
        })
        .then_expect_events(vec![CallEvent::TranscriptSegmentAdded {
            segment: segment("k1"),
        }]);
}

#[test]
fn a_duplicate_transcript_key_is_a_no_op() {
    CallTest::with(())
        .given(vec![
            started(),
            CallEvent::TranscriptSegmentAdded {
                segment: segment("k1"),
            },
        ])
        .when(CallCommand::AddTranscript {
            ctx: ctx(),
            segment: segment("k1"),
        })
        .then_expect_events(vec![]);
}

/// Deliveries are not ordered: a segment that arrives after the call was processed is a fact
/// the provider reported, and refusing it would lose it (VAPI does not retry a 4xx).
#[test]
fn a_transcript_arriving_after_close_is_still_recorded() {
    CallTest::with(())
        .given(vec![
            started(),
            ended(),
            CallEvent::CallProcessed { at: t(120) },
        ])
        .when(CallCommand::AddTranscript {
            ctx: ctx(),
            segment: segment("k9"),
        })
        .then_expect_events(vec![CallEvent::TranscriptSegmentAdded {
            segment: segment("k9"),
        }]);
}

#[test]
fn transcript_segments_are_counted_without_keeping_their_text() {
    let call = replay::<Call>(vec![
        started(),
        CallEvent::TranscriptSegmentAdded {
            segment: segment("k1"),
        },
        CallEvent::TranscriptSegmentAdded {
            segment: segment("k2"),
        },
    ]);
    assert_eq!(call.segment_count, 2);
    assert!(call.seen_segments.contains("k2"));
    let json = serde_json::to_string(&call).expect("serializes");
    assert!(!json.contains("hello"));
}

// ---- Function calls ----

#[test]
fn a_function_call_is_recorded_with_its_reply() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::HandleFunctionCall {
            ctx: ctx(),
            invocation: invocation("tc1", "Message taken."),
        })
        .then_expect_events(vec![CallEvent::FunctionCallHandled {
            invocation: invocation("tc1", "Message taken."),
        }]);
}

#[test]
fn a_duplicate_tool_call_id_emits_nothing_and_the_stored_reply_is_returned() {
    let history = vec![
        started(),
        CallEvent::FunctionCallHandled {
            invocation: invocation("tc1", "Message taken."),
        },
    ];
    CallTest::with(())
        .given(history.clone())
        .when(CallCommand::HandleFunctionCall {
            ctx: ctx(),
            invocation: invocation("tc1", "A different reply"),
        })
        .then_expect_events(vec![]);
    let call = replay::<Call>(history);
    assert_eq!(call.reply_for("tc1"), Some("Message taken."));
    assert_eq!(call.reply_for("tc2"), None);
}

#[test]
fn a_redelivered_tool_call_after_close_is_still_a_no_op() {
    CallTest::with(())
        .given(vec![
            started(),
            CallEvent::FunctionCallHandled {
                invocation: invocation("tc1", "ok"),
            },
            ended(),
            CallEvent::CallProcessed { at: t(120) },
        ])
        .when(CallCommand::HandleFunctionCall {
            ctx: ctx(),
            invocation: invocation("tc1", "ok"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_function_call_arriving_after_close_is_still_recorded() {
    CallTest::with(())
        .given(vec![
            started(),
            ended(),
            CallEvent::CallProcessed { at: t(120) },
        ])
        .when(CallCommand::HandleFunctionCall {
            ctx: ctx(),
            invocation: invocation("tc2", "ok"),
        })
        .then_expect_events(vec![CallEvent::FunctionCallHandled {
            invocation: invocation("tc2", "ok"),
        }]);
}

#[test]
fn the_tool_calls_of_one_delivery_are_recorded_together_in_order() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::HandleFunctionCalls {
            ctx: ctx(),
            invocations: vec![
                invocation("tc1", "Message taken."),
                invocation("tc2", "Noted."),
            ],
        })
        .then_expect_events(vec![
            CallEvent::FunctionCallHandled {
                invocation: invocation("tc1", "Message taken."),
            },
            CallEvent::FunctionCallHandled {
                invocation: invocation("tc2", "Noted."),
            },
        ]);
}

#[test]
fn in_a_batch_of_tool_calls_only_the_unseen_ids_are_recorded_once() {
    CallTest::with(())
        .given(vec![
            started(),
            CallEvent::FunctionCallHandled {
                invocation: invocation("tc1", "ok"),
            },
        ])
        .when(CallCommand::HandleFunctionCalls {
            ctx: ctx(),
            invocations: vec![
                invocation("tc1", "ok"),
                invocation("tc2", "first"),
                invocation("tc2", "repeated in the same list"),
            ],
        })
        .then_expect_events(vec![CallEvent::FunctionCallHandled {
            invocation: invocation("tc2", "first"),
        }]);
}

#[test]
fn a_batch_of_redelivered_tool_calls_after_close_records_only_the_new_one() {
    let closed = vec![
        started(),
        CallEvent::FunctionCallHandled {
            invocation: invocation("tc1", "ok"),
        },
        ended(),
        CallEvent::CallProcessed { at: t(120) },
    ];
    CallTest::with(())
        .given(closed.clone())
        .when(CallCommand::HandleFunctionCalls {
            ctx: ctx(),
            invocations: vec![invocation("tc1", "ok")],
        })
        .then_expect_events(vec![]);
    CallTest::with(())
        .given(closed)
        .when(CallCommand::HandleFunctionCalls {
            ctx: ctx(),
            invocations: vec![invocation("tc1", "ok"), invocation("tc2", "new")],
        })
        .then_expect_events(vec![CallEvent::FunctionCallHandled {
            invocation: invocation("tc2", "new"),
        }]);
}

#[test]
fn a_function_call_on_an_unseen_call_starts_it_first() {
    CallTest::with(())
        .given_no_previous_events()
        .when(CallCommand::HandleFunctionCall {
            ctx: ctx(),
            invocation: invocation("tc1", "ok"),
        })
        .then_expect_events(vec![
            started(),
            CallEvent::FunctionCallHandled {
                invocation: invocation("tc1", "ok"),
            },
        ]);
}

#[test]
fn call_actions_serialize_with_a_snake_case_type_tag() {
    let action = CallAction::DriverCallout {
        driver_name: "Sam".into(),
        reason: "sick".into(),
        route_number: Some("12".into()),
        expected_return: None,
        additional_notes: None,
    };
    let value = serde_json::to_value(&action).expect("serializes");
    assert_eq!(value["type"], json!("driver_callout"));
    let back: CallAction = serde_json::from_value(value).expect("deserializes");
    assert_eq!(back, action);
}

// ---- Hang up ----

#[test]
fn hanging_up_is_recorded_once() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::Hang {
            ctx: ctx(),
            at: t(50),
        })
        .then_expect_events(vec![CallEvent::CallHungUp { at: t(50) }]);
    CallTest::with(())
        .given(vec![started(), CallEvent::CallHungUp { at: t(50) }])
        .when(CallCommand::Hang {
            ctx: ctx(),
            at: t(51),
        })
        .then_expect_events(vec![]);
}

// ---- End ----

#[test]
fn a_call_first_seen_in_its_end_report_is_started_then_ended() {
    CallTest::with(())
        .given_no_previous_events()
        .when(CallCommand::End {
            ctx: ctx(),
            report: report(),
        })
        .then_expect_events(vec![started(), ended()]);
}

#[test]
fn an_end_report_with_a_recording_also_makes_the_recording_available() {
    let mut r = report();
    r.recording_url = Some("https://rec/mono.wav".into());
    r.stereo_recording_url = Some("https://rec/stereo.wav".into());
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::End {
            ctx: ctx(),
            report: r.clone(),
        })
        .then_expect_events(vec![
            CallEvent::CallEnded { report: r },
            CallEvent::RecordingAvailable {
                url: "https://rec/mono.wav".into(),
                stereo_url: Some("https://rec/stereo.wav".into()),
                stored_path: None,
                at: t(91),
            },
        ]);
}

#[test]
fn ending_twice_is_rejected() {
    CallTest::with(())
        .given(vec![started(), ended()])
        .when(CallCommand::End {
            ctx: ctx(),
            report: report(),
        })
        .then_expect_error(CallError::AlreadyEnded);
}

/// Ends a started call with `report` and expects it recorded with `duration` seconds.
fn ending_records_duration(report: EndReport, duration: Option<f64>) {
    let mut expected = report.clone();
    expected.duration_seconds = duration;
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::End { ctx: ctx(), report })
        .then_expect_events(vec![CallEvent::CallEnded { report: expected }]);
}

#[test]
fn a_missing_duration_is_computed_from_the_report_times() {
    let mut r = report();
    r.duration_seconds = None;
    r.ended_at = Some(t(75));
    ending_records_duration(r, Some(75.0));
}

#[test]
fn a_missing_duration_falls_back_to_the_recorded_start_time() {
    let mut r = report();
    r.duration_seconds = None;
    r.started_at = None;
    r.ended_at = Some(t(30));
    ending_records_duration(r, Some(30.0));
}

#[test]
fn a_duration_stays_unknown_without_an_end_time() {
    let mut r = report();
    r.duration_seconds = None;
    r.ended_at = None;
    ending_records_duration(r, None);
}

#[test]
fn an_implausible_duration_is_replaced_by_the_report_times() {
    let mut r = report();
    r.duration_seconds = Some(1e308);
    r.ended_at = Some(t(75));
    ending_records_duration(r, Some(75.0));
}

#[test]
fn times_decades_apart_give_no_duration_rather_than_an_absurd_one() {
    let mut r = report();
    r.duration_seconds = None;
    r.started_at = Some(t(0) - chrono::Duration::days(365 * 30));
    ending_records_duration(r, None);
}

#[test]
fn ending_marks_the_status_ended() {
    let call = replay::<Call>(vec![started(), ended()]);
    assert!(call.ended);
    assert_eq!(call.status, Some(CallStatus::Ended));
}

// ---- Recording ----

fn record(url: &str, stored_path: Option<&str>) -> CallCommand {
    CallCommand::RecordRecording {
        ctx: ctx(),
        url: url.into(),
        stereo_url: None,
        stored_path: stored_path.map(str::to_string),
        at: t(200),
    }
}

fn recording(url: &str, stored_path: Option<&str>) -> CallEvent {
    CallEvent::RecordingAvailable {
        url: url.into(),
        stereo_url: None,
        stored_path: stored_path.map(str::to_string),
        at: t(200),
    }
}

#[test]
fn a_recording_is_recorded() {
    CallTest::with(())
        .given(vec![started()])
        .when(record("https://rec/1", None))
        .then_expect_events(vec![recording("https://rec/1", None)]);
}

#[test]
fn the_same_recording_url_again_is_a_no_op() {
    CallTest::with(())
        .given(vec![started(), recording("https://rec/1", None)])
        .when(record("https://rec/1", None))
        .then_expect_events(vec![]);
}

#[test]
fn a_newly_stored_copy_of_a_known_recording_is_recorded() {
    CallTest::with(())
        .given(vec![started(), recording("https://rec/1", None)])
        .when(record("https://rec/1", Some("org/call.wav")))
        .then_expect_events(vec![recording("https://rec/1", Some("org/call.wav"))]);
    CallTest::with(())
        .given(vec![
            started(),
            recording("https://rec/1", Some("org/call.wav")),
        ])
        .when(record("https://rec/1", Some("org/call.wav")))
        .then_expect_events(vec![]);
}

#[test]
fn a_recording_on_an_unseen_call_starts_it_first() {
    CallTest::with(())
        .given_no_previous_events()
        .when(record("https://rec/1", None))
        .then_expect_events(vec![started(), recording("https://rec/1", None)]);
}

// ---- Analysis ----

#[test]
fn an_ended_call_can_be_analyzed() {
    CallTest::with(())
        .given(vec![started(), ended()])
        .when(CallCommand::Analyze {
            ctx: ctx(),
            analysis: analysis(),
        })
        .then_expect_events(vec![CallEvent::CallAnalyzed {
            analysis: analysis(),
        }]);
}

#[test]
fn analyzing_before_the_end_is_rejected() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::Analyze {
            ctx: ctx(),
            analysis: analysis(),
        })
        .then_expect_error(CallError::NotEnded);
}

#[test]
fn a_call_can_be_reanalyzed_before_close() {
    CallTest::with(())
        .given(vec![
            started(),
            ended(),
            CallEvent::CallAnalyzed {
                analysis: analysis(),
            },
        ])
        .when(CallCommand::Analyze {
            ctx: ctx(),
            analysis: analysis(),
        })
        .then_expect_events(vec![CallEvent::CallAnalyzed {
            analysis: analysis(),
        }]);
}

#[test]
fn analyzing_after_close_is_rejected() {
    CallTest::with(())
        .given(vec![
            started(),
            ended(),
            CallEvent::CallProcessed { at: t(120) },
        ])
        .when(CallCommand::Analyze {
            ctx: ctx(),
            analysis: analysis(),
        })
        .then_expect_error(CallError::Closed);
}

// ---- Close ----

#[test]
fn an_ended_call_is_closed() {
    CallTest::with(())
        .given(vec![started(), ended()])
        .when(CallCommand::Close { at: t(120) })
        .then_expect_events(vec![CallEvent::CallProcessed { at: t(120) }]);
}

#[test]
fn closing_twice_is_a_no_op() {
    CallTest::with(())
        .given(vec![
            started(),
            ended(),
            CallEvent::CallProcessed { at: t(120) },
        ])
        .when(CallCommand::Close { at: t(130) })
        .then_expect_events(vec![]);
}

#[test]
fn closing_before_the_end_is_rejected() {
    CallTest::with(())
        .given(vec![started()])
        .when(CallCommand::Close { at: t(120) })
        .then_expect_error(CallError::NotEnded);
}

// ---- Contracts ----

#[test]
fn decide_does_not_modify_the_state() {
    let call = replay::<Call>(vec![started()]);
    let before = call.clone();
    let events = call
        .decide(CallCommand::End {
            ctx: ctx(),
            report: report(),
        })
        .expect("decides");
    assert_eq!(events.len(), 1);
    assert_eq!(call, before);
}

#[test]
fn call_state_survives_a_json_round_trip() {
    let mut r = report();
    r.recording_url = Some("https://rec/1".into());
    let call = replay::<Call>(vec![
        started(),
        status_changed(CallStatus::InProgress),
        CallEvent::TranscriptSegmentAdded {
            segment: segment("k1"),
        },
        CallEvent::FunctionCallHandled {
            invocation: invocation("tc1", "ok"),
        },
        CallEvent::CallHungUp { at: t(80) },
        CallEvent::CallEnded { report: r },
        recording("https://rec/1", Some("a.wav")),
        CallEvent::CallProcessed { at: t(120) },
    ]);
    let json = serde_json::to_string(&call).expect("serializes");
    let back: Call = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, call);
}

#[test]
fn call_events_are_externally_tagged_and_round_trip() {
    let value = serde_json::to_value(started()).expect("serializes");
    assert!(value.get("CallStarted").is_some());
    assert_eq!(value["CallStarted"]["direction"], json!("inbound"));
    let back: CallEvent = serde_json::from_value(value).expect("deserializes");
    assert_eq!(back, started());
}

#[test]
fn call_event_types_are_pinned() {
    let events = vec![
        (started(), "CallStarted"),
        (
            CallEvent::CallDetailsLearned {
                from_number: None,
                to_number: None,
                provider_call_id: None,
                phone_number_id: None,
                assistant_id: None,
            },
            "CallDetailsLearned",
        ),
        (status_changed(CallStatus::Ringing), "CallStatusChanged"),
        (
            CallEvent::TranscriptSegmentAdded {
                segment: segment("k"),
            },
            "TranscriptSegmentAdded",
        ),
        (
            CallEvent::FunctionCallHandled {
                invocation: invocation("tc", "r"),
            },
            "FunctionCallHandled",
        ),
        (CallEvent::CallHungUp { at: t(0) }, "CallHungUp"),
        (ended(), "CallEnded"),
        (recording("u", None), "RecordingAvailable"),
        (
            CallEvent::CallAnalyzed {
                analysis: analysis(),
            },
            "CallAnalyzed",
        ),
        (CallEvent::CallProcessed { at: t(0) }, "CallProcessed"),
    ];
    for (event, name) in events {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1");
        let value = serde_json::to_value(&event).expect("serializes");
        assert!(value.get(name).is_some(), "{name} is the serde tag");
    }
    assert_eq!(<Call as Aggregate>::TYPE, "call");
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(CallError::AlreadyEnded.code(), "call_already_ended");
    assert_eq!(CallError::Closed.code(), "call_closed");
    assert_eq!(CallError::NotEnded.code(), "call_not_ended");
    assert_eq!(
        CallError::WrongOrganization.code(),
        "call_wrong_organization"
    );
}
