//! Applying events: API keys.

use super::super::*;

impl Organization {
    pub(super) fn apply_api_keys(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            ApiKeyCreated {
                key_id,
                name,
                key_hash,
                scopes,
            } => {
                let key = ApiKeyState {
                    name,
                    key_hash,
                    scopes,
                    revoked: false,
                };
                self.api_keys.insert(key_id, key);
            }
            ApiKeyRevoked { key_id } => {
                if let Some(key) = self.api_keys.get_mut(&key_id) {
                    key.revoked = true;
                }
            }
            _ => {}
        }
    }
}
