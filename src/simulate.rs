//! `callflex simulate`: realistic, correctly signed VAPI deliveries for N concurrent calls
//! against a running server — status updates, partial and final transcripts, tool calls for
//! the seed's four functions, hang and the end-of-call report. The ingest benchmark drives the
//! same generator.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

/// How a delivery is authenticated.
#[derive(Debug, Clone)]
pub enum Signing {
    /// VAPI's default: the plain secret in `X-Vapi-Secret`.
    SharedSecret(String),
    /// HMAC credential: `x-signature` over `{x-timestamp}.{body}`.
    Hmac(String),
}

/// One delivery of a scripted call.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub kind: &'static str,
    pub body: String,
}

impl Delivery {
    /// True for deliveries VAPI waits on (the latency-critical path).
    pub fn is_tool_call(&self) -> bool {
        self.kind == "tool-calls"
    }
}

fn envelope(kind: &str, call_id: &str, caller: &str, at_ms: i64, extra: Value) -> String {
    let mut message = json!({
        "type": kind,
        "timestamp": at_ms,
        "call": {
            "id": call_id,
            "orgId": "simulated",
            "type": "inboundPhoneCall",
            "status": "in-progress",
            "customer": { "number": caller },
            "phoneCallProviderId": format!("CA{}", call_id.replace('-', "")),
        },
        "phoneNumber": { "number": "+15005550006" },
    });
    if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({ "message": message }).to_string()
}

fn tool(id: String, name: &str, args: Value) -> Value {
    json!({ "toolCallList": [
        { "id": id, "type": "function", "function": { "name": name, "arguments": args } }
    ]})
}

/// The deliveries of one realistic call (about 20), in the order VAPI sends them.
pub fn call_script(call_index: usize) -> Vec<Delivery> {
    call_script_with(call_index, VAPI_RECORDINGS)
}

/// Where VAPI keeps recordings: a call's report names its recording there.
pub const VAPI_RECORDINGS: &str = "https://storage.vapi.ai";

/// [`call_script`] with the recording at `recordings`/{call id}-mono.wav (a benchmark serves
/// its own, so the post-call processes download a real file without the internet).
pub fn call_script_with(call_index: usize, recordings: &str) -> Vec<Delivery> {
    let call_id = Uuid::new_v4().to_string();
    let caller = format!("+1555{:07}", call_index % 10_000_000);
    let start = chrono::Utc::now().timestamp_millis();
    let mut t = start;
    let mut next = |step: i64| {
        t += step;
        t
    };
    let mut out = Vec::new();
    let mut push = |kind: &'static str, at: i64, extra: Value| {
        out.push(Delivery {
            kind,
            body: envelope(kind, &call_id, &caller, at, extra),
        })
    };
    push("status-update", next(0), json!({ "status": "ringing" }));
    push(
        "status-update",
        next(500),
        json!({ "status": "in-progress" }),
    );
    let lines = [
        (
            "assistant",
            "Thanks for calling Acme Trucking dispatch, how can I help?",
        ),
        (
            "user",
            "Hi, this is Sam, I'm sick and can't drive route 12 today.",
        ),
        (
            "assistant",
            "Sorry to hear that, Sam. When do you expect to be back?",
        ),
        ("user", "Probably Monday."),
        ("assistant", "Got it. Anything else?"),
        ("user", "Can someone call my wife back about the schedule?"),
    ];
    for (i, (role, text)) in lines.iter().enumerate() {
        let at = next(2_000);
        push(
            "transcript",
            at,
            json!({ "role": role, "transcriptType": "partial", "transcript": &text[..text.len() / 2] }),
        );
        push(
            "transcript",
            at + 700,
            json!({ "role": role, "transcriptType": "final", "transcript": text }),
        );
        if i == 3 {
            push(
                "tool-calls",
                next(100),
                tool(
                    format!("call_{}", Uuid::new_v4().simple()),
                    "logDriverCallout",
                    json!({ "driverName": "Sam", "reason": "sick", "routeNumber": "12",
                            "expectedReturn": "Monday" }),
                ),
            );
        }
    }
    let tools = [
        (
            "scheduleCallback",
            json!({ "phoneNumber": caller, "reason": "schedule", "callerName": "Sam" }),
        ),
        (
            "takeMessage",
            json!({ "message": "Route 12 needs cover", "messageFor": "dispatch", "urgent": call_index.is_multiple_of(5) }),
        ),
        (
            "transferCall",
            json!({ "destination": "dispatch", "reason": "confirm cover" }),
        ),
    ];
    let (name, args) = &tools[call_index % tools.len()];
    push(
        "tool-calls",
        next(300),
        tool(
            format!("call_{}", Uuid::new_v4().simple()),
            name,
            args.clone(),
        ),
    );
    push(
        "speech-update",
        next(100),
        json!({ "status": "stopped", "role": "assistant" }),
    );
    push("hang", next(1_000), json!({}));
    let ended = next(500);
    push(
        "status-update",
        ended,
        json!({ "status": "ended", "endedReason": "customer-ended-call" }),
    );
    let transcript: String = lines
        .iter()
        .map(|(role, text)| format!("{}: {text}\n", if *role == "user" { "User" } else { "AI" }))
        .collect();
    push(
        "end-of-call-report",
        next(2_000),
        json!({
            "endedReason": "customer-ended-call",
            "startedAt": chrono::DateTime::from_timestamp_millis(start).map(|d| d.to_rfc3339()),
            "endedAt": chrono::DateTime::from_timestamp_millis(ended).map(|d| d.to_rfc3339()),
            "cost": 0.07 + (call_index % 10) as f64 / 100.0,
            "costs": [{ "type": "model", "cost": 0.02 }, { "type": "transport", "cost": 0.01 }],
            "artifact": {
                "transcript": transcript,
                "messages": [],
                "recordingUrl": format!("{recordings}/{call_id}-mono.wav"),
            },
            "analysis": {
                "summary": "Driver Sam called out sick for route 12 until Monday.",
                "successEvaluation": "true",
            },
        }),
    );
    out
}

/// Sends one delivery; returns the HTTP status.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    signing: &Signing,
    delivery: &Delivery,
) -> Result<u16, reqwest::Error> {
    Ok(request(client, url, signing, delivery)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Sends one delivery; returns the HTTP status and the answer's body.
pub async fn send_reading(
    client: &reqwest::Client,
    url: &str,
    signing: &Signing,
    delivery: &Delivery,
) -> Result<(u16, String), reqwest::Error> {
    let res = request(client, url, signing, delivery).send().await?;
    let status = res.status().as_u16();
    Ok((status, res.text().await.unwrap_or_default()))
}

fn request(
    client: &reqwest::Client,
    url: &str,
    signing: &Signing,
    delivery: &Delivery,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(delivery.body.clone());
    request = match signing {
        Signing::SharedSecret(secret) => request.header("x-vapi-secret", secret),
        Signing::Hmac(secret) => {
            let now = chrono::Utc::now().timestamp();
            let signature =
                wire::signature::vapi_hmac_signature(secret, now, delivery.body.as_bytes());
            request
                .header("x-timestamp", now.to_string())
                .header("x-signature", signature)
        }
    };
    request
}

/// Latencies and failures of a simulation run.
#[derive(Debug, Default)]
pub struct Report {
    pub deliveries: usize,
    pub failures: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub tool_latencies: Vec<Duration>,
    /// The first failure: its status and body, or why the request could not be sent.
    pub first_failure: Option<String>,
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Plays `calls` scripted calls against `url`, `concurrency` calls at a time.
pub async fn drive(url: &str, signing: Signing, calls: usize, concurrency: usize) -> Report {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_worker = calls.div_ceil(concurrency.max(1));
    for worker in 0..concurrency.max(1) {
        let (client, url, signing) = (client.clone(), url.to_string(), signing.clone());
        tasks.spawn(async move {
            let mut report = Report::default();
            for n in 0..per_worker {
                let index = worker * per_worker + n;
                if index >= calls {
                    break;
                }
                for delivery in call_script(index) {
                    let sent = Instant::now();
                    let answer = send_reading(&client, &url, &signing, &delivery).await;
                    let took = sent.elapsed();
                    let ok = matches!(answer, Ok((200, _)));
                    if !ok && report.first_failure.is_none() {
                        report.first_failure = Some(match answer {
                            Ok((status, body)) => format!("HTTP {status}: {body}"),
                            Err(err) => format!("{err} ({url})"),
                        });
                    }
                    report.deliveries += 1;
                    report.failures += usize::from(!ok);
                    report.latencies.push(took);
                    if delivery.is_tool_call() {
                        report.tool_latencies.push(took);
                    }
                }
            }
            report
        });
    }
    let mut total = Report::default();
    while let Some(Ok(part)) = tasks.join_next().await {
        total.deliveries += part.deliveries;
        total.failures += part.failures;
        total.first_failure = total.first_failure.or(part.first_failure);
        total.latencies.extend(part.latencies);
        total.tool_latencies.extend(part.tool_latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort();
    total.tool_latencies.sort();
    total
}

/// The organization `token` acts for: the API key's own, the one chosen, or the user's only
/// active one.
pub async fn own_organization(
    base: &str,
    token: &str,
    chosen: Option<uuid::Uuid>,
) -> anyhow::Result<uuid::Uuid> {
    if let Some(id) = chosen {
        return Ok(id);
    }
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/api/v1/organizations"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the server at {base}: {e}"))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("GET {base}/api/v1/organizations answered {status}: {body}");
    }
    let ids: Vec<uuid::Uuid> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str().and_then(|id| id.parse().ok()))
        .collect();
    match ids.as_slice() {
        [one] => Ok(*one),
        [] => anyhow::bail!("the token belongs to no organization"),
        _ => anyhow::bail!("you belong to several organizations: pass --organization <id>"),
    }
}

/// The organization's VAPI webhook secret, revealed (once) or rotated through the API.
pub async fn webhook_secret(
    base: &str,
    token: &str,
    organization: uuid::Uuid,
    rotate: bool,
) -> anyhow::Result<String> {
    let action = if rotate { "rotate" } else { "reveal" };
    let url = format!("{base}/api/v1/organizations/{organization}/webhook-credentials/{action}");
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .header("x-organization-id", organization.to_string())
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the server at {base}: {e}"))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    match body["secret"].as_str() {
        Some(secret) if status.is_success() => {
            println!("the organization's VAPI webhook secret ({action}ed; shown once): {secret}");
            Ok(secret.to_string())
        }
        _ if body["error"]["code"] == "webhook_secret_already_revealed" => anyhow::bail!(
            "the webhook secret was already shown once: pass it with --secret, or --rotate-secret"
        ),
        _ if body["error"]["code"] == "no_webhook_secret" => anyhow::bail!(
            "the organization has no webhook secret yet: pass --rotate-secret to create one"
        ),
        _ => anyhow::bail!("POST {url} answered {status}: {body}"),
    }
}

/// Fails unless the server at `base` accepts `api_key` (it reads the store we wrote to).
pub async fn check_server_knows(base: &str, api_key: &str) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/calls?limit=1");
    for _ in 0..50 {
        let res = reqwest::Client::new()
            .get(&url)
            .bearer_auth(api_key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {base}: {e}"))?;
        if res.status().is_success() {
            return Ok(());
        }
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            anyhow::bail!("GET {url} answered {status}: {body}");
        }
        // The server may not have projected the new key yet.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "the server at {base} does not know the demo organization: it uses another database \
         than DATABASE_URL here ({}). Run simulate from the server's directory, or use --token",
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://data/callflex.db".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripted_call_parses_as_vapi_messages_of_one_call() {
        let script = call_script(3);
        assert!(script.len() >= 18);
        let mut ids = std::collections::BTreeSet::new();
        for d in &script {
            let message = wire::parse_vapi(d.body.as_bytes()).expect("valid VAPI message");
            ids.insert(message.call.id.clone());
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(script.last().map(|d| d.kind), Some("end-of-call-report"));
        assert_eq!(script.iter().filter(|d| d.is_tool_call()).count(), 2);
    }
}
