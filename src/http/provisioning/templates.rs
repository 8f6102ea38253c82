//! `GET /api/v1/templates` and `GET /api/v1/templates/{slug}`: the built-in assistant
//! templates (see [`crate::templates`]).

use std::sync::Arc;

use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::state::AppState;
use crate::templates::{self, Template};

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TemplateVariable {
    pub name: String,
    pub description: String,
    /// Creating an assistant without a value for a required variable answers 422.
    pub required: bool,
    /// Used when no value is given.
    pub default: Option<String>,
}

/// A function an assistant can call (its JSON schema as sent to VAPI as a tool).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FunctionDefinition {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments.
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TemplateInfo {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// Contains `{{variable}}` placeholders.
    pub system_prompt: String,
    /// Contains `{{variable}}` placeholders.
    pub first_message: String,
    pub variables: Vec<TemplateVariable>,
    /// The functions assistants made from this template enable.
    pub functions: Vec<FunctionDefinition>,
    /// Default ElevenLabs voice id.
    pub voice_id: String,
    /// Default OpenAI model.
    pub model: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TemplateList {
    pub data: Vec<TemplateInfo>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TemplateResponse {
    pub data: TemplateInfo,
}

pub(crate) fn function_definition(name: &str) -> Option<FunctionDefinition> {
    let f = templates::function(name)?;
    Some(FunctionDefinition {
        name: name.to_string(),
        description: f["description"].as_str().unwrap_or_default().to_string(),
        parameters: f["parameters"].clone(),
    })
}

fn info(t: &Template) -> TemplateInfo {
    TemplateInfo {
        slug: t.slug.into(),
        name: t.name.into(),
        description: t.description.into(),
        system_prompt: t.system_prompt.into(),
        first_message: t.first_message.into(),
        variables: t
            .variables
            .iter()
            .map(|v| TemplateVariable {
                name: v.name.into(),
                description: v.description.into(),
                required: v.required,
                default: v.default.map(str::to_string),
            })
            .collect(),
        functions: t
            .functions
            .iter()
            .filter_map(|f| function_definition(f))
            .collect(),
        voice_id: t.voice_id.into(),
        model: t.model.into(),
    }
}

pub struct TemplatesApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Templates")]
impl TemplatesApi {
    /// List the built-in assistant templates.
    #[oai(path = "/templates", method = "get", operation_id = "list_templates")]
    async fn list_templates(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<TemplateList>, ApiError> {
        super::begin(&state, req, &auth).await?;
        Ok(Json(TemplateList {
            data: templates::all().iter().map(info).collect(),
        }))
    }

    /// One template (404 `template_not_found` for an unknown slug).
    #[oai(
        path = "/templates/:slug",
        method = "get",
        operation_id = "get_template"
    )]
    async fn get_template(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The template's slug, e.g. `trucking-dispatch`.
        slug: Path<String>,
    ) -> Result<Json<TemplateResponse>, ApiError> {
        super::begin(&state, req, &auth).await?;
        let template = templates::find(&slug.0)
            .ok_or_else(|| ApiError::not_found("template_not_found", "no such template"))?;
        Ok(Json(TemplateResponse {
            data: info(&template),
        }))
    }
}
