//! The organization itself: creation, profile, settings, VAPI webhook credentials, deletion.

use super::super::Organization;
use super::super::Role;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_profile(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
            C::Create {
                id,
                name,
                owner_user_id,
                owner_email,
                actor: _,
            } => {
                require(!name.trim().is_empty(), invalid("name must not be empty"))?;
                require(
                    !owner_user_id.is_empty(),
                    invalid("owner_user_id must not be empty"),
                )?;
                let joined = Ev::MemberJoined {
                    user_id: owner_user_id.clone(),
                    email: owner_email.clone(),
                    role: Role::Owner,
                };
                let created = Ev::OrganizationCreated {
                    id,
                    name,
                    owner_user_id,
                    owner_email,
                };
                emit(self, out, created);
                emit(self, out, joined);
            }
            C::UpdateProfile { name, .. } => {
                if let Some(name) = name {
                    require(!name.trim().is_empty(), invalid("name must not be empty"))?;
                    if name != self.name {
                        emit(self, out, Ev::ProfileUpdated { name: Some(name) });
                    }
                }
            }
            C::UpdateSettings { settings, .. } => {
                if settings != self.settings {
                    emit(self, out, Ev::SettingsUpdated { settings });
                }
            }
            C::ConfigureWebhookAuth { auth, .. } => {
                if self.webhook_auth.as_ref() != Some(&auth) {
                    emit(self, out, Ev::WebhookAuthConfigured { auth });
                }
            }
            C::RotateWebhookSecret {
                secret,
                previous_valid_until,
                ..
            } => {
                require(!secret.is_empty(), invalid("secret must not be empty"))?;
                let has_previous = self
                    .webhook_auth
                    .as_ref()
                    .is_some_and(|a| a.current().is_some());
                emit(
                    self,
                    out,
                    Ev::WebhookSecretRotated {
                        secret,
                        previous_valid_until: has_previous.then_some(previous_valid_until),
                    },
                );
            }
            C::RevealWebhookSecret { .. } => {
                let auth = self
                    .webhook_auth
                    .as_ref()
                    .filter(|a| a.current().is_some())
                    .ok_or(E::NoWebhookSecret)?;
                require(!auth.revealed, E::WebhookSecretAlreadyRevealed)?;
                emit(self, out, Ev::WebhookSecretRevealed {});
            }
            C::Delete { .. } => emit(self, out, Ev::OrganizationDeleted {}),
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
