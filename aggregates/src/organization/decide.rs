//! Organization decision logic: authorization and per-command rules.

use super::command::Permission;
use super::{
    is_stale, ApiKeyScope, MemberStatus, Organization, OrganizationCommand as C,
    OrganizationError as E, OrganizationEvent as Ev, PurchaseStatus, Role,
};
use crate::common::{emit, Actor};

fn role_allows(role: Role, needed: Permission) -> bool {
    match role {
        Role::Owner => true,
        Role::Admin => needed <= Permission::Manage,
        Role::Member => needed <= Permission::Write,
        Role::Viewer => false,
    }
}

fn require(condition: bool, error: E) -> Result<(), E> {
    if condition {
        Ok(())
    } else {
        Err(error)
    }
}

fn invalid(message: &str) -> E {
    E::InvalidInput(message.to_string())
}

impl Organization {
    /// Pure decision: the events `command` would produce against this state.
    /// Does not modify `self`.
    pub fn decide(&self, command: C) -> Result<Vec<Ev>, E> {
        if let C::Create { .. } = command {
            require(!self.created, E::AlreadyExists)?;
        } else {
            require(self.is_live(), E::NotFound)?;
            self.authorize(&command)?;
        }
        let mut scratch = self.clone();
        let mut out = Vec::new();
        scratch.decide_into(command, &mut out)?;
        Ok(out)
    }

    /// Permission needed by a command, given the current state.
    fn required_permission(&self, command: &C) -> Permission {
        let target_is_owner = |user_id: &str| {
            self.members
                .get(user_id)
                .is_some_and(|m| m.role == Role::Owner)
        };
        match command {
            C::InviteMember { role, .. } if *role == Role::Owner => Permission::Own,
            C::ChangeMemberRole { user_id, role, .. }
                if *role == Role::Owner || target_is_owner(user_id) =>
            {
                Permission::Own
            }
            C::RemoveMember { user_id, .. } if target_is_owner(user_id) => Permission::Own,
            // The first webhook secret is created by whoever first syncs an assistant (a
            // member may); it is pushed to VAPI, never shown. Replacing one is an admin's.
            C::ConfigureWebhookAuth { .. }
                if self
                    .webhook_auth
                    .as_ref()
                    .is_none_or(|a| a.current().is_none()) =>
            {
                Permission::Write
            }
            other => other.permission(),
        }
    }

    fn authorize(&self, command: &C) -> Result<(), E> {
        let actor = Actor::parse(command.actor());
        if actor.is_trusted() {
            return Ok(());
        }
        let needed = self.required_permission(command);
        match actor {
            Actor::User(id) => {
                if let C::AcceptInvite { user_id, .. } = command {
                    return require(*user_id == id, E::Forbidden);
                }
                let member = self.active_member(&id).ok_or(E::Forbidden)?;
                if let C::RemoveMember { user_id, .. } = command {
                    if *user_id == id {
                        return Ok(());
                    }
                }
                require(role_allows(member.role, needed), E::Forbidden)
            }
            Actor::ApiKey(id) => {
                // Only a live key of this organization with the write scope issues commands;
                // members and keys themselves are managed by users only.
                let key = self.live_api_key(&id).ok_or(E::Forbidden)?;
                let writes = key.scopes.contains(&ApiKeyScope::Write);
                let users_only = matches!(
                    command,
                    C::AcceptInvite { .. }
                        | C::InviteMember { .. }
                        | C::ChangeMemberRole { .. }
                        | C::RemoveMember { .. }
                        | C::CreateApiKey { .. }
                        | C::RevokeApiKey { .. }
                );
                require(
                    writes && !users_only && needed <= Permission::Manage,
                    E::Forbidden,
                )
            }
            _ => Err(E::Forbidden),
        }
    }

    fn is_last_active_owner(&self, user_id: &str) -> bool {
        self.active_member(user_id)
            .is_some_and(|m| m.role == Role::Owner)
            && self.active_owner_count() <= 1
    }

    fn decide_into(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
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
            C::InviteMember {
                user_id,
                email,
                role,
                ..
            } => {
                require(!user_id.is_empty(), invalid("user_id must not be empty"))?;
                require(self.active_member(&user_id).is_none(), E::AlreadyMember)?;
                emit(
                    self,
                    out,
                    Ev::MemberInvited {
                        user_id,
                        email,
                        role,
                    },
                );
            }
            C::AcceptInvite { user_id, .. } => {
                let member = self.members.get(&user_id).ok_or(E::MemberNotFound)?;
                if member.status == MemberStatus::Invited {
                    let joined = Ev::MemberJoined {
                        email: member.email.clone(),
                        role: member.role,
                        user_id,
                    };
                    emit(self, out, joined);
                }
            }
            C::ChangeMemberRole { user_id, role, .. } => {
                let member = self.members.get(&user_id).ok_or(E::MemberNotFound)?;
                if member.role != role {
                    require(!self.is_last_active_owner(&user_id), E::LastOwner)?;
                    emit(self, out, Ev::MemberRoleChanged { user_id, role });
                }
            }
            C::RemoveMember { user_id, .. } => {
                require(self.members.contains_key(&user_id), E::MemberNotFound)?;
                require(!self.is_last_active_owner(&user_id), E::LastOwner)?;
                emit(self, out, Ev::MemberRemoved { user_id });
            }
            C::ProvisionPhoneNumber {
                phone_number_id,
                number,
                provider_sid,
                assistant_id,
                vapi_phone_number_id,
                ..
            } => {
                require(
                    !number.trim().is_empty(),
                    invalid("number must not be empty"),
                )?;
                let taken = self
                    .phone_numbers
                    .values()
                    .any(|p| !p.released && p.number == number);
                require(!taken, E::NumberAlreadyProvisioned)?;
                require(
                    !self.phone_numbers.contains_key(&phone_number_id),
                    invalid("phone_number_id is already used"),
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberProvisioned {
                        phone_number_id,
                        number,
                        provider_sid,
                        assistant_id,
                        vapi_phone_number_id,
                    },
                );
            }
            C::RequestPhoneNumberPurchase {
                purchase_id,
                number,
                area_code,
                assistant_id,
                at,
                ..
            } => {
                require(
                    !purchase_id.trim().is_empty(),
                    invalid("purchase_id must not be empty"),
                )?;
                let wanted =
                    |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
                require(
                    wanted(&number) || wanted(&area_code),
                    invalid("a number or an area code is required"),
                )?;
                if let Some(purchase) = self.purchases.get(&purchase_id) {
                    require(
                        purchase.status != PurchaseStatus::Pending,
                        E::PurchaseInProgress,
                    )?;
                }
                require(
                    !self.phone_numbers.contains_key(&purchase_id)
                        && self
                            .purchases
                            .get(&purchase_id)
                            .is_none_or(|p| p.status != PurchaseStatus::Completed),
                    invalid("this purchase is already completed"),
                )?;
                if let Some(id) = &assistant_id {
                    require(self.live_assistant(id).is_some(), E::AssistantNotFound)?;
                }
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseRequested {
                        purchase_id,
                        number,
                        area_code,
                        assistant_id,
                        requested_at: Some(at),
                    },
                );
            }
            C::ChoosePurchaseNumber {
                purchase_id,
                number,
                ..
            } => {
                self.require_pending_purchase(&purchase_id)?;
                require(
                    !number.trim().is_empty(),
                    invalid("number must not be empty"),
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseNumberChosen {
                        purchase_id,
                        number,
                    },
                );
            }
            C::ResumePhoneNumberPurchase {
                purchase_id,
                at,
                stale_after_secs,
                ..
            } => {
                let purchase = self.require_pending_purchase(&purchase_id)?;
                require(
                    is_stale(purchase.requested_at, at, stale_after_secs),
                    E::PurchaseInProgress,
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseResumed {
                        purchase_id,
                        resumed_at: at,
                    },
                );
            }
            C::AbandonPhoneNumberPurchase {
                purchase_id,
                reason,
                ..
            } => {
                self.require_pending_purchase(&purchase_id)?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseAbandoned {
                        purchase_id,
                        reason,
                    },
                );
            }
            C::FailPhoneNumberPurchase {
                purchase_id,
                stage,
                reason,
                provider_sid,
                ..
            } => {
                self.require_pending_purchase(&purchase_id)?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseFailed {
                        purchase_id,
                        stage,
                        reason,
                        provider_sid,
                    },
                );
            }
            C::ConfigurePhoneNumber {
                phone_number_id,
                assistant_id,
                friendly_name,
                ..
            } => {
                require(
                    self.live_phone_number(&phone_number_id).is_some(),
                    E::PhoneNumberNotFound,
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberConfigured {
                        phone_number_id,
                        assistant_id,
                        friendly_name,
                    },
                );
            }
            C::ReleasePhoneNumber {
                phone_number_id, ..
            } => {
                require(
                    self.live_phone_number(&phone_number_id).is_some(),
                    E::PhoneNumberNotFound,
                )?;
                emit(self, out, Ev::PhoneNumberReleased { phone_number_id });
            }
            C::CreateAssistant {
                assistant_id,
                name,
                template_slug,
                system_prompt,
                first_message,
                voice_id,
                model,
                functions,
                variables,
                ..
            } => {
                require(!name.trim().is_empty(), invalid("name must not be empty"))?;
                require(
                    !self.assistants.contains_key(&assistant_id),
                    invalid("assistant_id is already used"),
                )?;
                emit(
                    self,
                    out,
                    Ev::AssistantCreated {
                        assistant_id,
                        name,
                        template_slug,
                        system_prompt,
                        first_message,
                        voice_id,
                        model,
                        functions,
                        variables,
                    },
                );
            }
            C::UpdateAssistant {
                assistant_id,
                name,
                template_slug,
                system_prompt,
                first_message,
                voice_id,
                model,
                functions,
                variables,
                ..
            } => {
                require(
                    self.live_assistant(&assistant_id).is_some(),
                    E::AssistantNotFound,
                )?;
                if let Some(name) = &name {
                    require(!name.trim().is_empty(), invalid("name must not be empty"))?;
                }
                let changes_something = name.is_some()
                    || template_slug.is_some()
                    || system_prompt.is_some()
                    || first_message.is_some()
                    || voice_id.is_some()
                    || model.is_some()
                    || functions.is_some()
                    || variables.is_some();
                if changes_something {
                    emit(
                        self,
                        out,
                        Ev::AssistantUpdated {
                            assistant_id,
                            name,
                            template_slug,
                            system_prompt,
                            first_message,
                            voice_id,
                            model,
                            functions,
                            variables,
                        },
                    );
                }
            }
            C::BeginAssistantSync {
                assistant_id,
                sync_id,
                at,
                stale_after_secs,
                ..
            } => {
                let assistant = self
                    .live_assistant(&assistant_id)
                    .ok_or(E::AssistantNotFound)?;
                require(
                    !sync_id.trim().is_empty(),
                    invalid("sync_id must not be empty"),
                )?;
                if let Some(claim) = &assistant.sync_in_progress {
                    require(
                        is_stale(Some(claim.started_at), at, stale_after_secs),
                        E::SyncInProgress,
                    )?;
                }
                emit(
                    self,
                    out,
                    Ev::AssistantSyncStarted {
                        assistant_id,
                        sync_id,
                        started_at: at,
                    },
                );
            }
            C::FailAssistantSync {
                assistant_id,
                sync_id,
                reason,
                ..
            } => {
                let assistant = self
                    .live_assistant(&assistant_id)
                    .ok_or(E::AssistantNotFound)?;
                // Only the sync that holds the claim releases it (a stale one was taken over).
                let holds = assistant
                    .sync_in_progress
                    .as_ref()
                    .is_some_and(|c| c.sync_id == sync_id);
                if holds {
                    emit(
                        self,
                        out,
                        Ev::AssistantSyncFailed {
                            assistant_id,
                            sync_id,
                            reason,
                        },
                    );
                }
            }
            C::MarkAssistantSynced {
                assistant_id,
                vapi_assistant_id,
                ..
            } => {
                require(
                    self.live_assistant(&assistant_id).is_some(),
                    E::AssistantNotFound,
                )?;
                emit(
                    self,
                    out,
                    Ev::AssistantSynced {
                        assistant_id,
                        vapi_assistant_id,
                    },
                );
            }
            C::DeleteAssistant { assistant_id, .. } => {
                require(
                    self.live_assistant(&assistant_id).is_some(),
                    E::AssistantNotFound,
                )?;
                emit(self, out, Ev::AssistantDeleted { assistant_id });
            }
            C::CreateContact {
                contact_id,
                phone_number,
                name,
                email,
                notes,
                source,
                ..
            } => {
                require(
                    !phone_number.trim().is_empty(),
                    invalid("phone_number must not be empty"),
                )?;
                if let Some(existing) = self.contact_by_phone(&phone_number) {
                    return Err(E::ContactExists(existing.to_string()));
                }
                require(
                    !self.contacts.contains(&contact_id),
                    invalid("contact_id is already used"),
                )?;
                emit(
                    self,
                    out,
                    Ev::ContactCreated {
                        contact_id,
                        phone_number,
                        name,
                        email,
                        notes,
                        source,
                    },
                );
            }
            C::UpdateContact {
                contact_id,
                name,
                email,
                notes,
                ..
            } => {
                require(self.contacts.contains(&contact_id), E::ContactNotFound)?;
                if name.is_some() || email.is_some() || notes.is_some() {
                    emit(
                        self,
                        out,
                        Ev::ContactUpdated {
                            contact_id,
                            name,
                            email,
                            notes,
                        },
                    );
                }
            }
            C::DeleteContact { contact_id, .. } => {
                require(self.contacts.contains(&contact_id), E::ContactNotFound)?;
                emit(self, out, Ev::ContactDeleted { contact_id });
            }
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
            C::CreateApiKey {
                key_id,
                name,
                key_hash,
                mut scopes,
                ..
            } => {
                let name = name.trim().to_string();
                require(!name.is_empty(), invalid("name must not be empty"))?;
                require(
                    name.chars().count() <= 100,
                    invalid("name may be at most 100 characters"),
                )?;
                require(!key_hash.is_empty(), invalid("key_hash must not be empty"))?;
                scopes.sort();
                scopes.dedup();
                require(!scopes.is_empty(), invalid("scopes must not be empty"))?;
                require(
                    !self.api_keys.contains_key(&key_id),
                    invalid("key_id is already used"),
                )?;
                emit(
                    self,
                    out,
                    Ev::ApiKeyCreated {
                        key_id,
                        name,
                        key_hash,
                        scopes,
                    },
                );
            }
            C::RevokeApiKey { key_id, .. } => {
                let key = self.api_keys.get(&key_id).ok_or(E::ApiKeyNotFound)?;
                if !key.revoked {
                    emit(self, out, Ev::ApiKeyRevoked { key_id });
                }
            }
            C::Delete { .. } => emit(self, out, Ev::OrganizationDeleted {}),
        }
        Ok(())
    }

    fn require_pending_purchase(
        &self,
        purchase_id: &str,
    ) -> Result<&super::PhoneNumberPurchase, E> {
        self.purchases
            .get(purchase_id)
            .filter(|p| p.status == PurchaseStatus::Pending)
            .ok_or_else(|| invalid("no purchase in progress with this id"))
    }

    fn is_connected(&self, provider: &str) -> bool {
        self.integrations.get(provider).copied().unwrap_or(false)
    }
}
