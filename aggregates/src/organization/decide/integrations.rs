//! Integrations (OAuth authorizations, connections) and outgoing webhook endpoints.

use super::super::Organization;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_integrations(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
            C::StartIntegrationAuthorization {
                provider,
                state_hash,
                expires_at,
                ..
            } => {
                require(
                    !provider.trim().is_empty(),
                    invalid("provider must not be empty"),
                )?;
                require(
                    !state_hash.is_empty()
                        && !self.pending_authorizations.contains_key(&state_hash),
                    invalid("state_hash must be new"),
                )?;
                emit(
                    self,
                    out,
                    Ev::IntegrationAuthorizationStarted {
                        provider,
                        state_hash,
                        expires_at,
                    },
                );
            }
            C::UseIntegrationAuthorization {
                provider,
                state_hash,
                at,
                ..
            } => {
                let pending = self
                    .pending_authorizations
                    .get(&state_hash)
                    .filter(|p| p.provider == provider)
                    .ok_or(E::InvalidAuthorizationState)?;
                require(pending.expires_at > at, E::AuthorizationStateExpired)?;
                emit(
                    self,
                    out,
                    Ev::IntegrationAuthorizationUsed {
                        provider,
                        state_hash,
                    },
                );
            }
            C::ConnectIntegration {
                provider, config, ..
            } => {
                require(
                    !provider.trim().is_empty(),
                    invalid("provider must not be empty"),
                )?;
                emit(self, out, Ev::IntegrationConnected { provider, config });
            }
            C::ConfigureIntegration {
                provider, config, ..
            } => {
                require(self.is_connected(&provider), E::IntegrationNotFound)?;
                emit(self, out, Ev::IntegrationConfigured { provider, config });
            }
            C::DisconnectIntegration { provider, .. } => {
                require(self.is_connected(&provider), E::IntegrationNotFound)?;
                emit(self, out, Ev::IntegrationDisconnected { provider });
            }
            C::RegisterWebhookEndpoint {
                endpoint_id,
                url,
                secret,
                event_types,
                ..
            } => {
                let valid = url.starts_with("http://") || url.starts_with("https://");
                require(valid, invalid("url must start with http:// or https://"))?;
                if let Some(unknown) = crate::outbound::unknown_event_type(&event_types) {
                    return Err(E::UnknownEventType(unknown.to_string()));
                }
                emit(
                    self,
                    out,
                    Ev::WebhookEndpointRegistered {
                        endpoint_id,
                        url,
                        secret,
                        event_types,
                    },
                );
            }
            C::RemoveWebhookEndpoint { endpoint_id, .. } => {
                require(
                    self.webhook_endpoints.contains_key(&endpoint_id),
                    E::WebhookEndpointNotFound,
                )?;
                emit(self, out, Ev::WebhookEndpointRemoved { endpoint_id });
            }
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
