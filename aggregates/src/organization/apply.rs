//! Applying events to the Organization's state, one file per area (`apply/`), as `decide` is.

mod api_keys;
mod assistants;
mod billing;
mod contacts;
mod integrations;
mod members;
mod numbers;
mod profile;
mod webhook_endpoints;

use super::{Organization, OrganizationEvent};

impl Organization {
    pub(super) fn apply_event(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            e @ (OrganizationCreated { .. }
            | ProfileUpdated { .. }
            | SettingsUpdated { .. }
            | WebhookAuthConfigured { .. }
            | WebhookSecretRotated { .. }
            | WebhookSecretRevealed { .. }
            | OrganizationDeleted { .. }) => self.apply_profile(e),
            e @ (MemberInvited { .. }
            | MemberJoined { .. }
            | MemberRoleChanged { .. }
            | MemberRemoved { .. }) => self.apply_members(e),
            e @ (PhoneNumberProvisioned { .. }
            | PhoneNumberPurchaseRequested { .. }
            | PhoneNumberPurchaseNumberChosen { .. }
            | PhoneNumberPurchaseResumed { .. }
            | PhoneNumberPurchaseAbandoned { .. }
            | PhoneNumberPurchaseFailed { .. }
            | PhoneNumberConfigured { .. }
            | PhoneNumberReleased { .. }) => self.apply_numbers(e),
            e @ (AssistantCreated { .. }
            | AssistantUpdated { .. }
            | AssistantSyncStarted { .. }
            | AssistantSyncFailed { .. }
            | AssistantSynced { .. }
            | AssistantDeleted { .. }) => self.apply_assistants(e),
            e @ (ContactCreated { .. } | ContactUpdated { .. } | ContactDeleted { .. }) => {
                self.apply_contacts(e)
            }
            e @ (IntegrationAuthorizationStarted { .. }
            | IntegrationAuthorizationUsed { .. }
            | IntegrationConnected { .. }
            | IntegrationConfigured { .. }
            | IntegrationDisconnected { .. }
            | WebhookEndpointRegistered { .. }
            | WebhookEndpointRemoved { .. }) => self.apply_integrations(e),
            e @ (WebhookEndpointCreated { .. }
            | WebhookEndpointUpdated { .. }
            | WebhookEndpointEnabled { .. }
            | WebhookEndpointDisabled { .. }
            | WebhookEndpointSecretRotated { .. }) => self.apply_webhook_endpoints(e),
            e @ (ApiKeyCreated { .. } | ApiKeyRevoked { .. }) => self.apply_api_keys(e),
            e @ (BillingCustomerCreated { .. } | OnboardingRequested { .. }) => {
                self.apply_billing(e)
            }
        }
    }
}
