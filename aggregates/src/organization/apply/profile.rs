//! Applying events: The organization itself: creation, profile, settings, VAPI webhook credentials, deletion.

use super::super::*;

impl Organization {
    pub(super) fn apply_profile(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            OrganizationCreated { id, name, .. } => {
                self.id = Some(id);
                self.created = true;
                self.name = name;
            }
            ProfileUpdated { name: Some(name) } => self.name = name,
            SettingsUpdated { settings } => self.settings = settings,
            WebhookAuthConfigured { auth } => self.webhook_auth = Some(auth),
            WebhookSecretRotated {
                secret,
                previous_valid_until,
            } => {
                let previous = self
                    .webhook_auth
                    .as_ref()
                    .and_then(|a| a.current().map(str::to_string));
                self.webhook_auth = Some(WebhookAuth {
                    shared_secret: Some(secret.clone()),
                    hmac_secret: Some(secret),
                    previous_valid_until: previous.as_ref().and(previous_valid_until),
                    previous_secret: previous,
                    revealed: true,
                });
            }
            WebhookSecretRevealed {} => {
                if let Some(auth) = self.webhook_auth.as_mut() {
                    auth.revealed = true;
                }
            }
            OrganizationDeleted {} => self.deleted = true,
            _ => {}
        }
    }
}
