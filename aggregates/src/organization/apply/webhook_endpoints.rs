//! Applying events: outbound webhook endpoints.

use super::super::*;

impl Organization {
    pub(super) fn apply_webhook_endpoints(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            WebhookEndpointCreated {
                endpoint_id,
                url,
                description,
                event_types,
                secret,
                enabled,
            } => {
                self.webhook_endpoints
                    .insert(endpoint_id.clone(), url.clone());
                self.webhook_endpoint_details.insert(
                    endpoint_id,
                    WebhookEndpointState {
                        url,
                        secret,
                        event_types,
                        description,
                        disabled: !enabled,
                        ..WebhookEndpointState::default()
                    },
                );
            }
            WebhookEndpointUpdated {
                endpoint_id,
                url,
                description,
                event_types,
            } => {
                if let Some(endpoint) = self.webhook_endpoint_details.get_mut(&endpoint_id) {
                    if let Some(url) = url {
                        self.webhook_endpoints
                            .insert(endpoint_id.clone(), url.clone());
                        endpoint.url = url;
                    }
                    if description.is_some() {
                        endpoint.description = description;
                    }
                    if let Some(types) = event_types {
                        endpoint.event_types = types;
                    }
                }
            }
            WebhookEndpointEnabled { endpoint_id } => {
                if let Some(endpoint) = self.webhook_endpoint_details.get_mut(&endpoint_id) {
                    endpoint.disabled = false;
                    endpoint.disabled_reason = None;
                }
            }
            WebhookEndpointDisabled {
                endpoint_id,
                reason,
            } => {
                if let Some(endpoint) = self.webhook_endpoint_details.get_mut(&endpoint_id) {
                    endpoint.disabled = true;
                    endpoint.disabled_reason = reason;
                }
            }
            WebhookEndpointSecretRotated {
                endpoint_id,
                secret,
                previous_until,
            } => {
                if let Some(endpoint) = self.webhook_endpoint_details.get_mut(&endpoint_id) {
                    endpoint.previous_secret =
                        Some(std::mem::replace(&mut endpoint.secret, secret));
                    endpoint.previous_until = Some(previous_until);
                }
            }
            _ => {}
        }
    }
}
