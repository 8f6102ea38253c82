//! Assistant use cases, called by `/assistants` and by onboarding alike: create one (from a
//! template and its variables, or from explicit texts) and sync it to VAPI.
//!
//! A sync claims the assistant (`BeginAssistantSync`) before VAPI is called, so two syncs
//! never run at once; a sync that finds no VAPI id first asks VAPI for an assistant carrying
//! ours in its metadata (one created by a sync that crashed before recording it), so a crash
//! never leaves two VAPI assistants for one of ours.

use std::collections::BTreeMap;

use aggregates::organization::{AssistantState, Organization, OrganizationCommand, WebhookAuth};
use serde_json::{json, Value};

use super::{organizations, AppError, Caller};
use crate::providers::ProviderError;
use crate::state::AppState;
use crate::templates::{self, substitute, Template, DEFAULT_MODEL, DEFAULT_VOICE_ID};

/// A new assistant, its fields already checked for length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAssistant {
    pub id: String,
    pub name: String,
    pub template_slug: Option<String>,
    pub system_prompt: Option<String>,
    pub first_message: Option<String>,
    pub voice_id: Option<String>,
    pub model: Option<String>,
    pub functions: Option<Vec<String>>,
    pub variables: BTreeMap<String, String>,
}

/// A finished sync.
#[derive(Debug, Clone)]
pub struct Synced {
    pub organization: Organization,
    pub vapi_assistant_id: String,
    /// True when VAPI created the assistant now (false: updated, or found after a crash).
    pub created: bool,
    pub sandbox: bool,
    pub position: i64,
}

pub fn template(slug: &str) -> Result<Template, AppError> {
    templates::find(slug).ok_or_else(|| {
        AppError::invalid("unknown_template", format!("no template `{slug}`"))
            .with_details(json!({ "template_slug": slug }))
    })
}

pub fn check_functions(functions: &[String]) -> Result<(), AppError> {
    for f in functions {
        if templates::function(f).is_none() {
            return Err(AppError::invalid(
                "unknown_function",
                format!(
                    "unknown function `{f}`; known: {}",
                    templates::FUNCTIONS.join(", ")
                ),
            )
            .with_details(json!({ "function": f })));
        }
    }
    Ok(())
}

/// The prompt and first message rendered from `template` with `given` variables; explicit
/// texts (their `{{variables}}` substituted) win. Returns the declared variables kept.
pub fn render(
    template: &Template,
    given: &BTreeMap<String, String>,
    system_prompt: Option<&str>,
    first_message: Option<&str>,
) -> Result<(String, String, BTreeMap<String, String>), AppError> {
    let values = template.values(given).map_err(|missing| {
        AppError::invalid("missing_variable", missing.to_string())
            .with_details(json!({ "variable": missing.0 }))
    })?;
    let prompt = system_prompt.unwrap_or(template.system_prompt);
    let first = first_message.unwrap_or(template.first_message);
    let kept = given
        .iter()
        .filter(|(k, _)| template.variables.iter().any(|v| v.name == k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((
        substitute(prompt, &values),
        substitute(first, &values),
        kept,
    ))
}

/// The webhook URL VAPI posts this organization's server messages to.
pub fn server_url(state: &AppState, org: &str) -> String {
    format!("{}/api/webhooks/vapi/{org}", state.config.public_url)
}

/// What `POST /assistant` / `PATCH /assistant/{id}` sends (the seed's createVapiAssistant in
/// VAPI's current shape: `model.messages` and `model.tools`, `server{url, secret}`).
pub fn vapi_payload(
    state: &AppState,
    org: &str,
    id: &str,
    a: &AssistantState,
    secret: Option<&str>,
) -> Value {
    let tools: Vec<Value> = a
        .functions
        .iter()
        .filter_map(|f| templates::function(f))
        .map(|function| json!({ "type": "function", "function": function }))
        .collect();
    let mut server = json!({ "url": server_url(state, org), "timeoutSeconds": 20 });
    if let Some(secret) = secret {
        server["secret"] = json!(secret);
    }
    let mut payload = json!({
        "name": a.name,
        "model": {
            "provider": "openai",
            "model": a.model.as_deref().unwrap_or(DEFAULT_MODEL),
            "temperature": 0.7,
            "messages": [{ "role": "system", "content": a.system_prompt }],
            "tools": tools,
        },
        "voice": {
            "provider": "11labs",
            "voiceId": a.voice_id.as_deref().unwrap_or(DEFAULT_VOICE_ID),
            "stability": 0.5,
            "similarityBoost": 0.75,
        },
        "endCallMessage": "Thanks for calling. Goodbye!",
        "endCallPhrases": ["goodbye", "bye", "that's all", "thank you bye"],
        "transcriber": { "provider": "deepgram", "model": "nova-2", "language": "en" },
        "server": server,
        "serverMessages": [
            "end-of-call-report",
            "status-update",
            "tool-calls",
            "transcript",
            "hang",
        ],
        "artifactPlan": { "recordingEnabled": true },
        "silenceTimeoutSeconds": 30,
        "maxDurationSeconds": 600,
        "backgroundSound": "office",
        "metadata": { "organizationId": org, "assistantId": id },
    });
    if let Some(first) = &a.first_message {
        payload["firstMessage"] = json!(first);
    }
    payload
}

/// What is wrong with an assistant's configuration for a sync.
pub fn problems(a: &AssistantState) -> Vec<String> {
    let mut out = Vec::new();
    if a.system_prompt.trim().is_empty() {
        out.push("the system prompt is empty".to_string());
    }
    for text in std::iter::once(&a.system_prompt).chain(a.first_message.as_ref()) {
        for name in templates::placeholders(text) {
            out.push(format!("the variable `{{{{{name}}}}}` has no value"));
        }
    }
    for f in &a.functions {
        if templates::function(f).is_none() {
            out.push(format!("unknown function `{f}`"));
        }
    }
    out
}

/// A 32-byte random secret as hex, with a prefix.
pub fn random_secret(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The secret VAPI sends us in `X-Vapi-Secret`: the organization's, else the service-wide
/// one, else a new one stored (sealed) on the organization first.
async fn webhook_secret(
    state: &AppState,
    caller: &Caller,
    org: &Organization,
) -> Result<String, AppError> {
    let own = org
        .webhook_auth
        .as_ref()
        .and_then(|a| a.shared_secret.as_deref())
        .map(|sealed| state.secrets.open(sealed))
        .transpose()
        .map_err(AppError::internal)?;
    if let Some(secret) = own.or_else(|| {
        state
            .config
            .vapi_webhook_secret
            .as_ref()
            .map(|s| s.expose().to_string())
    }) {
        return Ok(secret);
    }
    let secret = random_secret("vapi_");
    let auth = WebhookAuth {
        shared_secret: Some(state.secrets.seal(&secret)),
        hmac_secret: org
            .webhook_auth
            .as_ref()
            .and_then(|a| a.hmac_secret.clone()),
        ..Default::default()
    };
    let command = OrganizationCommand::ConfigureWebhookAuth {
        auth,
        actor: caller.actor.clone(),
    };
    organizations::execute_as(state, caller, "provisioning", None, command).await?;
    Ok(secret)
}

/// Creates an assistant (`client_key`: the request's `Idempotency-Key`, making a retry a
/// no-op). Returns the position written and the organization after it.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewAssistant,
    client_key: Option<&str>,
) -> Result<(i64, Organization), AppError> {
    let (system_prompt, first_message, variables, functions, voice_id, model) =
        match new.template_slug.as_deref().map(str::trim) {
            Some(slug) => {
                let t = template(slug)?;
                let (p, f, kept) = render(
                    &t,
                    &new.variables,
                    new.system_prompt.as_deref(),
                    new.first_message.as_deref(),
                )?;
                let functions = new
                    .functions
                    .unwrap_or_else(|| t.functions.iter().map(|f| f.to_string()).collect());
                let voice = new.voice_id.unwrap_or_else(|| t.voice_id.to_string());
                let model = new.model.unwrap_or_else(|| t.model.to_string());
                (p, Some(f), kept, functions, voice, model)
            }
            None => {
                let p = new.system_prompt.ok_or_else(|| {
                    AppError::invalid(
                        "invalid_input",
                        "system_prompt is required without a template_slug",
                    )
                    .with_details(json!({ "field": "system_prompt" }))
                })?;
                (
                    substitute(&p, &new.variables),
                    new.first_message.map(|f| substitute(&f, &new.variables)),
                    new.variables,
                    new.functions.unwrap_or_default(),
                    new.voice_id.unwrap_or_else(|| DEFAULT_VOICE_ID.to_string()),
                    new.model.unwrap_or_else(|| DEFAULT_MODEL.to_string()),
                )
            }
        };
    check_functions(&functions)?;
    let command = OrganizationCommand::CreateAssistant {
        assistant_id: new.id,
        name: new.name,
        template_slug: new.template_slug.map(|s| s.trim().to_string()),
        system_prompt,
        first_message,
        voice_id: Some(voice_id),
        model: Some(model),
        functions,
        variables,
        actor: caller.actor.clone(),
    };
    let done = organizations::execute_as(state, caller, "assistants", client_key, command).await?;
    Ok((done.result.last_position, done.state))
}

fn not_found() -> AppError {
    AppError::not_found("assistant_not_found", "no such assistant")
}

/// Creates or updates assistant `id` in VAPI and records its VAPI id.
pub async fn sync(state: &AppState, caller: &Caller, id: &str) -> Result<Synced, AppError> {
    let org = organizations::load(state, caller).await?;
    let assistant = org.live_assistant(id).ok_or_else(not_found)?.clone();
    let problems = problems(&assistant);
    if !problems.is_empty() {
        return Err(AppError::invalid(
            "assistant_invalid",
            "the assistant cannot be synced as it is",
        )
        .with_details(json!({ "problems": problems })));
    }
    let secret = webhook_secret(state, caller, &org).await?;
    let org_id = caller.organization_id.to_string();
    // Claim the sync before VAPI is called: a concurrent sync of the same assistant loses
    // the append (optimistic concurrency) and answers 409 `sync_in_progress`, so two
    // requests never create two VAPI assistants.
    let sync_id = uuid::Uuid::new_v4().to_string();
    let claim = OrganizationCommand::BeginAssistantSync {
        assistant_id: id.to_string(),
        sync_id: sync_id.clone(),
        at: chrono::Utc::now(),
        stale_after_secs: state.config.provisioning_timeout_secs,
        actor: caller.actor.clone(),
    };
    let claimed = organizations::execute_as(state, caller, "provisioning", None, claim).await?;
    // The configuration as it stands once the claim is held.
    let assistant = claimed
        .state
        .live_assistant(id)
        .ok_or_else(not_found)?
        .clone();
    let payload = vapi_payload(state, &org_id, id, &assistant, Some(&secret));
    let client = super::phone_numbers::vapi(state);
    let known = match &assistant.vapi_assistant_id {
        Some(vapi_id) => Ok(Some(vapi_id.clone())),
        // A sync that crashed after VAPI created the assistant left it there.
        None => client.find_assistant(id, &org_id).await,
    };
    let (done, created) = match known {
        Err(e) => (Err(e), false),
        Ok(Some(vapi_id)) => match client.update_assistant(&vapi_id, &payload, &org_id).await {
            // Deleted in VAPI's dashboard: create it again.
            Err(ProviderError::Rejected { status: 404, .. }) => {
                (client.create_assistant(&payload, &org_id).await, true)
            }
            other => (other, false),
        },
        Ok(None) => (client.create_assistant(&payload, &org_id).await, true),
    };
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            let failed = OrganizationCommand::FailAssistantSync {
                assistant_id: id.to_string(),
                sync_id,
                reason: e.to_string(),
                actor: caller.actor.clone(),
            };
            if let Err(recorded) =
                organizations::execute_as(state, caller, "provisioning", None, failed).await
            {
                tracing::error!(assistant = %id, code = %recorded.code,
                    "sync failure not recorded; the claim expires on its own");
            }
            return Err(e.into());
        }
    };
    let synced = OrganizationCommand::MarkAssistantSynced {
        assistant_id: id.to_string(),
        vapi_assistant_id: done.id.clone(),
        actor: caller.actor.clone(),
    };
    let recorded = organizations::execute_as(state, caller, "provisioning", None, synced).await?;
    Ok(Synced {
        organization: recorded.state,
        vapi_assistant_id: done.id,
        created,
        sandbox: done.sandbox,
        position: recorded.result.last_position,
    })
}
