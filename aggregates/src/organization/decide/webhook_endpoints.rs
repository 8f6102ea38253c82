//! Outbound webhook endpoints (`/webhook-endpoints`): created with a sealed signing secret and
//! a choice of published event types, changed, rotated, disabled by the delivery process.

use super::super::Organization;
use super::{invalid, require, Ev, C, E};
use crate::common::emit;
use crate::outbound;

/// How many endpoints one organization may have.
pub const MAX_ENDPOINTS: usize = 20;
const MAX_DESCRIPTION: usize = 500;

fn check_url(url: &str) -> Result<(), E> {
    let valid = url.starts_with("https://") || url.starts_with("http://");
    require(valid, invalid("url must be an https URL"))
}

fn check_event_types(types: &[String]) -> Result<(), E> {
    require(
        !types.is_empty(),
        invalid("event_types must name at least one event type"),
    )?;
    match outbound::unknown_event_type(types) {
        Some(unknown) => Err(E::UnknownEventType(unknown.to_string())),
        None => Ok(()),
    }
}

fn check_description(description: Option<&String>) -> Result<(), E> {
    require(
        description.is_none_or(|d| d.chars().count() <= MAX_DESCRIPTION),
        invalid("description must be at most 500 characters"),
    )
}

impl Organization {
    pub(super) fn decide_webhook_endpoints(
        &mut self,
        command: C,
        out: &mut Vec<Ev>,
    ) -> Result<(), E> {
        match command {
            C::CreateWebhookEndpoint {
                endpoint_id,
                url,
                description,
                mut event_types,
                secret,
                enabled,
                ..
            } => {
                require(
                    !endpoint_id.is_empty()
                        && !self.webhook_endpoint_details.contains_key(&endpoint_id),
                    invalid("endpoint_id must be new"),
                )?;
                require(
                    self.webhook_endpoint_details.len() < MAX_ENDPOINTS,
                    E::TooManyWebhookEndpoints,
                )?;
                check_url(&url)?;
                check_event_types(&event_types)?;
                check_description(description.as_ref())?;
                require(!secret.is_empty(), invalid("secret must not be empty"))?;
                event_types.sort();
                event_types.dedup();
                emit(
                    self,
                    out,
                    Ev::WebhookEndpointCreated {
                        endpoint_id,
                        url,
                        description,
                        event_types,
                        secret,
                        enabled,
                    },
                );
            }
            C::UpdateWebhookEndpoint {
                endpoint_id,
                url,
                description,
                event_types,
                enabled,
                ..
            } => {
                let current = self
                    .webhook_endpoint_details
                    .get(&endpoint_id)
                    .ok_or(E::WebhookEndpointNotFound)?
                    .clone();
                if let Some(url) = &url {
                    check_url(url)?;
                }
                if let Some(types) = &event_types {
                    check_event_types(types)?;
                }
                check_description(description.as_ref())?;
                let event_types = event_types.map(|mut t| {
                    t.sort();
                    t.dedup();
                    t
                });
                let url = url.filter(|u| *u != current.url);
                let description = description.filter(|d| Some(d) != current.description.as_ref());
                let event_types = event_types.filter(|t| *t != current.event_types);
                if url.is_some() || description.is_some() || event_types.is_some() {
                    emit(
                        self,
                        out,
                        Ev::WebhookEndpointUpdated {
                            endpoint_id: endpoint_id.clone(),
                            url,
                            description,
                            event_types,
                        },
                    );
                }
                match enabled {
                    Some(true) if current.disabled => {
                        emit(self, out, Ev::WebhookEndpointEnabled { endpoint_id })
                    }
                    Some(false) if !current.disabled => emit(
                        self,
                        out,
                        Ev::WebhookEndpointDisabled {
                            endpoint_id,
                            reason: None,
                        },
                    ),
                    _ => {}
                }
            }
            C::RotateWebhookEndpointSecret {
                endpoint_id,
                secret,
                previous_until,
                ..
            } => {
                require(
                    self.webhook_endpoint_details.contains_key(&endpoint_id),
                    E::WebhookEndpointNotFound,
                )?;
                require(!secret.is_empty(), invalid("secret must not be empty"))?;
                emit(
                    self,
                    out,
                    Ev::WebhookEndpointSecretRotated {
                        endpoint_id,
                        secret,
                        previous_until,
                    },
                );
            }
            C::DisableWebhookEndpoint {
                endpoint_id,
                reason,
                ..
            } => {
                let endpoint = self
                    .webhook_endpoint_details
                    .get(&endpoint_id)
                    .ok_or(E::WebhookEndpointNotFound)?;
                if !endpoint.disabled {
                    emit(
                        self,
                        out,
                        Ev::WebhookEndpointDisabled {
                            endpoint_id,
                            reason: Some(reason),
                        },
                    );
                }
            }
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
