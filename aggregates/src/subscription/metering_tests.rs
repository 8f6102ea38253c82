//! Given/when/then tests of metering: periods, thresholds, overage and closes.

use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;

use super::tests::{checkout_completed, s, t, with};
use super::*;
use crate::call::{Notification, NotificationChannel};
use crate::replay;

type SubTest = TestFramework<Subscription>;
type C = SubscriptionCommand;
type Ev = SubscriptionEvent;
type St = SubscriptionStatus;

const DAY: i64 = 86_400;
/// The first period: 30 days from `t(0)`.
const START: i64 = 1_700_000_000;
const END: i64 = START + 30 * DAY;

fn synced(status: St, included: Option<i64>, end: i64, created: i64) -> Ev {
    Ev::SubscriptionStatusChanged {
        organization_id: Some(super::tests::ORG),
        customer_id: s("cus_1"),
        status,
        plan: Some(s("starter")),
        price_id: Some(s("price_starter")),
        subscription_item_id: Some(s("si_1")),
        included_minutes: included,
        current_period_start: Some(START),
        current_period_end: Some(end),
        cancel_at_period_end: false,
        stripe_event_id: format!("evt_sync_{created}"),
        stripe_created: created,
    }
}

fn opened(start: i64, end: i64) -> Ev {
    Ev::PeriodOpened {
        period_start: start,
        period_end: end,
    }
}

/// An active subscription with `included` minutes and its first period open.
fn live(included: Option<i64>) -> Vec<Ev> {
    vec![
        checkout_completed(),
        synced(St::Active, included, END, 200),
        opened(START, END),
    ]
}

fn record(call_id: &str, minutes: i64, at_secs: i64) -> C {
    C::RecordUsage {
        call_id: s(call_id),
        minutes,
        at: t(at_secs - START),
    }
}

fn recorded(call_id: &str, minutes: i64, at_secs: i64, period: i64, overage: i64) -> Ev {
    Ev::UsageRecorded {
        call_id: s(call_id),
        minutes,
        at: t(at_secs - START),
        period_start: period,
        overage_minutes: overage,
    }
}

fn threshold(pct: u32, used: i64, included: i64) -> Ev {
    Ev::UsageThresholdReached {
        period_start: START,
        period_end: END,
        threshold_pct: pct,
        used_minutes: used,
        included_minutes: included,
    }
}

fn close(rate: i64, at_secs: i64) -> C {
    C::ClosePeriod {
        period_start: START,
        overage_rate_cents: rate,
        at: t(at_secs - START),
    }
}

#[test]
fn a_live_subscription_with_stripe_bounds_opens_its_first_period() {
    SubTest::with(())
        .given(vec![checkout_completed()])
        .when(C::SyncSubscription {
            organization_id: None,
            customer_id: s("cus_1"),
            status: St::Active,
            plan: Some(s("starter")),
            price_id: Some(s("price_starter")),
            subscription_item_id: Some(s("si_1")),
            included_minutes: Some(100),
            current_period_start: Some(START),
            current_period_end: Some(END),
            cancel_at_period_end: false,
            stripe_event_id: s("evt_sync_200"),
            stripe_created: 200,
        })
        .then_expect_events(vec![
            Ev::SubscriptionStatusChanged {
                organization_id: None,
                customer_id: s("cus_1"),
                status: St::Active,
                plan: Some(s("starter")),
                price_id: Some(s("price_starter")),
                subscription_item_id: Some(s("si_1")),
                included_minutes: Some(100),
                current_period_start: Some(START),
                current_period_end: Some(END),
                cancel_at_period_end: false,
                stripe_event_id: s("evt_sync_200"),
                stripe_created: 200,
            },
            opened(START, END),
        ]);
    // A later sync (Stripe's renewal) does not move the open period.
    SubTest::with(())
        .given(live(Some(100)))
        .when(C::SyncSubscription {
            organization_id: None,
            customer_id: s("cus_1"),
            status: St::Active,
            plan: None,
            price_id: None,
            subscription_item_id: None,
            included_minutes: None,
            current_period_start: Some(END),
            current_period_end: Some(END + 31 * DAY),
            cancel_at_period_end: false,
            stripe_event_id: s("evt_renewal"),
            stripe_created: 300,
        })
        .then_expect_events(vec![Ev::SubscriptionStatusChanged {
            organization_id: None,
            customer_id: s("cus_1"),
            status: St::Active,
            plan: None,
            price_id: None,
            subscription_item_id: None,
            included_minutes: None,
            current_period_start: Some(END),
            current_period_end: Some(END + 31 * DAY),
            cancel_at_period_end: false,
            stripe_event_id: s("evt_renewal"),
            stripe_created: 300,
        }]);
}

#[test]
fn a_call_is_metered_once() {
    SubTest::with(())
        .given(live(Some(100)))
        .when(record("call_1", 3, START + 10))
        .then_expect_events(vec![recorded("call_1", 3, START + 10, START, 0)]);
    SubTest::with(())
        .given(with(
            live(Some(100)),
            vec![recorded("call_1", 3, START + 10, START, 0)],
        ))
        .when(record("call_1", 3, START + 10))
        .then_expect_events(vec![]);
    SubTest::with(())
        .given(live(Some(100)))
        .when(record("call_1", -1, START))
        .then_expect_error(SubscriptionError::InvalidInput(s(
            "minutes must not be negative",
        )));
}

#[test]
fn crossing_80_and_100_percent_announces_each_threshold_once_with_the_overage() {
    let before = with(
        live(Some(100)),
        vec![recorded("call_1", 79, START + 10, START, 0)],
    );
    SubTest::with(())
        .given(before.clone())
        .when(record("call_2", 1, START + 20))
        .then_expect_events(vec![
            recorded("call_2", 1, START + 20, START, 0),
            threshold(80, 80, 100),
        ]);
    let after_80 = with(
        before,
        vec![
            recorded("call_2", 1, START + 20, START, 0),
            threshold(80, 80, 100),
        ],
    );
    SubTest::with(())
        .given(after_80.clone())
        .when(record("call_3", 5, START + 30))
        .then_expect_events(vec![recorded("call_3", 5, START + 30, START, 0)]);
    // 85 + 30 = 115: 15 minutes beyond the plan, and the 100% threshold.
    let at_85 = with(after_80, vec![recorded("call_3", 5, START + 30, START, 0)]);
    SubTest::with(())
        .given(at_85.clone())
        .when(record("call_4", 30, START + 40))
        .then_expect_events(vec![
            recorded("call_4", 30, START + 40, START, 15),
            threshold(100, 115, 100),
        ]);
    let at_115 = with(
        at_85,
        vec![
            recorded("call_4", 30, START + 40, START, 15),
            threshold(100, 115, 100),
        ],
    );
    // Past the plan, every further minute is overage; no threshold again.
    SubTest::with(())
        .given(at_115)
        .when(record("call_5", 2, START + 50))
        .then_expect_events(vec![recorded("call_5", 2, START + 50, START, 2)]);
}

#[test]
fn one_call_crossing_both_thresholds_announces_both() {
    SubTest::with(())
        .given(live(Some(10)))
        .when(record("call_1", 12, START + 10))
        .then_expect_events(vec![
            recorded("call_1", 12, START + 10, START, 2),
            threshold(80, 12, 10),
            threshold(100, 12, 10),
        ]);
}

#[test]
fn without_a_known_plan_nothing_is_overage_and_nothing_is_announced() {
    SubTest::with(())
        .given(live(None))
        .when(record("call_1", 500, START + 10))
        .then_expect_events(vec![recorded("call_1", 500, START + 10, START, 0)]);
}

#[test]
fn the_first_call_without_stripe_bounds_opens_the_calendar_month() {
    // 2023-11-14T22:13:20Z: November 2023.
    let nov = 1_698_796_800;
    let dec = 1_701_388_800;
    SubTest::with(())
        .given(vec![checkout_completed()])
        .when(record("call_1", 3, START))
        .then_expect_events(vec![opened(nov, dec), recorded("call_1", 3, START, nov, 0)]);
}

#[test]
fn a_call_ending_after_the_period_counts_in_the_next_one() {
    let given = with(live(Some(10)), vec![recorded("late", 9, END + 5, END, 0)]);
    SubTest::with(())
        .given(live(Some(10)))
        .when(record("late", 9, END + 5))
        .then_expect_events(vec![recorded("late", 9, END + 5, END, 0)]);
    let sub = replay::<Subscription>(given.clone());
    assert_eq!(sub.period_minutes, 0);
    assert_eq!(sub.carried.get(&END).map(|c| c.minutes), Some(9));
    // The close opens the next period with the carried call, which crosses 80% there.
    let next_end = END + 31 * DAY;
    SubTest::with(())
        .given(with(
            given.clone(),
            vec![synced(St::Active, Some(10), next_end, 300)],
        ))
        .when(close(5, END))
        .then_expect_events(vec![
            Ev::PeriodClosed {
                period_start: START,
                period_end: END,
                total_minutes: 0,
                included_minutes: 10,
                overage_minutes: 0,
                overage_rate_cents: 5,
                overage_cost_cents: 0,
                reported_minutes: 0,
                unbilled_minutes: 0,
            },
            opened(END, next_end),
            Ev::UsageThresholdReached {
                period_start: END,
                period_end: next_end,
                threshold_pct: 80,
                used_minutes: 9,
                included_minutes: 10,
            },
        ]);
    // And the carried call is not metered twice.
    SubTest::with(())
        .given(given)
        .when(record("late", 9, END + 5))
        .then_expect_events(vec![]);
}

#[test]
fn a_period_closes_once_after_its_end_with_its_totals_and_cost() {
    let given = with(
        live(Some(10)),
        vec![
            recorded("call_1", 14, START + 10, START, 4),
            Ev::OverageReported {
                key: s("usage:call_1"),
                period_start: START,
                overage_minutes: 4,
                meter_event_identifier: s("sub_1:usage:call_1"),
            },
        ],
    );
    SubTest::with(())
        .given(given.clone())
        .when(close(12, END - 1))
        .then_expect_error(SubscriptionError::InvalidInput(s(
            "the metering period has not ended yet",
        )));
    // No renewal announced by Stripe: the next period is the next calendar month's length.
    let closed = Ev::PeriodClosed {
        period_start: START,
        period_end: END,
        total_minutes: 14,
        included_minutes: 10,
        overage_minutes: 4,
        overage_rate_cents: 12,
        overage_cost_cents: 48,
        reported_minutes: 4,
        unbilled_minutes: 0,
    };
    let next = chrono::DateTime::from_timestamp(END, 0)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .map(|d| d.timestamp())
        .unwrap_or_default();
    SubTest::with(())
        .given(given.clone())
        .when(close(12, END))
        .then_expect_events(vec![closed.clone(), opened(END, next)]);
    SubTest::with(())
        .given(with(given, vec![closed, opened(END, next)]))
        .when(close(12, END + 100))
        .then_expect_events(vec![]);
}

#[test]
fn a_canceled_subscription_closes_its_last_period_and_meters_nothing_after() {
    let canceled = with(
        live(Some(10)),
        vec![Ev::SubscriptionCanceled {
            stripe_event_id: s("evt_del"),
            stripe_created: 500,
        }],
    );
    let closed = Ev::PeriodClosed {
        period_start: START,
        period_end: END,
        total_minutes: 0,
        included_minutes: 10,
        overage_minutes: 0,
        overage_rate_cents: 12,
        overage_cost_cents: 0,
        reported_minutes: 0,
        unbilled_minutes: 0,
    };
    SubTest::with(())
        .given(canceled.clone())
        .when(close(12, END))
        .then_expect_events(vec![closed.clone()]);
    SubTest::with(())
        .given(with(canceled, vec![closed]))
        .when(record("after", 3, END + 50))
        .then_expect_events(vec![]);
}

#[test]
fn a_call_of_the_previous_period_is_not_metered_again_after_the_close() {
    let next = END + 30 * DAY;
    SubTest::with(())
        .given(with(
            live(Some(10)),
            vec![
                recorded("call_1", 3, START + 10, START, 0),
                Ev::PeriodClosed {
                    period_start: START,
                    period_end: END,
                    total_minutes: 3,
                    included_minutes: 10,
                    overage_minutes: 0,
                    overage_rate_cents: 12,
                    overage_cost_cents: 0,
                    reported_minutes: 0,
                    unbilled_minutes: 0,
                },
                opened(END, next),
            ],
        ))
        .when(record("call_1", 3, START + 10))
        .then_expect_events(vec![]);
}

#[test]
fn overage_is_pending_until_stripe_accepts_it_and_is_reported_once() {
    let given = with(
        live(Some(10)),
        vec![recorded("call_1", 14, START + 10, START, 4)],
    );
    let sub = replay::<Subscription>(given.clone());
    assert_eq!(
        sub.pending_reports.get("usage:call_1"),
        Some(&PendingReport {
            period_start: START,
            minutes: 4,
            at: START + 10,
        })
    );
    let report = || C::ReportOverage {
        key: s("usage:call_1"),
        meter_event_identifier: s("sub_1:usage:call_1"),
    };
    let reported = Ev::OverageReported {
        key: s("usage:call_1"),
        period_start: START,
        overage_minutes: 4,
        meter_event_identifier: s("sub_1:usage:call_1"),
    };
    SubTest::with(())
        .given(given.clone())
        .when(report())
        .then_expect_events(vec![reported.clone()]);
    let after = with(given, vec![reported]);
    let sub = replay::<Subscription>(after.clone());
    assert!(sub.pending_reports.is_empty());
    assert_eq!(sub.period_reported_minutes, 4);
    SubTest::with(())
        .given(after)
        .when(report())
        .then_expect_events(vec![]);
    SubTest::with(())
        .given(live(Some(10)))
        .when(report())
        .then_expect_error(SubscriptionError::InvalidInput(s(
            "no such overage report is pending",
        )));
}

#[test]
fn overage_no_call_claimed_is_pending_from_the_close() {
    // 80 minutes used on a 100-minute plan, then the plan drops to 50: 30 minutes of
    // overage no call's report covers.
    let given = with(
        live(Some(100)),
        vec![
            recorded("call_1", 80, START + 10, START, 0),
            synced(St::Active, Some(50), END, 300),
        ],
    );
    let closed = Ev::PeriodClosed {
        period_start: START,
        period_end: END,
        total_minutes: 80,
        included_minutes: 50,
        overage_minutes: 30,
        overage_rate_cents: 10,
        overage_cost_cents: 300,
        reported_minutes: 0,
        unbilled_minutes: 30,
    };
    let next = chrono::DateTime::from_timestamp(END, 0)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .map(|d| d.timestamp())
        .unwrap_or_default();
    SubTest::with(())
        .given(given.clone())
        .when(close(10, END))
        .then_expect_events(vec![closed.clone(), opened(END, next)]);
    let sub = replay::<Subscription>(with(given, vec![closed, opened(END, next)]));
    assert_eq!(
        sub.pending_reports_of(START),
        vec![(
            &format!("close:{START}"),
            &PendingReport {
                period_start: START,
                minutes: 30,
                at: END - 1,
            }
        )]
    );
}

#[test]
fn a_close_is_requested_once_and_only_after_the_end() {
    let request = |at: i64| C::RequestPeriodClose {
        period_start: START,
        at: t(at - START),
    };
    let requested = Ev::PeriodCloseRequested {
        period_start: START,
        period_end: END,
    };
    SubTest::with(())
        .given(live(Some(10)))
        .when(request(END))
        .then_expect_events(vec![requested.clone()]);
    SubTest::with(())
        .given(with(live(Some(10)), vec![requested]))
        .when(request(END + 60))
        .then_expect_events(vec![]);
    SubTest::with(())
        .given(live(Some(10)))
        .when(request(END - 60))
        .then_expect_error(SubscriptionError::InvalidInput(s(
            "the metering period has not ended yet",
        )));
    SubTest::with(())
        .given(live(Some(10)))
        .when(C::RequestPeriodClose {
            period_start: START - 1,
            at: t(END),
        })
        .then_expect_error(SubscriptionError::InvalidInput(s(
            "no such open metering period",
        )));
}

#[test]
fn the_safety_net_announces_a_threshold_the_usage_reached_after_a_plan_change() {
    let given = with(
        live(Some(100)),
        vec![
            recorded("call_1", 50, START + 10, START, 0),
            synced(St::Active, Some(60), END, 300),
        ],
    );
    SubTest::with(())
        .given(given.clone())
        .when(C::CheckThresholds {
            at: t(START + 100 - START),
        })
        .then_expect_events(vec![threshold(80, 50, 60)]);
    // After the period's end the close takes over.
    SubTest::with(())
        .given(given)
        .when(C::CheckThresholds { at: t(END - START) })
        .then_expect_events(vec![]);
}

#[test]
fn notifications_are_requested_once_per_key() {
    let notification = Notification {
        channel: NotificationChannel::Email,
        recipients: vec![s("owner@example.com")],
        subject: Some(s("80% of your minutes")),
        body: s("You have used 80 of 100 minutes."),
    };
    let request = |notifications: Vec<Notification>| C::RequestNotifications {
        key: s("usage:1700000000:80"),
        reason: s("usage_threshold"),
        notifications,
        at: t(10),
    };
    let requested = Ev::NotificationsRequested {
        key: s("usage:1700000000:80"),
        reason: s("usage_threshold"),
        notifications: vec![notification.clone()],
        at: t(10),
    };
    SubTest::with(())
        .given(live(Some(100)))
        .when(request(vec![notification.clone()]))
        .then_expect_events(vec![requested.clone()]);
    SubTest::with(())
        .given(with(live(Some(100)), vec![requested]))
        .when(request(vec![notification]))
        .then_expect_events(vec![]);
    SubTest::with(())
        .given(live(Some(100)))
        .when(request(Vec::new()))
        .then_expect_events(vec![]);
}

#[test]
fn metering_events_are_pinned_and_the_state_round_trips() {
    let events = vec![
        (opened(START, END), "PeriodOpened"),
        (recorded("c", 1, START, START, 0), "UsageRecorded"),
        (threshold(80, 8, 10), "UsageThresholdReached"),
        (
            Ev::PeriodCloseRequested {
                period_start: START,
                period_end: END,
            },
            "PeriodCloseRequested",
        ),
        (
            Ev::OverageReported {
                key: s("usage:c"),
                period_start: START,
                overage_minutes: 1,
                meter_event_identifier: s("sub_1:usage:c"),
            },
            "OverageReported",
        ),
    ];
    for (event, name) in events {
        assert_eq!(event.event_type(), name);
        let value = serde_json::to_value(&event).expect("serializes");
        assert!(value.get(name).is_some(), "{name} is the serde tag");
        let back: Ev = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, event);
    }
    let sub = replay::<Subscription>(with(
        live(Some(10)),
        vec![
            recorded("c1", 9, START + 1, START, 0),
            threshold(80, 9, 10),
            recorded("c2", 2, END + 1, END, 0),
        ],
    ));
    let json = serde_json::to_string(&sub).expect("serializes");
    let back: Subscription = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, sub);
}
