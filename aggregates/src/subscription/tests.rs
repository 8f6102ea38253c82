use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::replay;

type SubTest = TestFramework<Subscription>;
type C = SubscriptionCommand;
type Ev = SubscriptionEvent;
type St = SubscriptionStatus;

pub(super) const ORG: Uuid = Uuid::from_u128(9);

pub(super) fn s(v: &str) -> String {
    v.to_string()
}

pub(super) fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0)
        .single()
        .expect("valid timestamp")
}

pub(super) fn checkout_completed() -> Ev {
    Ev::CheckoutCompleted {
        organization_id: ORG,
        customer_id: s("cus_1"),
        subscription_id: s("sub_1"),
        plan: Some(s("starter")),
        checkout_session_id: s("cs_1"),
        stripe_event_id: s("evt_checkout"),
        stripe_created: 100,
    }
}

fn sync(status: St, event_id: &str, created: i64) -> C {
    C::SyncSubscription {
        organization_id: Some(ORG),
        customer_id: s("cus_1"),
        status,
        plan: Some(s("starter")),
        price_id: Some(s("price_1")),
        subscription_item_id: Some(s("si_1")),
        included_minutes: Some(500),
        current_period_start: Some(1000),
        current_period_end: Some(2000),
        cancel_at_period_end: false,
        stripe_event_id: s(event_id),
        stripe_created: created,
    }
}

pub(super) fn status_changed(status: St, event_id: &str, created: i64) -> Ev {
    Ev::SubscriptionStatusChanged {
        organization_id: Some(ORG),
        customer_id: s("cus_1"),
        status,
        plan: Some(s("starter")),
        price_id: Some(s("price_1")),
        subscription_item_id: Some(s("si_1")),
        included_minutes: Some(500),
        current_period_start: Some(1000),
        current_period_end: Some(2000),
        cancel_at_period_end: false,
        stripe_event_id: s(event_id),
        stripe_created: created,
    }
}

pub(super) fn active() -> Vec<Ev> {
    vec![
        checkout_completed(),
        status_changed(St::Active, "evt_a", 200),
        opened(),
    ]
}

/// The first metering period, opened by the first sync with Stripe's bounds.
fn opened() -> Ev {
    Ev::PeriodOpened {
        period_start: 1000,
        period_end: 2000,
    }
}

pub(super) fn with(mut events: Vec<Ev>, more: Vec<Ev>) -> Vec<Ev> {
    events.extend(more);
    events
}

fn invoice_paid(invoice_id: &str, event_id: &str) -> Ev {
    Ev::InvoicePaid {
        invoice_id: s(invoice_id),
        amount_paid_cents: 4900,
        currency: s("usd"),
        period_start: 1000,
        period_end: 2000,
        hosted_invoice_url: None,
        stripe_event_id: s(event_id),
        stripe_created: 300,
    }
}

fn pay_invoice(invoice_id: &str, event_id: &str) -> C {
    C::RecordInvoicePaid {
        invoice_id: s(invoice_id),
        amount_paid_cents: 4900,
        currency: s("usd"),
        period_start: 1000,
        period_end: 2000,
        hosted_invoice_url: None,
        stripe_event_id: s(event_id),
        stripe_created: 300,
    }
}

fn payment_failed(event_id: &str, created: i64) -> Ev {
    Ev::PaymentFailed {
        invoice_id: s("in_2"),
        amount_due_cents: 4900,
        currency: s("usd"),
        stripe_event_id: s(event_id),
        stripe_created: created,
    }
}

fn fail_payment(event_id: &str, created: i64) -> C {
    C::RecordPaymentFailed {
        invoice_id: s("in_2"),
        amount_due_cents: 4900,
        currency: s("usd"),
        stripe_event_id: s(event_id),
        stripe_created: created,
    }
}

#[test]
fn a_completed_checkout_links_the_subscription_to_the_organization() {
    SubTest::with(())
        .given_no_previous_events()
        .when(C::CompleteCheckout {
            organization_id: ORG,
            customer_id: s("cus_1"),
            subscription_id: s("sub_1"),
            plan: Some(s("starter")),
            checkout_session_id: s("cs_1"),
            stripe_event_id: s("evt_checkout"),
            stripe_created: 100,
        })
        .then_expect_events(vec![checkout_completed()]);
    let sub = replay::<Subscription>(vec![checkout_completed()]);
    assert_eq!(sub.organization_id, Some(ORG));
    assert_eq!(sub.customer_id.as_deref(), Some("cus_1"));
}

#[test]
fn a_second_checkout_completion_is_a_no_op() {
    SubTest::with(())
        .given(vec![checkout_completed()])
        .when(C::CompleteCheckout {
            organization_id: ORG,
            customer_id: s("cus_1"),
            subscription_id: s("sub_1"),
            plan: None,
            checkout_session_id: s("cs_1"),
            stripe_event_id: s("evt_other"),
            stripe_created: 101,
        })
        .then_expect_events(vec![]);
}

// ---- Status sync ----

#[test]
fn a_subscription_sync_changes_the_status() {
    SubTest::with(())
        .given(vec![checkout_completed()])
        .when(sync(St::Active, "evt_a", 200))
        .then_expect_events(vec![status_changed(St::Active, "evt_a", 200), opened()]);
}

#[test]
fn a_sync_may_arrive_before_the_checkout() {
    SubTest::with(())
        .given_no_previous_events()
        .when(sync(St::Trialing, "evt_a", 200))
        .then_expect_events(vec![status_changed(St::Trialing, "evt_a", 200), opened()]);
}

#[test]
fn a_redelivered_stripe_event_id_is_a_no_op() {
    SubTest::with(())
        .given(active())
        .when(sync(St::PastDue, "evt_a", 250))
        .then_expect_events(vec![]);
    SubTest::with(())
        .given(with(active(), vec![invoice_paid("in_1", "evt_paid")]))
        .when(pay_invoice("in_other", "evt_paid"))
        .then_expect_events(vec![]);
}

#[test]
fn a_stale_stripe_update_does_not_roll_back_the_status() {
    SubTest::with(())
        .given(with(
            active(),
            vec![status_changed(St::PastDue, "evt_b", 300)],
        ))
        .when(sync(St::Active, "evt_old", 250))
        .then_expect_events(vec![]);
    let sub = replay::<Subscription>(with(
        active(),
        vec![status_changed(St::PastDue, "evt_b", 300)],
    ));
    assert_eq!(sub.status, Some(St::PastDue));
    assert_eq!(sub.last_stripe_created, Some(300));
}

#[test]
fn an_update_with_the_same_created_time_is_applied() {
    SubTest::with(())
        .given(active())
        .when(sync(St::PastDue, "evt_b", 200))
        .then_expect_events(vec![status_changed(St::PastDue, "evt_b", 200)]);
}

#[test]
fn a_sync_without_optional_fields_keeps_known_values() {
    let sub = replay::<Subscription>(with(
        active(),
        vec![Ev::SubscriptionStatusChanged {
            organization_id: None,
            customer_id: s(""),
            status: St::Active,
            plan: None,
            price_id: None,
            subscription_item_id: None,
            included_minutes: None,
            current_period_start: Some(2000),
            current_period_end: Some(3000),
            cancel_at_period_end: true,
            stripe_event_id: s("evt_c"),
            stripe_created: 400,
        }],
    ));
    assert_eq!(sub.organization_id, Some(ORG));
    assert_eq!(sub.customer_id.as_deref(), Some("cus_1"));
    assert_eq!(sub.price_id.as_deref(), Some("price_1"));
    assert_eq!(sub.included_minutes, Some(500));
    assert_eq!(sub.current_period_start, Some(2000));
    assert!(sub.cancel_at_period_end);
}

// ---- Cancel ----

#[test]
fn a_subscription_is_canceled() {
    SubTest::with(())
        .given(active())
        .when(C::Cancel {
            stripe_event_id: s("evt_del"),
            stripe_created: 500,
        })
        .then_expect_events(vec![Ev::SubscriptionCanceled {
            stripe_event_id: s("evt_del"),
            stripe_created: 500,
        }]);
}

#[test]
fn canceling_a_canceled_subscription_is_a_no_op() {
    SubTest::with(())
        .given(with(
            active(),
            vec![Ev::SubscriptionCanceled {
                stripe_event_id: s("evt_del"),
                stripe_created: 500,
            }],
        ))
        .when(C::Cancel {
            stripe_event_id: s("evt_del2"),
            stripe_created: 501,
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_older_active_update_after_cancel_is_a_no_op() {
    let canceled = with(
        active(),
        vec![Ev::SubscriptionCanceled {
            stripe_event_id: s("evt_del"),
            stripe_created: 500,
        }],
    );
    SubTest::with(())
        .given(canceled.clone())
        .when(sync(St::Active, "evt_late", 450))
        .then_expect_events(vec![]);
    SubTest::with(())
        .given(canceled)
        .when(sync(St::Active, "evt_same_second", 500))
        .then_expect_events(vec![]);
}

// ---- Invoices ----

#[test]
fn a_paid_invoice_is_recorded() {
    SubTest::with(())
        .given(active())
        .when(pay_invoice("in_1", "evt_paid"))
        .then_expect_events(vec![invoice_paid("in_1", "evt_paid")]);
}

#[test]
fn a_duplicate_paid_invoice_is_a_no_op() {
    SubTest::with(())
        .given(with(active(), vec![invoice_paid("in_1", "evt_paid")]))
        .when(pay_invoice("in_1", "evt_paid_again"))
        .then_expect_events(vec![]);
}

#[test]
fn a_payment_failure_moves_the_subscription_to_past_due() {
    SubTest::with(())
        .given(active())
        .when(fail_payment("evt_fail", 300))
        .then_expect_events(vec![
            payment_failed("evt_fail", 300),
            status_changed(St::PastDue, "evt_fail", 300),
        ]);
}

#[test]
fn a_payment_failure_on_a_canceled_subscription_keeps_it_canceled() {
    SubTest::with(())
        .given(with(
            active(),
            vec![Ev::SubscriptionCanceled {
                stripe_event_id: s("evt_del"),
                stripe_created: 250,
            }],
        ))
        .when(fail_payment("evt_fail", 300))
        .then_expect_events(vec![payment_failed("evt_fail", 300)]);
}

#[test]
fn a_payment_failure_on_a_past_due_subscription_only_records_the_failure() {
    SubTest::with(())
        .given(with(
            active(),
            vec![status_changed(St::PastDue, "evt_b", 250)],
        ))
        .when(fail_payment("evt_fail", 300))
        .then_expect_events(vec![payment_failed("evt_fail", 300)]);
}

#[test]
fn a_stale_payment_failure_does_not_change_a_newer_status() {
    SubTest::with(())
        .given(with(
            active(),
            vec![status_changed(St::Active, "evt_b", 400)],
        ))
        .when(fail_payment("evt_fail", 300))
        .then_expect_events(vec![payment_failed("evt_fail", 300)]);
}

#[test]
fn a_redelivered_payment_failure_is_a_no_op() {
    SubTest::with(())
        .given(with(
            active(),
            vec![
                payment_failed("evt_fail", 300),
                status_changed(St::PastDue, "evt_fail", 300),
            ],
        ))
        .when(fail_payment("evt_fail", 300))
        .then_expect_events(vec![]);
}

// ---- Contracts ----

#[test]
fn seen_stripe_event_ids_are_bounded() {
    let events: Vec<Ev> = (0..250)
        .map(|i| invoice_paid(&format!("in_{i}"), &format!("evt_{i}")))
        .collect();
    let sub = replay::<Subscription>(events);
    assert_eq!(sub.seen_event_ids.len(), SEEN_EVENT_IDS_LIMIT);
    assert!(!sub.has_seen("evt_0"));
    assert!(sub.has_seen("evt_249"));
    assert_eq!(sub.paid_invoices.len(), 250);
}

#[test]
fn subscription_state_survives_a_json_round_trip() {
    let sub = replay::<Subscription>(with(
        active(),
        vec![
            invoice_paid("in_1", "evt_paid"),
            payment_failed("evt_fail", 300),
            status_changed(St::PastDue, "evt_fail", 300),
        ],
    ));
    let json = serde_json::to_string(&sub).expect("serializes");
    let back: Subscription = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, sub);
}

#[test]
fn subscription_statuses_serialize_in_snake_case() {
    assert_eq!(
        serde_json::to_value(St::IncompleteExpired).expect("ser"),
        json!("incomplete_expired")
    );
    assert_eq!(
        serde_json::to_value(St::PastDue).expect("ser"),
        json!("past_due")
    );
}

#[test]
fn subscription_event_types_are_pinned() {
    let events = vec![
        (checkout_completed(), "CheckoutCompleted"),
        (
            status_changed(St::Active, "e", 1),
            "SubscriptionStatusChanged",
        ),
        (
            Ev::SubscriptionCanceled {
                stripe_event_id: s("e"),
                stripe_created: 1,
            },
            "SubscriptionCanceled",
        ),
        (invoice_paid("i", "e"), "InvoicePaid"),
        (payment_failed("e", 1), "PaymentFailed"),
    ];
    for (event, name) in events {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1");
        let value = serde_json::to_value(&event).expect("serializes");
        assert!(value.get(name).is_some(), "{name} is the serde tag");
        let back: Ev = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, event);
    }
    assert_eq!(<Subscription as cqrs_es::Aggregate>::TYPE, "subscription");
    assert_eq!(
        SubscriptionError::InvalidInput(s("x")).code(),
        "invalid_input"
    );
}
