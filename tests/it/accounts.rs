//! Accounts over real HTTP, on both backends: sign-up, sign-in, sessions, password resets,
//! organizations, members and roles, API keys, and tenant isolation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// One request; `(status, JSON body or Null, Retry-After)`.
async fn call(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    org: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut req = client.request(method, format!("{}{path}", app.base));
    if let Some(org) = org {
        req = req.header("X-Organization-Id", org);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        retry,
    )
}

async fn anonymous(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, Value) {
    let (status, body, _) =
        call(&reqwest::Client::new(), app, method, path, None, Some(body)).await;
    (status, body)
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> (u16, Value, Option<String>) {
    call(
        &reqwest::Client::new(),
        app,
        Method::POST,
        "/api/v1/auth/signin",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A second account with its own organization; returns (client, org id, user id).
async fn other_tenant(app: &TestApp, email: &str) -> (reqwest::Client, String, String) {
    let answer = sign_up(&app.app, email, Some("Other Co")).await;
    (
        authed_client(&s(&answer["token"])),
        s(&answer["organization"]["id"]),
        s(&answer["user"]["id"]),
    )
}

/// Creates an API key in the test organization as its owner; returns the answer.
async fn create_key(app: &TestApp, scopes: Value) -> Value {
    let (status, body, _) = call(
        &app.client,
        app,
        Method::POST,
        &format!("/api/v1/organizations/{}/api-keys", app.org),
        None,
        Some(json!({ "name": "CI", "scopes": scopes })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn a_user_signs_up_signs_in_sees_themselves_and_signing_out_revokes_the_token_at_once(
    backend: &str,
) {
    let app = spawn_app(backend).await;
    let (status, me, _) = call(
        &app.client,
        &app,
        Method::GET,
        "/api/v1/auth/me",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"], "owner@acme.test");
    assert_eq!(me["memberships"][0]["organization_id"], app.org.to_string());
    assert_eq!(me["memberships"][0]["role"], "owner");
    assert_eq!(me["memberships"][0]["status"], "active");

    let (status, session, _) = sign_in(&app, " Owner@ACME.test ", PASSWORD).await;
    assert_eq!(status, 200, "{session}");
    let token = s(&session["token"]);
    assert_eq!(token.len(), 43);
    assert_ne!(token, app.token);
    let client = authed_client(&token);
    let (status, _, _) = call(&client, &app, Method::GET, "/api/v1/calls", None, None).await;
    assert_eq!(status, 200);
    // Only the hash is stored.
    let stored = app
        .strings("SELECT token_hash FROM sessions ORDER BY created_at")
        .await;
    assert!(!stored.contains(&token));
    assert_eq!(stored.len(), 2);

    let (status, _, _) = call(
        &client,
        &app,
        Method::POST,
        "/api/v1/auth/signout",
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body, _) = call(&client, &app, Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");
    // The other session is untouched.
    let (status, _, _) = call(
        &app.client,
        &app,
        Method::GET,
        "/api/v1/auth/me",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let events = app
        .strings(
            "SELECT event_type FROM events WHERE aggregate_type = 'user' ORDER BY global_position",
        )
        .await;
    assert_eq!(
        events,
        [
            "UserRegistered",
            "EmailVerificationRequested",
            "EmailVerified",
            "SignedIn",
            "SignedIn",
            "SignedOut"
        ]
    );
    app.app.stop().await;
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_401(backend: &str) {
    let app = spawn_app(backend).await;
    let (status, wrong, _) = sign_in(&app, "owner@acme.test", "Wrong password 1").await;
    assert_eq!(status, 401);
    let (status, unknown, _) = sign_in(&app, "nobody@acme.test", PASSWORD).await;
    assert_eq!(status, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
    assert_eq!(wrong["error"]["message"], "invalid email or password");
    // The failure is on the account's record for auditors (written in the background).
    let mut failures = 0;
    for _ in 0..100 {
        failures = app
            .scalar_i64("SELECT COUNT(*) FROM events WHERE event_type = 'SignInFailed'")
            .await;
        if failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failures, 1);
    app.app.stop().await;
}

async fn repeated_sign_in_attempts_are_rate_limited_with_retry_after(backend: &str) {
    let app = spawn_app(backend).await;
    for _ in 0..5 {
        let (status, _, _) = sign_in(&app, "owner@acme.test", "Wrong password 1").await;
        assert_eq!(status, 401);
    }
    let (status, body, retry) = sign_in(&app, "owner@acme.test", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry: u64 = retry.and_then(|r| r.parse().ok()).expect("Retry-After");
    assert!(retry >= 1);
    // Another account from the same address still gets through (the per-IP budget is larger).
    sign_up(&app.app, "second@acme.test", None).await;
    let (status, _, _) = sign_in(&app, "second@acme.test", PASSWORD).await;
    assert_eq!(status, 200);
    app.app.stop().await;
}

/// The reset token from the sandboxed email (recorded in `outbound_requests`).
async fn reset_token_from_email(app: &TestApp, email: &str, nth: usize) -> String {
    for _ in 0..100 {
        let bodies = app
            .strings(
                "SELECT body FROM outbound_requests WHERE provider = 'resend' ORDER BY created_at",
            )
            .await;
        let mails: Vec<Value> = bodies
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|m| m["to"][0] == email && s(&m["subject"]).contains("Reset"))
            .collect();
        if let Some(mail) = mails.get(nth) {
            let text = s(&mail["text"]);
            let token = text
                .split("Reset token: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .expect("token in the email");
            return token.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no reset email for {email}");
}

async fn a_password_reset_token_arrives_by_email_works_once_and_revokes_every_session(
    backend: &str,
) {
    let app = spawn_app(backend).await;
    let forgot = |email: &'static str| {
        let app = &app;
        async move {
            anonymous(
                app,
                Method::POST,
                "/api/v1/auth/forgot-password",
                json!({ "email": email }),
            )
            .await
        }
    };
    // No enumeration: an unknown address gets the same answer, and no email.
    let (status, unknown) = forgot("nobody@acme.test").await;
    assert_eq!(status, 202);
    let (status, known) = forgot("OWNER@acme.test").await;
    assert_eq!(status, 202);
    assert_eq!(unknown, known);
    let token = reset_token_from_email(&app, "owner@acme.test", 0).await;
    let sandboxed = app
        .scalar_i64("SELECT COUNT(*) FROM outbound_requests WHERE sandbox = 1")
        .await;
    assert_eq!(
        sandboxed, 2,
        "only the known address got an email (after its verification email)"
    );

    let reset = |token: String, password: &'static str| {
        let app = &app;
        async move {
            anonymous(
                app,
                Method::POST,
                "/api/v1/auth/reset-password",
                json!({ "token": token, "password": password }),
            )
            .await
        }
    };
    let (status, body) = reset(token.clone(), "short").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["rule"], "password_too_short");
    let (status, body) = reset(token.clone(), "A brand new secret 2").await;
    assert_eq!(status, 204, "{body}");
    // Old sessions are gone at once; the token is single-use.
    let (status, _, _) = call(
        &app.client,
        &app,
        Method::GET,
        "/api/v1/auth/me",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = reset(token, "Another new secret 3").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_reset_token");
    let (status, body) = reset("garbage".into(), "Another new secret 3").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = sign_in(&app, "owner@acme.test", PASSWORD).await;
    assert_eq!(status, 401, "the old password no longer works");
    let (status, _, _) = sign_in(&app, "owner@acme.test", "A brand new secret 2").await;
    assert_eq!(status, 200);
    app.app.stop().await;
}

async fn sign_up_refuses_weak_passwords_naming_the_rule(backend: &str) {
    let app = spawn_app(backend).await;
    let cases = [
        ("Short1!", "password_too_short"),
        ("onlylowercaseletters", "password_too_simple"),
        ("new@acme.test", "password_equals_email"),
    ];
    for (password, rule) in cases {
        let (status, body) = anonymous(
            &app,
            Method::POST,
            "/api/v1/auth/signup",
            json!({ "email": "new@acme.test", "password": password, "name": "New" }),
        )
        .await;
        assert_eq!(status, 422, "{password}: {body}");
        assert_eq!(body["error"]["code"], "weak_password");
        assert_eq!(body["error"]["details"]["rule"], rule);
        assert!(s(&body["error"]["message"]).starts_with(rule));
    }
    let (status, _) = anonymous(
        &app,
        Method::POST,
        "/api/v1/auth/signup",
        json!({ "email": "not-an-email", "password": PASSWORD, "name": "X" }),
    )
    .await;
    // The document declares the address's shape: a request outside it is a 400.
    assert_eq!(status, 400);
    let (status, _) = anonymous(&app, Method::POST, "/api/v1/auth/signup", json!({})).await;
    assert_eq!(status, 400, "missing fields");
    app.app.stop().await;
}

async fn two_concurrent_sign_ups_with_one_email_cannot_both_win(backend: &str) {
    let app = spawn_app(backend).await;
    let attempt = || {
        anonymous(
            &app,
            Method::POST,
            "/api/v1/auth/signup",
            json!({ "email": "race@acme.test", "password": PASSWORD, "name": "Racer" }),
        )
    };
    let (a, b) = tokio::join!(attempt(), attempt());
    assert_eq!((a.0, b.0), (202, 202), "{a:?} {b:?}");
    assert_eq!(a.1, b.1, "the same answer for the winner and the loser");
    assert_eq!(
        app.count_events("UserRegistered").await,
        2,
        "the owner and one racer"
    );
    app.app.stop().await;
}

async fn api_keys_are_created_shown_once_listed_used_and_revoked(backend: &str) {
    let app = spawn_app(backend).await;
    let created = create_key(&app, json!(["write", "read", "write"])).await;
    let secret = s(&created["secret"]);
    assert!(secret.starts_with("cfx_"));
    assert_eq!(created["scopes"], json!(["read", "write"]));
    let key_id = s(&created["id"]);
    let keys_path = format!("/api/v1/organizations/{}/api-keys", app.org);
    let (status, list, _) = call(&app.client, &app, Method::GET, &keys_path, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], key_id.as_str());
    assert_eq!(list["data"][0]["revoked"], false);
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once"
    );
    let stored = app.strings("SELECT key_hash FROM api_keys").await;
    assert!(!stored.contains(&secret));

    // The key works without X-Organization-Id (it implies its organization) and writes.
    let key = authed_client(&secret);
    let (status, body, _) = call(
        &key,
        &app,
        Method::POST,
        "/api/v1/contacts",
        None,
        Some(json!({ "phone_number": "+15550009999", "name": "Kim" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let actor = app
        .strings("SELECT actor FROM events WHERE event_type = 'ContactCreated'")
        .await;
    assert_eq!(actor, [format!("api_key:{key_id}")]);
    // A key cannot mint keys.
    let (status, _, _) = call(&key, &app, Method::GET, &keys_path, None, None).await;
    assert_eq!(status, 403);

    let (status, _, _) = call(
        &app.client,
        &app,
        Method::DELETE,
        &format!("{keys_path}/{key_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body, _) = call(&key, &app, Method::GET, "/api/v1/calls", None, None).await;
    assert_eq!(status, 401, "a revoked key stops at once: {body}");
    let (status, list, _) = call(&app.client, &app, Method::GET, &keys_path, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["revoked"], true);
    let (status, body, _) = call(
        &app.client,
        &app,
        Method::DELETE,
        &format!("{keys_path}/no-such-key"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "api_key_not_found");
    app.app.stop().await;
}

async fn an_invited_address_signs_up_accepts_and_is_promoted_then_removed(backend: &str) {
    let app = spawn_app(backend).await;
    let members = format!("/api/v1/organizations/{}/members", app.org);
    let (status, invited, _) = call(
        &app.client,
        &app,
        Method::POST,
        &members,
        None,
        Some(json!({ "email": "Dana@Acme.test", "role": "member" })),
    )
    .await;
    assert_eq!(status, 201, "{invited}");
    assert_eq!(invited["data"]["status"], "invited");
    assert_eq!(invited["data"]["email"], "dana@acme.test");
    let dana_id = s(&invited["data"]["user_id"]);

    // Dana signs up later: the invitation already names her account.
    let dana = sign_up(&app.app, "dana@acme.test", None).await;
    assert_eq!(dana["user"]["id"], dana_id.as_str());
    let dana_client = authed_client(&s(&dana["token"]));
    let (_, me, _) = call(
        &dana_client,
        &app,
        Method::GET,
        "/api/v1/auth/me",
        None,
        None,
    )
    .await;
    assert_eq!(me["memberships"][0]["status"], "invited");
    // Not yet a member: the organization is invisible.
    let org = app.org.to_string();
    let (status, _, _) = call(
        &dana_client,
        &app,
        Method::GET,
        "/api/v1/calls",
        Some(&org),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, accepted, _) = call(
        &dana_client,
        &app,
        Method::POST,
        &format!("{members}/accept"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["data"]["status"], "active");
    let (status, _, _) = call(&dana_client, &app, Method::GET, "/api/v1/calls", None, None).await;
    assert_eq!(status, 200, "her only organization is implied");

    // An existing user invited by address is linked to their account.
    let (_, _, erin_id) = other_tenant(&app, "erin@other.test").await;
    let (status, erin, _) = call(
        &app.client,
        &app,
        Method::POST,
        &members,
        None,
        Some(json!({ "email": "erin@other.test", "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(erin["data"]["user_id"], erin_id.as_str());

    let (status, promoted, _) = call(
        &app.client,
        &app,
        Method::PATCH,
        &format!("{members}/{dana_id}"),
        None,
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["data"]["role"], "admin");
    // An admin may not make owners.
    let (status, _, _) = call(
        &dana_client,
        &app,
        Method::PATCH,
        &format!("{members}/{erin_id}"),
        None,
        Some(json!({ "role": "owner" })),
    )
    .await;
    assert_eq!(status, 403);
    let (status, list, _) = call(&app.client, &app, Method::GET, &members, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(3));
    let (status, _, _) = call(
        &app.client,
        &app,
        Method::DELETE,
        &format!("{members}/{dana_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = call(
        &dana_client,
        &app,
        Method::GET,
        "/api/v1/calls",
        Some(&org),
        None,
    )
    .await;
    assert_eq!(status, 404, "a removed member loses access at once");
    let (status, body, _) = call(
        &app.client,
        &app,
        Method::PATCH,
        &format!("{members}/nobody"),
        None,
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "member_not_found");
    app.app.stop().await;
}

async fn the_last_owner_can_neither_leave_nor_be_demoted(backend: &str) {
    let app = spawn_app(backend).await;
    let me = format!("/api/v1/organizations/{}/members/{}", app.org, app.user_id);
    let (status, body, _) = call(&app.client, &app, Method::DELETE, &me, None, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "last_owner");
    let (status, body, _) = call(
        &app.client,
        &app,
        Method::PATCH,
        &me,
        None,
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "last_owner");
    app.app.stop().await;
}

async fn a_viewer_and_a_read_only_key_can_read_but_not_write(backend: &str) {
    let app = spawn_app(backend).await;
    let members = format!("/api/v1/organizations/{}/members", app.org);
    let (status, _, _) = call(
        &app.client,
        &app,
        Method::POST,
        &members,
        None,
        Some(json!({ "email": "vic@acme.test", "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 201);
    let vic = authed_client(&s(&sign_up(&app.app, "vic@acme.test", None).await["token"]));
    let (status, _, _) = call(
        &vic,
        &app,
        Method::POST,
        &format!("{members}/accept"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let read_only = create_key(&app, json!(["read"])).await;
    let key = authed_client(&s(&read_only["secret"]));
    let org = app.org.to_string();
    for client in [&vic, &key] {
        let (status, _, _) = call(
            client,
            &app,
            Method::GET,
            "/api/v1/contacts",
            Some(&org),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let (status, body, _) = call(
            client,
            &app,
            Method::POST,
            "/api/v1/contacts",
            Some(&org),
            Some(json!({ "phone_number": "+15550001234" })),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, _, _) = call(
        &vic,
        &app,
        Method::PATCH,
        &format!("/api/v1/organizations/{org}"),
        None,
        Some(json!({ "name": "Hijacked" })),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = call(
        &vic,
        &app,
        Method::POST,
        &members,
        None,
        Some(json!({ "email": "x@y.test", "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = call(
        &vic,
        &app,
        Method::DELETE,
        &format!("/api/v1/organizations/{org}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 403);
    app.app.stop().await;
}

async fn organizations_are_created_listed_updated_and_deleted_by_their_owner(backend: &str) {
    let app = spawn_app(backend).await;
    let (status, created, _) = call(
        &app.client,
        &app,
        Method::POST,
        "/api/v1/organizations",
        None,
        Some(json!({ "name": "Second Branch" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["role"], "owner");
    let second = s(&created["data"]["id"]);
    let (_, list, _) = call(
        &app.client,
        &app,
        Method::GET,
        "/api/v1/organizations",
        None,
        None,
    )
    .await;
    let names: Vec<String> = list["data"]
        .as_array()
        .map(|a| a.iter().map(|o| s(&o["name"])).collect())
        .unwrap_or_default();
    assert_eq!(names, ["Acme Trucking", "Second Branch"]);
    // Two organizations: the query API now needs X-Organization-Id.
    let (status, body, _) = call(&app.client, &app, Method::GET, "/api/v1/calls", None, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "organization_required");

    let path = format!("/api/v1/organizations/{second}");
    let (status, patched, _) = call(
        &app.client,
        &app,
        Method::PATCH,
        &path,
        None,
        Some(json!({
            "name": "Branch Two",
            "settings": {
                "notifications": { "sms_enabled": true, "sms_numbers": ["+15550001111"],
                                   "email_enabled": false, "email_addresses": [] },
                "transfer_numbers": { "dispatch": "+15550002222" },
                "business_hours": { "mon": ["08:00", "17:00"] },
                "timezone": "America/Denver"
            }
        })),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["name"], "Branch Two");
    assert_eq!(patched["data"]["settings"]["timezone"], "America/Denver");
    assert_eq!(
        patched["data"]["settings"]["transfer_numbers"]["dispatch"],
        "+15550002222"
    );
    let (status, body, _) = call(
        &app.client,
        &app,
        Method::PATCH,
        &path,
        None,
        Some(json!({ "settings": { "timezone": "Mars/Olympus" } })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, got, _) = call(&app.client, &app, Method::GET, &path, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["settings"]["business_hours"]["mon"][0], "08:00");

    let (status, _, _) = call(&app.client, &app, Method::DELETE, &path, None, None).await;
    assert_eq!(status, 204);
    let (status, _, _) = call(&app.client, &app, Method::GET, &path, None, None).await;
    assert_eq!(status, 404);
    let (_, list, _) = call(
        &app.client,
        &app,
        Method::GET,
        "/api/v1/organizations",
        None,
        None,
    )
    .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    app.app.stop().await;
}

async fn every_resource_of_another_organization_answers_404(backend: &str) {
    let app = spawn_app(backend).await;
    // Organization A (the test app's) has a call, a contact, a key and members.
    app.vapi_ok(&vapi_message(
        "status-update",
        "iso-1",
        json!({"status": "in-progress"}),
    ))
    .await;
    app.settle().await;
    let call_id = callflex::webhooks::vapi::call_id(app.org, "iso-1");
    let (status, contacts, _) = call(
        &app.client,
        &app,
        Method::GET,
        "/api/v1/contacts",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let contact_id = s(&contacts["data"][0]["id"]);
    assert!(!contact_id.is_empty(), "{contacts}");
    let key = create_key(&app, json!(["read", "write"])).await;
    let key_id = s(&key["id"]);
    let a = app.org.to_string();

    // B: a user with their own organization, and B's API key.
    let (b_client, b_org, _) = other_tenant(&app, "bob@other.test").await;
    let (status, b_key, _) = call(
        &b_client,
        &app,
        Method::POST,
        &format!("/api/v1/organizations/{b_org}/api-keys"),
        None,
        Some(json!({ "name": "B", "scopes": ["read", "write"] })),
    )
    .await;
    assert_eq!(status, 201);
    let b_key_client = authed_client(&s(&b_key["secret"]));

    let query_paths = [
        "/api/v1/calls".to_string(),
        format!("/api/v1/calls/{call_id}"),
        format!("/api/v1/calls/{call_id}/transcript"),
        format!("/api/v1/calls/{call_id}/actions"),
        "/api/v1/calls/stats".to_string(),
        "/api/v1/calls/search?q=hello".to_string(),
        "/api/v1/contacts".to_string(),
        format!("/api/v1/contacts/{contact_id}"),
        "/api/v1/billing".to_string(),
        "/api/v1/billing/usage".to_string(),
        "/api/v1/billing/invoices".to_string(),
    ];
    for client in [&b_client, &b_key_client] {
        // Naming A's organization.
        for path in &query_paths {
            let (status, body, _) = call(client, &app, Method::GET, path, Some(&a), None).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["error"]["code"], "organization_not_found", "{path}");
        }
        // A's resources through B's own organization.
        for path in [
            format!("/api/v1/calls/{call_id}"),
            format!("/api/v1/calls/{call_id}/transcript"),
            format!("/api/v1/contacts/{contact_id}"),
        ] {
            let (status, body, _) =
                call(client, &app, Method::GET, &path, Some(&b_org), None).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        let (status, _, _) = call(
            client,
            &app,
            Method::PATCH,
            &format!("/api/v1/contacts/{contact_id}"),
            Some(&b_org),
            Some(json!({ "name": "Mallory" })),
        )
        .await;
        assert_eq!(status, 404);
        let (status, _, _) = call(
            client,
            &app,
            Method::DELETE,
            &format!("/api/v1/contacts/{contact_id}"),
            Some(&b_org),
            None,
        )
        .await;
        assert_eq!(status, 404);
        // A's organization, members and keys.
        for (method, path, body) in [
            (Method::GET, format!("/api/v1/organizations/{a}"), None),
            (
                Method::PATCH,
                format!("/api/v1/organizations/{a}"),
                Some(json!({"name": "X"})),
            ),
            (Method::DELETE, format!("/api/v1/organizations/{a}"), None),
            (
                Method::GET,
                format!("/api/v1/organizations/{a}/members"),
                None,
            ),
            (
                Method::POST,
                format!("/api/v1/organizations/{a}/members"),
                Some(json!({"email": "m@x.test", "role": "admin"})),
            ),
            (
                Method::PATCH,
                format!("/api/v1/organizations/{a}/members/{}", app.user_id),
                Some(json!({"role": "viewer"})),
            ),
            (
                Method::DELETE,
                format!("/api/v1/organizations/{a}/members/{}", app.user_id),
                None,
            ),
            (
                Method::GET,
                format!("/api/v1/organizations/{a}/api-keys"),
                None,
            ),
            (
                Method::POST,
                format!("/api/v1/organizations/{a}/api-keys"),
                Some(json!({"name": "steal"})),
            ),
            (
                Method::DELETE,
                format!("/api/v1/organizations/{a}/api-keys/{key_id}"),
                None,
            ),
        ] {
            let (status, answer, _) = call(client, &app, method.clone(), &path, None, body).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
        }
    }
    // Nothing of A changed.
    let (status, got, _) = call(
        &app.client,
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{a}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["name"], "Acme Trucking");
    let (_, keys, _) = call(
        &app.client,
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{a}/api-keys"),
        None,
        None,
    )
    .await;
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(1));
    app.app.stop().await;
}

async fn an_expired_a_malformed_or_a_missing_token_answers_401(backend: &str) {
    let app = spawn_app(backend).await;
    // A session that expired a second ago (issued straight to the aggregate).
    let token = "expired-session-token-expired-session-token";
    app.expired_session(token).await;
    for client in [
        authed_client(token),
        authed_client("nonsense"),
        authed_client("cfx_not-a-key"),
    ] {
        for path in ["/api/v1/calls", "/api/v1/auth/me", "/api/v1/organizations"] {
            let (status, body, _) = call(&client, &app, Method::GET, path, None, None).await;
            assert_eq!(status, 401, "{path}: {body}");
            assert_eq!(body["error"]["code"], "invalid_token");
        }
    }
    let (status, body, _) = call(
        &reqwest::Client::new(),
        &app,
        Method::GET,
        "/api/v1/auth/me",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    app.app.stop().await;
}

/// Sign-in limits are shared through Redis: attempts spent on one instance count on another.
async fn sign_in_limits_are_shared_between_instances_through_redis(backend: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server (the Redis test needs it installed)");
    let url = format!("redis://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "redis-server did not start");
    let first = spawn_app_with(backend, |c| c.redis_url = Some(url.clone())).await;
    let second = spawn_app_with(backend, |c| c.redis_url = Some(url.clone())).await;
    assert!(first.app.state().sign_in_limiter.uses_redis());
    for _ in 0..5 {
        let (status, _, _) = sign_in(&first, "owner@acme.test", "Wrong password 1").await;
        assert_eq!(status, 401);
    }
    let (status, body, retry) = sign_in(&second, "owner@acme.test", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry
        .and_then(|r| r.parse::<u64>().ok())
        .is_some_and(|r| r >= 1));
    let (status, _, _) = sign_in(&second, "someone-else@acme.test", PASSWORD).await;
    assert_eq!(status, 401, "another account is not limited");
    first.app.stop().await;
    second.app.stop().await;
    let _ = redis.kill().await;
}

/// `forgot-password` from `forwarded_for` (as a proxy would send it); returns the status.
async fn forgot_from(app: &TestApp, email: &str, forwarded_for: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/v1/auth/forgot-password", app.base))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({ "email": email }))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The per-IP budget (30) follows `X-Forwarded-For` only behind a trusted proxy: without
/// `CALLFLEX_TRUSTED_PROXIES` every forged address shares the peer's budget; with the peer
/// trusted each forwarded client has its own, for sign-in and password resets alike.
async fn x_forwarded_for_counts_only_from_trusted_proxies(backend: &str) {
    let untrusted = spawn_app(backend).await;
    // The owner's sign-up spent one of the 30 (sign-up, sign-in and resets share it).
    for i in 0..29 {
        let status = forgot_from(
            &untrusted,
            &format!("u{i}@x.test"),
            &format!("198.51.100.{i}"),
        )
        .await;
        assert_eq!(status, 202, "attempt {i}");
    }
    let status = forgot_from(&untrusted, "u31@x.test", "203.0.113.77").await;
    assert_eq!(status, 429, "a forged header does not open a new budget");
    untrusted.app.stop().await;

    let proxied = spawn_app_with(backend, |c| {
        c.trusted_proxies = callflex::config::parse_networks("127.0.0.1/32, ::1").expect("cidrs");
    })
    .await;
    for i in 0..30 {
        let status = forgot_from(&proxied, &format!("p{i}@x.test"), "198.51.100.1").await;
        assert_eq!(status, 202, "attempt {i}");
    }
    assert_eq!(
        forgot_from(&proxied, "p31@x.test", "198.51.100.1").await,
        429
    );
    // Another client behind the same proxy has its own budget (sign-in shares the limiter).
    assert_eq!(
        forgot_from(&proxied, "p32@x.test", "198.51.100.2").await,
        202
    );
    let signin = |forwarded_for: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/auth/signin", proxied.base))
            .header("X-Forwarded-For", forwarded_for)
            .json(&json!({ "email": "owner@acme.test", "password": "Wrong password 1" }))
            .send()
    };
    let limited = signin("10.9.9.9, 198.51.100.1").await.expect("signin");
    assert_eq!(
        limited.status(),
        429,
        "the rightmost untrusted hop is the client"
    );
    let fresh = signin("198.51.100.3").await.expect("signin");
    assert_eq!(fresh.status(), 401);
    proxied.app.stop().await;
}

/// Signing up with a registered address answers exactly like a new sign-up (202, same body)
/// and mails the owner instead; nothing about the account changes.
async fn sign_up_with_a_registered_address_reveals_nothing_and_mails_the_owner(backend: &str) {
    let app = spawn_app(backend).await;
    let attempt = |email: &'static str| {
        anonymous(
            &app,
            Method::POST,
            "/api/v1/auth/signup",
            json!({ "email": email, "password": "Another secret 77", "name": "Again",
                    "organization_name": "Shadow Co" }),
        )
    };
    let (status_new, body_new) = attempt("fresh@acme.test").await;
    let (status_taken, body_taken) = attempt("Owner@Acme.test").await;
    assert_eq!((status_new, status_taken), (202, 202));
    assert_eq!(body_new, body_taken);
    assert_eq!(body_taken, json!({ "accepted": true }));
    // The owner is told; the new address gets a verification email.
    let mut told = false;
    for _ in 0..200 {
        told = emails_to(&app.app, "owner@acme.test")
            .await
            .iter()
            .any(|m| s(&m["subject"]) == "You already have a CallFlex account");
        if told {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(told, "no already-registered email");
    token_from_email(&app.app, "fresh@acme.test", "Verification token: ").await;
    // Nothing changed: the old password works, no organization was created for the caller.
    let (status, _, _) = sign_in(&app, "owner@acme.test", PASSWORD).await;
    assert_eq!(status, 200);
    let (status, _, _) = sign_in(&app, "owner@acme.test", "Another secret 77").await;
    assert_eq!(status, 401);
    assert_eq!(app.count_events("UserRegistered").await, 2, "owner + fresh");
    assert_eq!(
        app.count_events("OrganizationCreated").await,
        2,
        "Acme + fresh's"
    );
    app.app.stop().await;
}

/// A new account cannot sign in before its address is verified (the same 401 as a wrong
/// password); the emailed token verifies it once and signs in.
async fn the_emailed_token_verifies_the_address_once(backend: &str) {
    let app = spawn_app(backend).await;
    let (status, _) = anonymous(
        &app,
        Method::POST,
        "/api/v1/auth/signup",
        json!({ "email": "Vera@Acme.test", "password": PASSWORD, "name": "Vera",
                "organization_name": "Vera Freight" }),
    )
    .await;
    assert_eq!(status, 202);
    let (status, body, _) = sign_in(&app, "vera@acme.test", PASSWORD).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_credentials");
    let token = token_from_email(&app.app, "vera@acme.test", "Verification token: ").await;
    let verify = |token: String| {
        anonymous(
            &app,
            Method::POST,
            "/api/v1/auth/verify-email",
            json!({ "token": token }),
        )
    };
    let (status, session) = verify(token.clone()).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["email"], "vera@acme.test");
    assert_eq!(session["organization"]["name"], "Vera Freight");
    assert_eq!(session["organization"]["role"], "owner");
    let client = authed_client(&s(&session["token"]));
    let (status, _, _) = call(&client, &app, Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(status, 200);
    for bad in [token, "garbage".to_string(), format!("{}.x", app.user_id)] {
        let (status, body) = verify(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_verification_token");
    }
    let (status, _, _) = sign_in(&app, "vera@acme.test", PASSWORD).await;
    assert_eq!(status, 200);
    let (status, body) =
        anonymous(&app, Method::POST, "/api/v1/auth/verify-email", json!({})).await;
    assert_eq!(status, 400, "missing token: {body}");

    // Signing up again with an unverified address sends a fresh verification token.
    let (status, _) = anonymous(
        &app,
        Method::POST,
        "/api/v1/auth/signup",
        json!({ "email": "late@acme.test", "password": PASSWORD, "name": "Late" }),
    )
    .await;
    assert_eq!(status, 202);
    let first = token_from_email(&app.app, "late@acme.test", "Verification token: ").await;
    let (status, _) = anonymous(
        &app,
        Method::POST,
        "/api/v1/auth/signup",
        json!({ "email": "late@acme.test", "password": PASSWORD, "name": "Late" }),
    )
    .await;
    assert_eq!(status, 202);
    let mut second = first.clone();
    for _ in 0..200 {
        second = token_from_email(&app.app, "late@acme.test", "Verification token: ").await;
        if second != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_ne!(second, first, "a fresh token");
    let (status, _) = verify(second).await;
    assert_eq!(status, 200);
    app.app.stop().await;
}

crate::both_backends!(
    sign_up_with_a_registered_address_reveals_nothing_and_mails_the_owner,
    the_emailed_token_verifies_the_address_once,
    x_forwarded_for_counts_only_from_trusted_proxies,
    sign_in_limits_are_shared_between_instances_through_redis,
    a_user_signs_up_signs_in_sees_themselves_and_signing_out_revokes_the_token_at_once,
    a_wrong_password_and_an_unknown_email_get_the_same_401,
    repeated_sign_in_attempts_are_rate_limited_with_retry_after,
    a_password_reset_token_arrives_by_email_works_once_and_revokes_every_session,
    sign_up_refuses_weak_passwords_naming_the_rule,
    two_concurrent_sign_ups_with_one_email_cannot_both_win,
    api_keys_are_created_shown_once_listed_used_and_revoked,
    an_invited_address_signs_up_accepts_and_is_promoted_then_removed,
    the_last_owner_can_neither_leave_nor_be_demoted,
    a_viewer_and_a_read_only_key_can_read_but_not_write,
    organizations_are_created_listed_updated_and_deleted_by_their_owner,
    every_resource_of_another_organization_answers_404,
    an_expired_a_malformed_or_a_missing_token_answers_401,
);
