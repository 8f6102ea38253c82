//! Onboarding as a process, against local VAPI, Twilio, Stripe and Resend that remember what
//! they created: every step runs once with its progress shown; a failed step is shown and
//! resumed by a retry; and a real service killed (`kill -9`) at each step in turn, then
//! restarted, ends with one assistant, one number bought, one Stripe customer and one
//! welcome email.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::*;
use crate::stripe_stub::StripeStub;
use crate::stubs::Stubs;
use crate::telephony_stub::TelephonyStub;

const STEPS: [&str; 6] = [
    "creating_assistant",
    "syncing_assistant",
    "provisioning_number",
    "linking_number",
    "setting_up_billing",
    "sending_welcome",
];

fn request() -> Value {
    json!({"business_name": "Acme Haulage", "template_slug": "trucking-dispatch",
           "variables": {"dispatch_hours": "6am to 8pm"}, "area_code": "512"})
}

/// Welcome emails sent, by idempotency key.
fn welcome_keys(stubs: &Stubs) -> BTreeSet<String> {
    stubs
        .requests_to("/emails")
        .into_iter()
        .filter_map(|(_, headers, _)| headers.get("idempotency-key").cloned())
        .filter(|k| k.starts_with("onboarding-welcome:"))
        .collect()
}

fn customers(stripe: &StripeStub) -> BTreeSet<String> {
    stripe
        .requests_to("/v1/customers")
        .into_iter()
        .filter(|s| s.status == 200)
        .filter_map(|s| s.idempotency_key)
        .collect()
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let res = client.get(url).send().await.expect("request");
    assert!(res.status().is_success(), "GET {url}: {}", res.status());
    res.json().await.expect("json")
}

async fn onboarding_runs_every_step_once_and_shows_its_progress(backend: &str) {
    let (telephony, stripe) = (
        TelephonyStub::start(Duration::ZERO).await,
        StripeStub::start().await,
    );
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_app_with(backend, |c| {
        stubs.configure(c);
        telephony.configure(c);
        stripe.configure(c);
    })
    .await;
    let url = format!("{}/api/v1/onboarding", app.base);
    let before = get(&app.client, &url).await;
    assert_eq!(before["data"]["status"], "not_started");
    let member = app.join_as("member@acme.test", "admin").await;
    let res = member.post(&url).json(&request()).send().await.unwrap();
    assert_eq!(res.status(), 403, "an admin is not the owner");
    let (status, body) = app
        .post_json(
            "/api/v1/onboarding",
            json!({"business_name": "Acme", "template_slug": "nope"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_template");
    let (status, body) = app.post_json("/api/v1/onboarding", request()).await;
    assert_eq!(status, 202, "{body}");
    app.processes_done().await;
    let done = get(&app.client, &url).await;
    let data = &done["data"];
    assert_eq!(data["status"], "completed", "{done}");
    assert_eq!(data["completed_steps"], json!(STEPS));
    assert_eq!(data["phone_number"], "+15125550100");
    assert_eq!(data["vapi_assistant_id"], "vapi-asst-1");
    let assistant = data["assistant_id"].as_str().unwrap();
    // The number answers with the assistant, in VAPI and in our records.
    {
        let created = telephony.created.lock().unwrap();
        assert_eq!(created.assistants.len(), 1);
        assert_eq!(created.bought, 1);
        assert_eq!(
            created.vapi_numbers,
            vec![(
                "vapi-pn-1".to_string(),
                "+15125550100".to_string(),
                Some("vapi-asst-1".to_string())
            )]
        );
    }
    let numbers = get(&app.client, &format!("{}/api/v1/phone-numbers", app.base)).await;
    assert_eq!(numbers["data"][0]["assistant_id"], assistant);
    assert_eq!(customers(&stripe).len(), 1);
    assert_eq!(welcome_keys(&stubs).len(), 1);
    let (status, body) = app.post_json("/api/v1/onboarding", request()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "onboarding_already_requested");
}

async fn a_failed_step_is_shown_and_a_retry_resumes_from_it(backend: &str) {
    let (telephony, stripe) = (
        TelephonyStub::start(Duration::ZERO).await,
        StripeStub::start().await,
    );
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_app_with(backend, |c| {
        stubs.configure(c);
        telephony.configure(c);
        stripe.configure(c);
    })
    .await;
    // Stripe refuses the customer once (a refusal is not retried by itself).
    stripe.fail_first("/v1/customers", &[400]);
    let (status, _) = app.post_json("/api/v1/onboarding", request()).await;
    assert_eq!(status, 202);
    app.processes_done().await;
    let url = format!("{}/api/v1/onboarding", app.base);
    let failed = get(&app.client, &url).await;
    let data = &failed["data"];
    assert_eq!(data["status"], "failed", "{failed}");
    assert_eq!(data["current_step"], "setting_up_billing");
    assert!(
        data["error"].as_str().unwrap().contains("stripe refused"),
        "{failed}"
    );
    assert_eq!(data["steps"][5]["status"], "skipped");
    assert_eq!(
        data["phone_number"], "+15125550100",
        "what was done stays done"
    );
    assert!(welcome_keys(&stubs).is_empty());
    let (status, body) = app.post_json("/api/v1/onboarding/retry", json!({})).await;
    assert_eq!(status, 202, "{body}");
    app.processes_done().await;
    let done = get(&app.client, &url).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    assert_eq!(telephony.created.lock().unwrap().bought, 1);
    assert_eq!(customers(&stripe).len(), 1);
    assert_eq!(welcome_keys(&stubs).len(), 1);
    let (status, body) = app.post_json("/api/v1/onboarding/retry", json!({})).await;
    assert_eq!(status, 409, "{body}");
}

/// Starts a service on `url` with the stubs, onboards, kills it with `kill -9` once the
/// onboarding is at `step`, restarts it and waits for the onboarding to complete.
async fn killed_at(backend: &str, step: usize) {
    let telephony = TelephonyStub::start(Duration::from_millis(150)).await;
    let stripe = StripeStub::start().await;
    let stubs = Stubs::start(Duration::from_millis(100)).await;
    let url = eventlog::testing::fresh_url(backend).await;
    let mut env: Vec<(String, String)> = telephony.env();
    env.extend(stripe.env());
    env.extend([
        ("RESEND_BASE_URL".to_string(), stubs.uri()),
        ("RESEND_API_KEY".to_string(), "re_test_key".to_string()),
        ("PROCESS_FIRST_BACKOFF_MS".to_string(), "100".to_string()),
        ("PROVISIONING_TIMEOUT_SECS".to_string(), "2".to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut first = ChildService::start(&url, &env);
    let email = format!("owner-{step}-{backend}@onboard.test");
    let (token, _) = sign_up_over_http(&first.base, &url, &email).await;
    let client = authed_client(&token);
    let res = client
        .post(format!("{}/api/v1/onboarding", first.base))
        .json(&request())
        .send()
        .await
        .expect("onboarding");
    assert_eq!(res.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get(&client, &format!("{}/api/v1/onboarding", first.base)).await;
        let at = status["data"]["current_step"].as_str().unwrap_or("");
        let done = status["data"]["completed_steps"]
            .as_array()
            .map_or(0, Vec::len);
        if at == STEPS[step] || done > step {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {}: {status}",
            STEPS[step]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let restarted = ChildService::start(&url, &env);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = get(&client, &format!("{}/api/v1/onboarding", restarted.base)).await;
        if status["data"]["status"] == "completed" {
            break status;
        }
        assert!(
            status["data"]["status"] != "failed" && Instant::now() < deadline,
            "killed at {}: {status}",
            STEPS[step]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let created = telephony.created.lock().unwrap();
    let at = STEPS[step];
    assert_eq!(
        created.assistants.len(),
        1,
        "killed at {at}: one VAPI assistant"
    );
    assert_eq!(created.bought, 1, "killed at {at}: one number bought");
    assert_eq!(
        created.vapi_numbers.len(),
        1,
        "killed at {at}: one VAPI number"
    );
    assert_eq!(
        customers(&stripe).len(),
        1,
        "killed at {at}: one Stripe customer"
    );
    assert_eq!(
        welcome_keys(&stubs).len(),
        1,
        "killed at {at}: one welcome email"
    );
    assert_eq!(status["data"]["phone_number"], "+15125550100");
}

async fn killed_at_each_step_then_restarted_onboarding_creates_everything_once(backend: &str) {
    for step in 0..STEPS.len() {
        killed_at(backend, step).await;
    }
}

crate::both_backends!(
    onboarding_runs_every_step_once_and_shows_its_progress,
    a_failed_step_is_shown_and_a_retry_resumes_from_it,
    killed_at_each_step_then_restarted_onboarding_creates_everything_once,
);
