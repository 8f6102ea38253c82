//! `GET/POST /api/v1/assistants`, `GET/PATCH/DELETE /api/v1/assistants/{id}`,
//! `POST /api/v1/assistants/{id}/sync` (create or update in VAPI) and
//! `POST /api/v1/assistants/{id}/test` (validate and show what a sync would send).
//!
//! Creating from a template substitutes the variables into the template's prompt and first
//! message (a missing required variable answers 422 `missing_variable` naming it; values for
//! variables the template does not declare are ignored).

use std::collections::BTreeMap;
use std::sync::Arc;

use aggregates::organization::{AssistantState, Organization, OrganizationCommand};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{begin, execute, field, idempotency_key, provider_error, vapi};
use crate::app::assistants::{self, check_functions, render, template};
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::state::AppState;
use crate::templates::{substitute, DEFAULT_MODEL, DEFAULT_VOICE_ID};

const MAX_NAME: usize = 200;
const MAX_PROMPT: usize = 20_000;
const MAX_MESSAGE: usize = 1_000;

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Assistant {
    pub id: String,
    pub name: String,
    /// The template it was made from, if any.
    pub template_slug: Option<String>,
    /// The system prompt, variables substituted.
    pub system_prompt: String,
    pub first_message: Option<String>,
    /// ElevenLabs voice id.
    pub voice_id: String,
    /// OpenAI model.
    pub model: String,
    /// Enabled functions (`transferCall`, `logDriverCallout`, `scheduleCallback`,
    /// `takeMessage`).
    pub functions: Vec<String>,
    /// The template variable values it was made with.
    pub variables: BTreeMap<String, String>,
    /// The assistant's id in VAPI once synced.
    pub vapi_assistant_id: Option<String>,
    /// True when VAPI has the current configuration.
    pub synced: bool,
    /// Ids of the live phone numbers answered by this assistant.
    pub phone_number_ids: Vec<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantList {
    pub data: Vec<Assistant>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantResponse {
    pub data: Assistant,
}

/// The answer to an assistant command.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantWritten {
    pub data: Assistant,
    /// The log position the command wrote (0 when it changed nothing).
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewAssistant {
    pub name: String,
    /// Build from this template (see `GET /templates`).
    pub template_slug: Option<String>,
    /// Values for the template's variables.
    pub variables: Option<BTreeMap<String, String>>,
    /// Required without a template; overrides the template's prompt otherwise
    /// (`{{variables}}` are substituted in it too).
    pub system_prompt: Option<String>,
    pub first_message: Option<String>,
    pub voice_id: Option<String>,
    pub model: Option<String>,
    /// Overrides the template's functions.
    pub functions: Option<Vec<String>>,
}

/// Fields to change; absent fields are left as they are. Changing `variables` or
/// `template_slug` (without `system_prompt`) renders the template again.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantChanges {
    pub name: Option<String>,
    pub template_slug: Option<String>,
    pub variables: Option<BTreeMap<String, String>>,
    pub system_prompt: Option<String>,
    pub first_message: Option<String>,
    pub voice_id: Option<String>,
    pub model: Option<String>,
    pub functions: Option<Vec<String>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantSynced {
    pub data: Assistant,
    pub vapi_assistant_id: String,
    /// True when VAPI created the assistant now (first sync), false for an update.
    pub created: bool,
    /// True when nothing was sent (no VAPI credentials): the id is a sandbox id.
    pub sandbox: bool,
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantTest {
    /// VAPI's id of the test call, when `call` was given.
    pub call_id: Option<String>,
    /// True when the configuration can be synced as it is.
    pub valid: bool,
    /// What is wrong (unfilled `{{variables}}`, unknown functions, empty prompt).
    pub problems: Vec<String>,
    /// The payload a sync sends to VAPI (the webhook secret masked).
    pub payload: Value,
    /// `POST /assistant` for a first sync, `PATCH /assistant/{id}` afterwards.
    pub vapi_request: String,
    /// True when VAPI runs in sandbox mode (no credentials).
    pub sandbox: bool,
}

/// What to test: nothing more than the configuration, or also a call that rings.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AssistantTestRequest {
    /// Ring this number (E.164): VAPI calls it from one of our numbers, answered by this
    /// assistant (which must be synced).
    pub call: Option<String>,
    /// The number to call from (default: the first one linked to this assistant).
    pub phone_number_id: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateAssistantResponse {
    /// Created.
    #[oai(status = 201)]
    Created(Json<AssistantWritten>),
}

#[derive(ApiResponse)]
pub enum DeleteAssistantResponse {
    /// Deleted. `X-Position` is the log position written.
    #[oai(status = 204)]
    Deleted(#[oai(header = "X-Position")] i64),
}

fn not_found() -> ApiError {
    ApiError::not_found("assistant_not_found", "no such assistant")
}

pub(crate) fn view(org: &Organization, id: &str, a: &AssistantState) -> Assistant {
    Assistant {
        id: id.to_string(),
        name: a.name.clone(),
        template_slug: a.template_slug.clone(),
        system_prompt: a.system_prompt.clone(),
        first_message: a.first_message.clone(),
        voice_id: a
            .voice_id
            .clone()
            .unwrap_or_else(|| DEFAULT_VOICE_ID.to_string()),
        model: a.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_string()),
        functions: a.functions.clone(),
        variables: a.variables.clone(),
        vapi_assistant_id: a.vapi_assistant_id.clone(),
        synced: a.vapi_assistant_id.is_some() && !a.needs_sync,
        phone_number_ids: org
            .phone_numbers
            .iter()
            .filter(|(_, p)| !p.released && p.assistant_id.as_deref() == Some(id))
            .map(|(id, _)| id.clone())
            .collect(),
    }
}

fn find(org: &Organization, id: &str) -> Result<Assistant, ApiError> {
    org.live_assistant(id)
        .map(|a| view(org, id, a))
        .ok_or_else(not_found)
}

fn opt_field(name: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| field(name, &v, max)).transpose()
}

pub struct AssistantsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Assistants")]
impl AssistantsApi {
    /// List the organization's assistants.
    #[oai(path = "/assistants", method = "get", operation_id = "list_assistants")]
    async fn list_assistants(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<AssistantList>, ApiError> {
        let (_, org) = begin(&state, req, &auth).await?;
        let data = org
            .assistants
            .iter()
            .filter(|(_, a)| !a.deleted)
            .map(|(id, a)| view(&org, id, a))
            .collect();
        Ok(Json(AssistantList { data }))
    }

    /// Create an assistant, from a template (variables substituted) or from a prompt.
    ///
    /// 422 `missing_variable` (with `details.variable`), `unknown_template`,
    /// `unknown_function` or `invalid_input`. Send `Idempotency-Key` to make retries safe.
    #[oai(
        path = "/assistants",
        method = "post",
        operation_id = "create_assistant"
    )]
    async fn create_assistant(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NewAssistant>,
    ) -> Result<CreateAssistantResponse, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        super::require_write(&principal)?;
        let body = body.0;
        let name = field("name", &body.name, MAX_NAME)?;
        let prompt = opt_field("system_prompt", body.system_prompt, MAX_PROMPT)?;
        let first = opt_field("first_message", body.first_message, MAX_MESSAGE)?;
        let voice_id = opt_field("voice_id", body.voice_id, MAX_NAME)?;
        let model = opt_field("model", body.model, MAX_NAME)?;
        let key = idempotency_key(req);
        let id = match &key {
            Some(k) => Uuid::new_v5(
                &principal.organization_id,
                format!("assistant:{k}").as_bytes(),
            ),
            None => Uuid::new_v4(),
        }
        .to_string();
        let new = assistants::NewAssistant {
            id: id.clone(),
            name,
            template_slug: body.template_slug,
            system_prompt: prompt,
            first_message: first,
            voice_id,
            model,
            functions: body.functions,
            variables: body.variables.unwrap_or_default(),
        };
        let (position, org) =
            assistants::create(&state, &principal.caller(), new, key.as_deref()).await?;
        Ok(CreateAssistantResponse::Created(Json(AssistantWritten {
            data: find(&org, &id)?,
            position,
        })))
    }

    /// One assistant.
    #[oai(
        path = "/assistants/:id",
        method = "get",
        operation_id = "get_assistant"
    )]
    async fn get_assistant(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The assistant id.
        id: Path<String>,
    ) -> Result<Json<AssistantResponse>, ApiError> {
        let (_, org) = begin(&state, req, &auth).await?;
        Ok(Json(AssistantResponse {
            data: find(&org, &id.0)?,
        }))
    }

    /// Change an assistant (absent fields are unchanged). It needs a sync afterwards.
    #[oai(
        path = "/assistants/:id",
        method = "patch",
        operation_id = "update_assistant"
    )]
    async fn update_assistant(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The assistant id.
        id: Path<String>,
        body: Json<AssistantChanges>,
    ) -> Result<Json<AssistantWritten>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_write(&principal)?;
        let current = org.live_assistant(&id.0).ok_or_else(not_found)?;
        let c = body.0;
        let name = opt_field("name", c.name, MAX_NAME)?;
        let mut system_prompt = opt_field("system_prompt", c.system_prompt, MAX_PROMPT)?;
        let mut first_message = opt_field("first_message", c.first_message, MAX_MESSAGE)?;
        let voice_id = opt_field("voice_id", c.voice_id, MAX_NAME)?;
        let model = opt_field("model", c.model, MAX_NAME)?;
        if let Some(functions) = &c.functions {
            check_functions(functions)?;
        }
        let slug = c.template_slug.map(|s| s.trim().to_string());
        let mut variables = c.variables.clone();
        let rerender = slug.is_some() || c.variables.is_some();
        if let Some(slug) = slug.as_deref().or(current.template_slug.as_deref()) {
            if rerender {
                let t = template(slug)?;
                let given = c.variables.unwrap_or_else(|| current.variables.clone());
                let (p, f, kept) = render(
                    &t,
                    &given,
                    system_prompt.as_deref(),
                    first_message.as_deref(),
                )?;
                system_prompt = Some(p);
                first_message = Some(f);
                variables = Some(kept);
            }
        } else if let (Some(given), Some(p)) = (&c.variables, system_prompt.as_mut()) {
            *p = substitute(p, given);
        }
        let (position, org) = execute(
            &state,
            &principal,
            OrganizationCommand::UpdateAssistant {
                assistant_id: id.0.clone(),
                name,
                template_slug: slug,
                system_prompt,
                first_message,
                voice_id,
                model,
                functions: c.functions,
                variables,
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        Ok(Json(AssistantWritten {
            data: find(&org, &id.0)?,
            position,
        }))
    }

    /// Delete an assistant (also in VAPI when synced). 409 `assistant_in_use` while a phone
    /// number is linked to it.
    #[oai(
        path = "/assistants/:id",
        method = "delete",
        operation_id = "delete_assistant"
    )]
    async fn delete_assistant(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The assistant id.
        id: Path<String>,
    ) -> Result<DeleteAssistantResponse, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_write(&principal)?;
        let assistant = find(&org, &id.0)?;
        if !assistant.phone_number_ids.is_empty() {
            return Err(ApiError::conflict(
                "assistant_in_use",
                "phone numbers are linked to this assistant; relink or release them first",
            )
            .with_details(json!({ "phone_number_ids": assistant.phone_number_ids })));
        }
        if let Some(vapi_id) = &assistant.vapi_assistant_id {
            vapi(&state)
                .delete_assistant(vapi_id, &principal.org())
                .await
                .map_err(provider_error)?;
        }
        let (position, _) = execute(
            &state,
            &principal,
            OrganizationCommand::DeleteAssistant {
                assistant_id: id.0.clone(),
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        Ok(DeleteAssistantResponse::Deleted(position))
    }

    /// Create the assistant in VAPI (first time) or update it there, then record the sync.
    ///
    /// 422 `assistant_invalid` when the configuration cannot be synced (see `/test`); 409
    /// `sync_in_progress` while another sync of the assistant runs (the claim lapses after
    /// `PROVISIONING_TIMEOUT_SECS`); 502 `provider_rejected` / 503 `provider_unavailable` when
    /// VAPI fails (the failure is recorded, the assistant stays unsynced).
    #[oai(
        path = "/assistants/:id/sync",
        method = "post",
        operation_id = "sync_assistant"
    )]
    async fn sync_assistant(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The assistant id.
        id: Path<String>,
    ) -> Result<Json<AssistantSynced>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        super::require_write(&principal)?;
        let done = assistants::sync(&state, &principal.caller(), &id.0).await?;
        Ok(Json(AssistantSynced {
            data: find(&done.organization, &id.0)?,
            vapi_assistant_id: done.vapi_assistant_id,
            created: done.created,
            sandbox: done.sandbox,
            position: done.position,
        }))
    }

    /// Validate the assistant and show the exact payload a sync sends to VAPI (nothing is
    /// sent); with `call`, also ring that number: VAPI calls it from one of our numbers,
    /// answered by this assistant.
    #[oai(
        path = "/assistants/:id/test",
        method = "post",
        operation_id = "test_assistant"
    )]
    async fn test_assistant(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The assistant id.
        id: Path<String>,
        body: Json<AssistantTestRequest>,
    ) -> Result<Json<AssistantTest>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        let assistant = org.live_assistant(&id.0).ok_or_else(not_found)?;
        let call_id = match body.0.call.as_deref() {
            Some(customer) => {
                super::require_manage(&principal)?;
                let customer = super::phone_numbers::e164("call", customer)?;
                let from =
                    super::test_calls::number_for(&org, &id.0, body.0.phone_number_id.as_deref())?;
                let placed =
                    super::test_calls::ring(&state, &principal, &org, &id.0, &from, &customer)
                        .await?;
                Some(placed.call_id)
            }
            None => None,
        };
        let problems = assistants::problems(assistant);
        let payload =
            assistants::vapi_payload(&state, &principal.org(), &id.0, assistant, Some("***"));
        let vapi_request = match &assistant.vapi_assistant_id {
            Some(vapi_id) => format!("PATCH /assistant/{vapi_id}"),
            None => "POST /assistant".to_string(),
        };
        Ok(Json(AssistantTest {
            call_id,
            valid: problems.is_empty(),
            problems,
            payload,
            vapi_request,
            sandbox: vapi(&state).sandbox(),
        }))
    }
}
