//! The billing loop against a local Stripe that checks what it is sent and fails on purpose,
//! on both backends: checkout → Stripe's signed events → an active subscription with its
//! plan's minutes; calls past the plan → one meter event per overage report (none repeated
//! after a failed attempt); 80% and 100% alerts once each; the period's close on a clock the
//! test moves → one `PeriodClosed`, one summary email; a failed payment shown and emailed.

use std::time::Duration;

use aggregates::organization::{NotificationSettings, OrganizationCommand, OrganizationSettings};
use callflex::plans::Plans;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::stripe_stub::{complete_checkout, deliver, StripeStub};
use crate::stubs::Stubs;

const DAY: i64 = 86_400;

/// One plan: 10 minutes included, 15 cents a minute beyond.
fn tiny_plan() -> Plans {
    Plans::parse(
        r#"[{"id": "tiny", "name": "Tiny", "stripe_price_id": "price_tiny",
             "monthly_price_cents": 900, "included_minutes": 10,
             "overage_cents_per_minute": 15, "meter_event_name": "callflex_minutes"}]"#,
    )
    .expect("a valid catalogue")
}

async fn spawn(backend: &str, stripe: &StripeStub, stubs: &Stubs) -> TestApp {
    spawn_app_with(backend, |c| {
        stubs.configure(c);
        stripe.configure(c);
        c.plans = tiny_plan();
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "GET {path}: {status} {body}");
    body
}

/// A call of `minutes` whole minutes that ended `ago` seconds ago.
async fn call(app: &TestApp, id: &str, minutes: i64, ago: i64) {
    let ended = chrono::Utc::now() - chrono::Duration::seconds(ago);
    let started = ended - chrono::Duration::seconds(minutes * 60 - 10);
    app.vapi_ok(&vapi_message(
        "end-of-call-report",
        id,
        json!({
            "endedReason": "customer-ended-call",
            "startedAt": started.to_rfc3339(),
            "endedAt": ended.to_rfc3339(),
        }),
    ))
    .await;
}

/// The billing emails received (usage alerts, summaries, payment failures), by subject.
fn billing_emails(stubs: &Stubs) -> Vec<(String, Vec<String>)> {
    stubs
        .notification_emails()
        .into_iter()
        .filter_map(|(_, _, body)| {
            let email: Value = serde_json::from_str(&body).ok()?;
            let subject = email["subject"].as_str()?.to_string();
            let to = email["to"]
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
            Some((subject, to))
        })
        .collect()
}

async fn checkout_and_subscribe(app: &TestApp, stripe: &StripeStub, period: (i64, i64)) -> String {
    let res = app
        .client
        .post(format!("{}/api/v1/billing/checkout", app.base))
        .header("Idempotency-Key", "subscribe-1")
        .json(&json!({"plan": "tiny", "success_url": "https://app.acme.test/welcome"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session: Value = res.json().await.unwrap();
    let id = session["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(session["data"]["sandbox"], false);
    assert_eq!(
        session["data"]["url"],
        format!("https://checkout.stripe.test/c/pay/{id}")
    );
    let customer = stripe.requests_to("/v1/customers")[0].clone();
    let customer_id = "cus_test_1";
    let org = app.org.to_string();
    complete_checkout(
        (&app.base, &org),
        &id,
        customer_id,
        "tiny",
        "price_tiny",
        period,
    )
    .await;
    assert_eq!(
        customer.form.get("metadata[organization_id]"),
        Some(&app.org.to_string())
    );
    id
}

async fn the_billing_loop_meters_alerts_reports_and_closes(backend: &str) {
    let stripe = StripeStub::start().await;
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn(backend, &stripe, &stubs).await;
    let org = app.org.to_string();

    // Checkout: a customer (once), then a session in subscription mode for the plan's price.
    let now = chrono::Utc::now().timestamp();
    let period = (now - DAY, now + 29 * DAY);
    let session = checkout_and_subscribe(&app, &stripe, period).await;
    let customers = stripe.requests_to("/v1/customers");
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0].idempotency_key.as_deref(),
        Some(format!("customer:{org}").as_str())
    );
    assert_eq!(
        customers[0].form.get("email").map(String::as_str),
        Some("owner@acme.test")
    );
    let sessions = stripe.requests_to("/v1/checkout/sessions");
    let form = &sessions[0].form;
    for (field, value) in [
        ("mode", "subscription"),
        ("customer", "cus_test_1"),
        ("client_reference_id", org.as_str()),
        ("line_items[0][price]", "price_tiny"),
        ("line_items[0][quantity]", "1"),
        ("success_url", "https://app.acme.test/welcome"),
        (
            "cancel_url",
            "https://callflex.test/billing?checkout=canceled",
        ),
        ("metadata[plan]", "tiny"),
        ("subscription_data[metadata][organization_id]", org.as_str()),
    ] {
        assert_eq!(form.get(field).map(String::as_str), Some(value), "{field}");
    }
    assert_eq!(
        sessions[0].idempotency_key.as_deref(),
        Some(format!("checkout:{org}:subscribe-1").as_str())
    );
    // A retry with the same key answers the same session, and creates no second customer.
    let (status, again) = {
        let res = app
            .client
            .post(format!("{}/api/v1/billing/checkout", app.base))
            .header("Idempotency-Key", "subscribe-1")
            .json(&json!({"plan": "tiny", "success_url": "https://app.acme.test/welcome"}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(again["data"]["id"], session.as_str());
    assert_eq!(stripe.requests_to("/v1/customers").len(), 1);

    app.settle().await;
    let billing = get(&app, "/api/v1/billing").await;
    assert_eq!(billing["data"]["status"], "active", "{billing}");
    assert_eq!(billing["data"]["plan"], "tiny");
    assert_eq!(billing["data"]["included_minutes"], 10);
    assert_eq!(billing["data"]["used_minutes"], 0);

    // An integrator listens for usage alerts.
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (status, body) = app
        .post_json(
            "/api/v1/webhook-endpoints",
            json!({"url": format!("{}/usage", receiver.uri()), "event_types": ["usage.threshold_reached"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The business asked for usage alerts by SMS too (sent from its number).
    let system = |command| {
        let state = app.app.state().clone();
        let org = app.org;
        async move {
            state
                .organizations
                .execute(
                    &org.to_string(),
                    command,
                    &eventlog::CommandMeta::new("system:test").tenant(org),
                )
                .await
                .expect("command")
        }
    };
    system(OrganizationCommand::ProvisionPhoneNumber {
        phone_number_id: "pn-1".into(),
        number: "+15125550100".into(),
        provider_sid: "PN1".into(),
        assistant_id: None,
        vapi_phone_number_id: None,
        actor: "system:test".into(),
    })
    .await;
    system(OrganizationCommand::UpdateSettings {
        settings: OrganizationSettings {
            notifications: NotificationSettings {
                sms_enabled: true,
                sms_numbers: vec!["+15550001111".into()],
                usage_alerts_sms: true,
                ..Default::default()
            },
            ..Default::default()
        },
        actor: "system:test".into(),
    })
    .await;

    // 5 + 4 + 3 = 12 minutes on a 10-minute plan: 80% and 100% crossed, 2 minutes over.
    // The first meter event Stripe is sent fails; the retry is accepted once.
    stripe.fail_first("/v1/billing/meter_events", &[500]);
    call(&app, "call-a", 5, 600).await;
    call(&app, "call-b", 4, 500).await;
    call(&app, "call-c", 3, 400).await;
    app.processes_done().await;
    app.settle().await;
    let meter = stripe.meter_events();
    assert_eq!(meter.values().sum::<i64>(), 2, "{meter:?}");
    let subscription = format!("sub_for_{session}");
    assert!(
        meter
            .keys()
            .all(|id| id.starts_with(&format!("{subscription}:usage:"))),
        "{meter:?}"
    );
    let sent = stripe.requests_to("/v1/billing/meter_events");
    assert_eq!(sent.iter().filter(|s| s.status == 500).count(), 1);
    for request in &sent {
        let identifier = &request.form["identifier"];
        assert_eq!(
            request.idempotency_key.as_deref(),
            Some(format!("meter:{identifier}").as_str())
        );
        assert_eq!(request.form["event_name"], "callflex_minutes");
        assert_eq!(request.form["payload[stripe_customer_id]"], "cus_test_1");
    }
    let billing = get(&app, "/api/v1/billing").await;
    assert_eq!(billing["data"]["used_minutes"], 12, "{billing}");
    assert_eq!(billing["data"]["overage_minutes"], 2);
    assert_eq!(billing["data"]["reported_minutes"], 2);
    assert_eq!(billing["data"]["overage_cost_cents"], 30);
    assert_eq!(billing["data"]["thresholds_reached"], json!([80, 100]));
    assert_eq!(app.count_events("UsageThresholdReached").await, 2);
    let alerts: Vec<_> = billing_emails(&stubs)
        .into_iter()
        .filter(|(subject, _)| subject.contains("of your plan's minutes used"))
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts.iter().any(|(s, _)| s.contains("80%")));
    assert!(alerts.iter().any(|(s, _)| s.contains("100%")));
    assert!(alerts.iter().all(|(_, to)| to == &["owner@acme.test"]));
    let hooks: Vec<Value> = receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect();
    let mut percents: Vec<i64> = hooks
        .iter()
        .map(|h| {
            assert_eq!(h["type"], "usage.threshold_reached");
            assert_eq!(h["data"]["subscription_id"], subscription.as_str());
            h["data"]["threshold_percent"].as_i64().unwrap()
        })
        .collect();
    percents.sort_unstable();
    assert_eq!(percents, vec![80, 100], "{hooks:?}");
    let sms: Vec<_> = stubs
        .ledger
        .lock()
        .unwrap()
        .sms
        .iter()
        .filter(|(_, _, _, body)| body.contains("of your plan's minutes used"))
        .cloned()
        .collect();
    assert_eq!(sms.len(), 2, "{sms:?}");
    assert!(sms
        .iter()
        .all(|(_, to, from, _)| to == "+15550001111" && from == "+15125550100"));

    // The period ends: the sweep (a schedule run) closes it once, with its totals.
    let state = app.app.state().clone();
    state.clock.advance(Duration::from_secs(30 * DAY as u64));
    callflex::schedules::tick(&state).await.expect("tick");
    app.processes_done().await;
    state.clock.advance(Duration::from_secs(600));
    callflex::schedules::tick(&state).await.expect("tick");
    app.processes_done().await;
    app.settle().await;
    assert_eq!(app.count_events("PeriodClosed").await, 1);
    let closed = app
        .strings(
            "SELECT CAST(total_minutes AS TEXT) || '/' || CAST(included_minutes AS TEXT) || '/' \
             || CAST(overage_minutes AS TEXT) || '/' || CAST(overage_cents AS TEXT) \
             FROM billing_periods",
        )
        .await;
    assert_eq!(closed, vec!["12/10/2/30"]);
    let summaries: Vec<_> = billing_emails(&stubs)
        .into_iter()
        .filter(|(subject, _)| subject.contains("your usage from"))
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    // Nothing more was billed at the close: every overage minute was already reported.
    assert_eq!(stripe.meter_events().values().sum::<i64>(), 2);
    let billing = get(&app, "/api/v1/billing").await;
    assert_eq!(billing["data"]["used_minutes"], 0, "{billing}");
    let start = billing["data"]["period_start"].as_str().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    assert_eq!(start.timestamp(), period.1);
}

async fn a_failed_payment_is_shown_and_emailed_to_the_owner(backend: &str) {
    let stripe = StripeStub::start().await;
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn(backend, &stripe, &stubs).await;
    let now = chrono::Utc::now().timestamp();
    let session = checkout_and_subscribe(&app, &stripe, (now - DAY, now + 29 * DAY)).await;
    let subscription = format!("sub_for_{session}");
    let invoice = |kind: &str, id: &str, created: i64| {
        json!({"id": format!("evt_{kind}_{id}"), "object": "event", "type": kind, "created": created,
            "data": {"object": {"id": id, "object": "invoice", "customer": "cus_test_1",
                "subscription": subscription, "amount_due": 900, "amount_paid": 900,
                "currency": "usd", "period_start": now - DAY, "period_end": now + 29 * DAY}}})
    };
    assert_eq!(
        deliver(
            &app.base,
            &invoice("invoice.payment_failed", "in_1", now + 5)
        )
        .await,
        200
    );
    app.processes_done().await;
    app.settle().await;
    let billing = get(&app, "/api/v1/billing").await;
    assert_eq!(billing["data"]["status"], "past_due", "{billing}");
    assert_eq!(billing["data"]["payment_failed"]["invoice_id"], "in_1");
    assert_eq!(billing["data"]["payment_failed"]["amount_due_cents"], 900);
    let failed: Vec<_> = billing_emails(&stubs)
        .into_iter()
        .filter(|(subject, _)| subject.contains("a payment failed"))
        .collect();
    assert_eq!(
        failed,
        vec![(
            "Acme Trucking: a payment failed".to_string(),
            vec!["owner@acme.test".to_string()]
        )]
    );
    // Stripe retries the delivery: nothing new.
    assert_eq!(
        deliver(
            &app.base,
            &invoice("invoice.payment_failed", "in_1", now + 5)
        )
        .await,
        200
    );
    assert_eq!(
        deliver(&app.base, &invoice("invoice.paid", "in_1", now + 60)).await,
        200
    );
    app.processes_done().await;
    app.settle().await;
    let billing = get(&app, "/api/v1/billing").await;
    assert!(billing["data"].get("payment_failed").is_none(), "{billing}");
    assert_eq!(
        billing_emails(&stubs)
            .iter()
            .filter(|(s, _)| s.contains("a payment failed"))
            .count(),
        1
    );
}

/// A call that ended before the subscription was known to the metering (here: before the
/// checkout completed, inside Stripe's first period) is metered by the daily run.
async fn the_daily_run_meters_a_call_the_metering_missed(backend: &str) {
    let stripe = StripeStub::start().await;
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn(backend, &stripe, &stubs).await;
    call(&app, "before-checkout", 12, 3_600).await;
    app.processes_done().await;
    let now = chrono::Utc::now().timestamp();
    let session = checkout_and_subscribe(&app, &stripe, (now - DAY, now + 29 * DAY)).await;
    app.processes_done().await;
    app.settle().await;
    let billing = get(&app, "/api/v1/billing").await;
    assert_eq!(billing["data"]["used_minutes"], 0, "{billing}");
    // The next 02:00 UTC run (the clock moved past it) meters the call and announces the
    // thresholds it crossed; its overage is reported at the period's close.
    let state = app.app.state().clone();
    state.clock.advance(Duration::from_secs(DAY as u64 + 60));
    callflex::schedules::tick(&state).await.expect("tick");
    app.processes_done().await;
    app.settle().await;
    let billing = get(&app, "/api/v1/billing").await;
    assert_eq!(billing["data"]["used_minutes"], 12, "{billing}");
    assert_eq!(billing["data"]["overage_minutes"], 2);
    assert_eq!(billing["data"]["thresholds_reached"], json!([80, 100]));
    assert_eq!(app.count_events("UsageThresholdReached").await, 2);
    let runs = app
        .scalar_i64(
            "SELECT COUNT(*) FROM process_work WHERE kind = 'scheduled_run' \
             AND subject LIKE 'usage_daily:%' AND status = 'completed'",
        )
        .await;
    assert_eq!(runs, 1);
    let _ = session;
}

async fn checkout_is_for_owners_and_admins_and_known_plans_and_runs_sandboxed_without_a_key(
    backend: &str,
) {
    let app = spawn_app_with(backend, |c| c.plans = tiny_plan()).await;
    let plans = get(&app, "/api/v1/billing/plans").await;
    assert_eq!(plans["data"][0]["id"], "tiny");
    assert_eq!(plans["data"][0]["included_minutes"], 10);
    let (status, body) = app
        .post_json("/api/v1/billing/checkout", json!({"plan": "gold"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_plan");
    let (status, body) = app
        .post_json(
            "/api/v1/billing/checkout",
            json!({"plan": "tiny", "success_url": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let member = app.join_as("member@acme.test", "member").await;
    let res = member
        .post(format!("{}/api/v1/billing/checkout", app.base))
        .json(&json!({"plan": "tiny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // No STRIPE_SECRET_KEY: the sandbox answers with our own URL, visibly.
    let (status, body) = app
        .post_json("/api/v1/billing/checkout", json!({"plan": "tiny"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sandbox"], true);
    assert!(body["data"]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://callflex.test/billing/sandbox-checkout"));
    let (status, body) = app.post_json("/api/v1/billing/portal", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sandbox"], true);
}

crate::both_backends!(
    the_billing_loop_meters_alerts_reports_and_closes,
    a_failed_payment_is_shown_and_emailed_to_the_owner,
    the_daily_run_meters_a_call_the_metering_missed,
    checkout_is_for_owners_and_admins_and_known_plans_and_runs_sandboxed_without_a_key,
);
