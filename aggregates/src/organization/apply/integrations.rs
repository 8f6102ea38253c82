//! Applying events: Integrations and outgoing webhook endpoints.

use super::super::*;

impl Organization {
    pub(super) fn apply_integrations(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            IntegrationAuthorizationStarted {
                provider,
                state_hash,
                expires_at,
            } => {
                // States that expired a day before this one began are dead weight.
                let horizon = expires_at - chrono::TimeDelta::days(1);
                self.pending_authorizations
                    .retain(|_, p| p.expires_at > horizon);
                let pending = PendingAuthorization {
                    provider,
                    expires_at,
                };
                self.pending_authorizations.insert(state_hash, pending);
            }
            IntegrationAuthorizationUsed { state_hash, .. } => {
                self.pending_authorizations.remove(&state_hash);
            }
            IntegrationConnected { provider, config } => {
                self.integration_configs.insert(provider.clone(), config);
                self.integrations.insert(provider, true);
            }
            IntegrationConfigured { provider, config } => {
                self.integration_configs.insert(provider, config);
            }
            IntegrationDisconnected { provider } => {
                self.integration_configs.remove(&provider);
                self.integrations.insert(provider, false);
            }
            WebhookEndpointRegistered {
                endpoint_id,
                url,
                secret,
                event_types,
            } => {
                let details = WebhookEndpointState {
                    url: url.clone(),
                    secret,
                    event_types,
                    ..WebhookEndpointState::default()
                };
                self.webhook_endpoint_details
                    .insert(endpoint_id.clone(), details);
                self.webhook_endpoints.insert(endpoint_id, url);
            }
            WebhookEndpointRemoved { endpoint_id } => {
                self.webhook_endpoint_details.remove(&endpoint_id);
                self.webhook_endpoints.remove(&endpoint_id);
            }
            _ => {}
        }
    }
}
