//! Given/when/then: the runtime's policy, without I/O.

use chrono::{Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use serde_json::json;

use super::*;

type ProcessTest = TestFramework<Process>;

fn t(seconds: i64) -> Timestamp {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        first_backoff_ms: 1_000,
        factor: 2,
        timeout_ms: 120_000,
        ..RetryPolicy::default()
    }
}

fn plan() -> Vec<StepPlan> {
    vec![
        StepPlan::new("analysis", policy(3)),
        StepPlan::new("notify", policy(3)).needs(&["analysis"]),
        StepPlan::new("close", policy(3)).after(&["analysis", "notify"]),
    ]
}

fn started() -> ProcessEvent {
    ProcessEvent::ProcessStarted {
        kind: "call_processing".into(),
        subject: "call-1".into(),
        organization_id: None,
        input: json!({}),
        steps: plan(),
        at: t(0),
    }
}

fn fail(step: &str, at: i64) -> ProcessCommand {
    ProcessCommand::Fail {
        step: step.into(),
        error: "500 from the LLM".into(),
        retryable: true,
        not_before: None,
        detail: json!(null),
        at: t(at),
    }
}

fn failed(step: &str, attempt: u32, at: i64, retry_at: Option<i64>) -> ProcessEvent {
    ProcessEvent::StepFailed {
        step: step.into(),
        attempt,
        error: "500 from the LLM".into(),
        retry_at: retry_at.map(t),
        detail: json!(null),
        at: t(at),
    }
}

#[test]
fn a_failed_step_is_retried_after_its_backoff_doubling() {
    ProcessTest::with(())
        .given(vec![started()])
        .when(fail("analysis", 10))
        .then_expect_events(vec![failed("analysis", 1, 10, Some(11))]);
    ProcessTest::with(())
        .given(vec![started(), failed("analysis", 1, 10, Some(11))])
        .when(fail("analysis", 11))
        .then_expect_events(vec![failed("analysis", 2, 11, Some(13))]);
}

#[test]
fn a_step_that_spends_its_attempts_gives_up_and_the_steps_needing_it_are_skipped() {
    ProcessTest::with(())
        .given(vec![
            started(),
            failed("analysis", 1, 10, Some(11)),
            failed("analysis", 2, 11, Some(13)),
        ])
        .when(fail("analysis", 13))
        .then_expect_events(vec![
            failed("analysis", 3, 13, None),
            ProcessEvent::StepGaveUp {
                step: "analysis".into(),
                attempts: 3,
                error: "500 from the LLM".into(),
                at: t(13),
            },
            ProcessEvent::StepSkipped {
                step: "notify".into(),
                reason: "needs analysis, which did not succeed".into(),
                at: t(13),
            },
        ]);
}

#[test]
fn the_rest_goes_on_after_a_give_up_and_the_instance_completes_with_it_named() {
    let history = vec![
        started(),
        failed("analysis", 1, 10, None),
        ProcessEvent::StepGaveUp {
            step: "analysis".into(),
            attempts: 1,
            error: "bad".into(),
            at: t(10),
        },
        ProcessEvent::StepSkipped {
            step: "notify".into(),
            reason: "needs analysis, which did not succeed".into(),
            at: t(10),
        },
    ];
    let state = crate::replay::<Process>(history.clone());
    let runnable: Vec<_> = state
        .runnable(t(10))
        .iter()
        .map(|s| s.plan.name.clone())
        .collect();
    assert_eq!(runnable, ["close"]);
    ProcessTest::with(())
        .given(history)
        .when(ProcessCommand::Succeed {
            step: "close".into(),
            output: json!(null),
            at: t(12),
        })
        .then_expect_events(vec![
            ProcessEvent::StepSucceeded {
                step: "close".into(),
                attempt: 1,
                output: json!(null),
                at: t(12),
            },
            ProcessEvent::ProcessCompleted {
                failed_steps: vec!["analysis".into()],
                at: t(12),
            },
        ]);
}

#[test]
fn a_non_retryable_failure_gives_up_at_once() {
    ProcessTest::with(())
        .given(vec![started()])
        .when(ProcessCommand::Fail {
            step: "analysis".into(),
            error: "the LLM answered invalid JSON twice".into(),
            retryable: false,
            not_before: None,
            detail: json!(null),
            at: t(5),
        })
        .then_expect_events(vec![
            ProcessEvent::StepFailed {
                step: "analysis".into(),
                attempt: 1,
                error: "the LLM answered invalid JSON twice".into(),
                retry_at: None,
                detail: json!(null),
                at: t(5),
            },
            ProcessEvent::StepGaveUp {
                step: "analysis".into(),
                attempts: 1,
                error: "the LLM answered invalid JSON twice".into(),
                at: t(5),
            },
            ProcessEvent::StepSkipped {
                step: "notify".into(),
                reason: "needs analysis, which did not succeed".into(),
                at: t(5),
            },
        ]);
}

#[test]
fn a_step_waits_for_the_steps_before_it_and_the_due_time_follows_the_retry() {
    let state = crate::replay::<Process>(vec![started(), failed("analysis", 1, 10, Some(11))]);
    assert!(
        state.runnable(t(10)).is_empty(),
        "analysis waits for its retry, notify for it"
    );
    assert_eq!(state.due(t(10)), Due::At(t(11)));
    let names: Vec<_> = state
        .runnable(t(11))
        .iter()
        .map(|s| s.plan.name.clone())
        .collect();
    assert_eq!(names, ["analysis"]);
    assert_eq!(
        crate::replay::<Process>(vec![started()]).due(t(0)),
        Due::Now
    );
    assert_eq!(Process::default().due(t(0)), Due::Now, "not begun yet");
}

#[test]
fn an_attempt_without_an_outcome_is_in_doubt_and_its_outcome_keeps_its_number() {
    let attempted = ProcessEvent::StepAttempted {
        step: "analysis".into(),
        attempt: 1,
        at: t(1),
    };
    let state = crate::replay::<Process>(vec![started(), attempted.clone()]);
    assert!(state.step("analysis").unwrap().in_doubt);
    ProcessTest::with(())
        .given(vec![started(), attempted.clone()])
        .when(ProcessCommand::Attempt {
            step: "analysis".into(),
            at: t(2),
        })
        .then_expect_events(vec![]);
    ProcessTest::with(())
        .given(vec![started(), attempted])
        .when(fail("analysis", 3))
        .then_expect_events(vec![failed("analysis", 1, 3, Some(4))]);
}

#[test]
fn a_repeated_outcome_or_begin_records_nothing_new() {
    let succeeded = ProcessEvent::StepSucceeded {
        step: "analysis".into(),
        attempt: 1,
        output: json!({"summary": "x"}),
        at: t(1),
    };
    ProcessTest::with(())
        .given(vec![started(), succeeded.clone()])
        .when(fail("analysis", 2))
        .then_expect_events(vec![]);
    ProcessTest::with(())
        .given(vec![started()])
        .when(ProcessCommand::Begin {
            kind: "call_processing".into(),
            subject: "call-1".into(),
            organization_id: None,
            input: json!({"other": true}),
            steps: plan(),
            at: t(9),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_step_cannot_run_before_what_it_waits_for_nor_before_the_start() {
    ProcessTest::with(())
        .given(vec![started()])
        .when(ProcessCommand::Succeed {
            step: "close".into(),
            output: json!(null),
            at: t(1),
        })
        .then_expect_error(ProcessError::NotRunnable("close".into()));
    ProcessTest::with(())
        .given_no_previous_events()
        .when(fail("analysis", 1))
        .then_expect_error(ProcessError::NotStarted);
    ProcessTest::with(())
        .given(vec![started()])
        .when(fail("bogus", 1))
        .then_expect_error(ProcessError::UnknownStep("bogus".into()));
}

#[test]
fn a_plan_with_a_cycle_a_duplicate_or_no_attempts_is_refused() {
    for steps in [
        vec![],
        vec![
            StepPlan::new("a", policy(1)).after(&["b"]),
            StepPlan::new("b", policy(1)),
        ],
        vec![StepPlan::new("a", policy(1)), StepPlan::new("a", policy(1))],
        vec![StepPlan::new("a", policy(0))],
    ] {
        let begin = ProcessCommand::Begin {
            kind: "k".into(),
            subject: "s".into(),
            organization_id: None,
            input: json!({}),
            steps,
            at: t(0),
        };
        assert!(matches!(
            Process::default().decide(begin),
            Err(ProcessError::InvalidInput(_))
        ));
    }
}

#[test]
fn backoff_is_capped_by_attempts_not_overflowing() {
    let huge = RetryPolicy {
        max_attempts: 200,
        first_backoff_ms: i64::MAX / 2,
        factor: 10,
        timeout_ms: 1,
        ..RetryPolicy::default()
    };
    assert_eq!(
        huge.retry_at(150, t(0), "x"),
        Some(t(0) + Duration::days(1))
    );
    assert_eq!(policy(3).retry_at(3, t(0), "x"), None);
    assert_eq!(
        policy(3).retry_at(2, t(0), "x"),
        Some(t(0) + Duration::seconds(2))
    );
}

#[test]
fn a_postponed_step_waits_without_spending_an_attempt() {
    let postponed = ProcessEvent::StepPostponed {
        step: "analysis".into(),
        until: t(3_600),
        reason: "quiet hours".into(),
        at: t(10),
    };
    ProcessTest::with(())
        .given(vec![started()])
        .when(ProcessCommand::Postpone {
            step: "analysis".into(),
            until: t(3_600),
            reason: "quiet hours".into(),
            at: t(10),
        })
        .then_expect_events(vec![postponed.clone()]);
    let state = crate::replay::<Process>(vec![started(), postponed.clone()]);
    assert_eq!(state.due(t(10)), Due::At(t(3_600)));
    assert!(state.runnable(t(3_599)).is_empty());
    // When it runs, its first failure is still attempt 1.
    ProcessTest::with(())
        .given(vec![started(), postponed])
        .when(fail("analysis", 3_600))
        .then_expect_events(vec![failed("analysis", 1, 3_600, Some(3_601))]);
}

#[test]
fn a_providers_retry_after_moves_the_retry_later_but_never_earlier() {
    let throttled = |not_before: i64| ProcessCommand::Fail {
        step: "analysis".into(),
        error: "429".into(),
        retryable: true,
        not_before: Some(t(not_before)),
        detail: json!(null),
        at: t(10),
    };
    let failed_until = |retry_at: i64| ProcessEvent::StepFailed {
        step: "analysis".into(),
        attempt: 1,
        error: "429".into(),
        retry_at: Some(t(retry_at)),
        detail: json!(null),
        at: t(10),
    };
    ProcessTest::with(())
        .given(vec![started()])
        .when(throttled(40))
        .then_expect_events(vec![failed_until(40)]);
    // The policy's own back-off (1 s) is later than a 0.5 s Retry-After: the policy wins.
    ProcessTest::with(())
        .given(vec![started()])
        .when(throttled(10))
        .then_expect_events(vec![failed_until(11)]);
}

/// The seed's webhook schedule: 0 / 5 s / 30 s / 2 min / 10 min / 30 min / 1 h between the
/// seven attempts, each wait lengthened by at most 10%, the same for the same instance.
#[test]
fn a_schedule_sets_each_wait_with_a_stable_bounded_jitter() {
    let schedule = RetryPolicy {
        max_attempts: 7,
        schedule_ms: vec![5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000],
        jitter_pct: 10,
        ..RetryPolicy::default()
    };
    for (attempt, base) in [(1, 5_000), (2, 30_000), (3, 120_000), (6, 3_600_000)] {
        for salt in ["a", "b", "delivery-17"] {
            let at = schedule.retry_at(attempt, t(0), salt).unwrap();
            let waited = (at - t(0)).num_milliseconds();
            assert!(
                (base..=base + base / 10).contains(&waited),
                "attempt {attempt} waited {waited} ms"
            );
            assert_eq!(Some(at), schedule.retry_at(attempt, t(0), salt));
        }
    }
    assert_eq!(schedule.retry_at(7, t(0), "a"), None);
    let spread: std::collections::BTreeSet<_> = (0..20)
        .map(|i| schedule.retry_at(3, t(0), &format!("d{i}")))
        .collect();
    assert!(spread.len() > 10, "the jitter spreads instances apart");
}

#[test]
fn a_batch_is_decided_in_order_as_one_set_of_events() {
    let begin = ProcessCommand::Begin {
        kind: "call_processing".into(),
        subject: "call-1".into(),
        organization_id: None,
        input: json!({}),
        steps: plan(),
        at: t(0),
    };
    ProcessTest::with(())
        .given_no_previous_events()
        .when(ProcessCommand::Batch(vec![begin, fail("analysis", 10)]))
        .then_expect_events(vec![started(), failed("analysis", 1, 10, Some(11))]);
    ProcessTest::with(())
        .given_no_previous_events()
        .when(ProcessCommand::Batch(vec![fail("analysis", 10)]))
        .then_expect_error(ProcessError::NotStarted);
}

#[test]
fn a_step_that_gave_up_is_reopened_with_what_it_skipped() {
    let gave_up = ProcessEvent::StepGaveUp {
        step: "analysis".into(),
        attempts: 3,
        error: "500 from the LLM".into(),
        at: t(30),
    };
    let skipped = ProcessEvent::StepSkipped {
        step: "notify".into(),
        reason: "needs analysis, which did not succeed".into(),
        at: t(30),
    };
    let reopened = |step: &str| ProcessEvent::StepReopened {
        step: step.into(),
        reason: "retried by user:u1".into(),
        at: t(40),
    };
    let reopen = ProcessCommand::Reopen {
        step: "analysis".into(),
        reason: "retried by user:u1".into(),
        at: t(40),
    };
    ProcessTest::with(())
        .given(vec![started(), gave_up.clone(), skipped.clone()])
        .when(reopen.clone())
        .then_expect_events(vec![reopened("analysis"), reopened("notify")]);
    // The reopened step counts its attempts from 1 again, in a new round: what records an
    // attempt tells it from the first round's (a repeated record would be taken as done).
    let again = crate::replay::<Process>(vec![
        started(),
        gave_up,
        skipped,
        reopened("analysis"),
        reopened("notify"),
    ]);
    let step = again.step("analysis").expect("the step");
    assert_eq!((step.attempts, step.round), (0, 1));
    assert_eq!(step.attempt_label(1), "r1.1");
    assert_eq!(
        started_state()
            .step("analysis")
            .map(|s| s.attempt_label(1))
            .as_deref(),
        Some("1")
    );
    ProcessTest::with(())
        .given(vec![started()])
        .when(reopen)
        .then_expect_error(ProcessError::NotReopenable("analysis".into()));
}

fn started_state() -> Process {
    crate::replay::<Process>(vec![started()])
}
