//! The Organization aggregate: one per tenant.
//!
//! Authorization: every command carries an `actor`. `system[...]` and
//! `provider:<name>` actors skip role checks. A `user:<id>` actor must be an
//! active member whose role allows the command:
//!
//! - viewer: nothing;
//! - member: contacts and assistants;
//! - admin: additionally profile, settings, webhook auth, members, phone
//!   numbers, integrations and webhook endpoints;
//! - owner: additionally deleting the organization, and inviting, promoting
//!   to, demoting from or removing the owner role.
//!
//! Any active member may remove themselves (leave). `AcceptInvite` may only
//! be issued by the invited user (or a trusted actor). An `api_key:<id>`
//! actor must be a live (not revoked) key of this organization with the
//! `write` scope; it then acts with admin rights, except that members and API
//! keys are managed by users only (and it cannot accept invites). A read-only
//! key issues no commands.

mod command;
mod decide;
mod error;
mod event;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_secret_tests;

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use command::{
    ApiKeyScope, ContactSource, MemberStatus, NotificationSettings, OrganizationCommand,
    OrganizationSettings, Role, TransferNumbers, WebhookAuth,
};
pub use error::OrganizationError;
pub use event::OrganizationEvent;

use crate::common::{write_all, Timestamp};

/// A member (or invitee) of the organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub email: String,
    pub role: Role,
    pub status: MemberStatus,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PhoneNumberState {
    pub number: String,
    pub assistant_id: Option<String>,
    pub released: bool,
    /// Twilio's IncomingPhoneNumber sid.
    #[serde(default)]
    pub provider_sid: String,
    #[serde(default)]
    pub vapi_phone_number_id: Option<String>,
    #[serde(default)]
    pub friendly_name: Option<String>,
}

/// An assistant and its whole configuration (what a VAPI sync sends).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssistantState {
    pub name: String,
    pub vapi_assistant_id: Option<String>,
    pub deleted: bool,
    #[serde(default)]
    pub template_slug: Option<String>,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub first_message: Option<String>,
    #[serde(default)]
    pub voice_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub functions: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Changed since the last sync to VAPI (or never synced).
    #[serde(default)]
    pub needs_sync: bool,
    /// A sync to VAPI that began and has not ended (claimed before VAPI is called).
    #[serde(default)]
    pub sync_in_progress: Option<SyncClaim>,
}

/// A sync (or purchase) claimed at `started_at` by request `sync_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncClaim {
    pub sync_id: String,
    pub started_at: Timestamp,
}

/// An OAuth authorization that began and whose `state` was not used yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub provider: String,
    pub expires_at: Timestamp,
}

/// True when a claim made at `started_at` (unknown: an old event) is at least
/// `stale_after_secs` old at `at`.
pub fn is_stale(started_at: Option<Timestamp>, at: Timestamp, stale_after_secs: i64) -> bool {
    started_at.is_none_or(|t| at - t >= chrono::TimeDelta::seconds(stale_after_secs))
}

/// Where a phone number purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurchaseStatus {
    Pending,
    Failed,
    Completed,
}

/// A phone number purchase (intent and outcome), by purchase id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneNumberPurchase {
    pub status: PurchaseStatus,
    pub number: Option<String>,
    pub area_code: Option<String>,
    pub assistant_id: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the current attempt was requested (or taken over); `None` in older events.
    #[serde(default)]
    pub requested_at: Option<Timestamp>,
}

/// A registered outbound webhook endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WebhookEndpointState {
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
}

/// An organization API key (the secret itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyState {
    pub name: String,
    pub key_hash: String,
    pub scopes: Vec<ApiKeyScope>,
    pub revoked: bool,
}

/// Organization state: what the invariants need, nothing more.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Organization {
    pub id: Option<Uuid>,
    pub created: bool,
    pub deleted: bool,
    pub name: String,
    pub settings: OrganizationSettings,
    /// user id → member. Removed members are dropped.
    pub members: BTreeMap<String, Member>,
    /// phone number id → number (released numbers are kept, flagged).
    pub phone_numbers: BTreeMap<String, PhoneNumberState>,
    /// assistant id → assistant (deleted ones are kept, flagged).
    pub assistants: BTreeMap<String, AssistantState>,
    /// Live contact ids.
    pub contacts: BTreeSet<String>,
    /// phone number → live contact id (uniqueness of contact phones).
    pub contact_phones: BTreeMap<String, String>,
    /// provider → connected.
    pub integrations: BTreeMap<String, bool>,
    /// endpoint id → url.
    pub webhook_endpoints: BTreeMap<String, String>,
    pub webhook_auth: Option<WebhookAuth>,
    /// key id → API key (revoked ones are kept, flagged).
    #[serde(default)]
    pub api_keys: BTreeMap<String, ApiKeyState>,
    /// purchase id → phone number purchase (intent recorded before the provider is called).
    #[serde(default)]
    pub purchases: BTreeMap<String, PhoneNumberPurchase>,
    /// provider → configuration of connected integrations.
    #[serde(default)]
    pub integration_configs: BTreeMap<String, serde_json::Value>,
    /// endpoint id → endpoint (url, signing secret, event types).
    #[serde(default)]
    pub webhook_endpoint_details: BTreeMap<String, WebhookEndpointState>,
    /// SHA-256 of an OAuth `state` → the authorization it belongs to (until used).
    #[serde(default)]
    pub pending_authorizations: BTreeMap<String, PendingAuthorization>,
}

impl Organization {
    /// True when the organization exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.created && !self.deleted
    }

    /// The API key with this id, unless it was revoked.
    pub fn live_api_key(&self, key_id: &str) -> Option<&ApiKeyState> {
        self.api_keys.get(key_id).filter(|k| !k.revoked)
    }

    /// The member record of an active member.
    pub fn active_member(&self, user_id: &str) -> Option<&Member> {
        self.members
            .get(user_id)
            .filter(|m| m.status == MemberStatus::Active)
    }

    /// Number of active owners.
    pub fn active_owner_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.status == MemberStatus::Active && m.role == Role::Owner)
            .count()
    }

    /// The live phone number record with this id.
    pub fn live_phone_number(&self, phone_number_id: &str) -> Option<&PhoneNumberState> {
        self.phone_numbers
            .get(phone_number_id)
            .filter(|p| !p.released)
    }

    /// The live assistant record with this id.
    pub fn live_assistant(&self, assistant_id: &str) -> Option<&AssistantState> {
        self.assistants.get(assistant_id).filter(|a| !a.deleted)
    }

    /// The live contact id using this phone number, if any.
    pub fn contact_by_phone(&self, phone_number: &str) -> Option<&str> {
        self.contact_phones.get(phone_number).map(String::as_str)
    }
}

impl Aggregate for Organization {
    const TYPE: &'static str = "organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = OrganizationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use OrganizationEvent::*;
        match event {
            OrganizationCreated { id, name, .. } => {
                self.id = Some(id);
                self.created = true;
                self.name = name;
            }
            ProfileUpdated { name } => {
                if let Some(name) = name {
                    self.name = name;
                }
            }
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
            MemberInvited {
                user_id,
                email,
                role,
            } => {
                let member = Member {
                    email,
                    role,
                    status: MemberStatus::Invited,
                };
                self.members.insert(user_id, member);
            }
            MemberJoined {
                user_id,
                email,
                role,
            } => {
                let member = Member {
                    email,
                    role,
                    status: MemberStatus::Active,
                };
                self.members.insert(user_id, member);
            }
            MemberRoleChanged { user_id, role } => {
                if let Some(member) = self.members.get_mut(&user_id) {
                    member.role = role;
                }
            }
            MemberRemoved { user_id } => {
                self.members.remove(&user_id);
            }
            PhoneNumberProvisioned {
                phone_number_id,
                number,
                provider_sid,
                assistant_id,
                vapi_phone_number_id,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&phone_number_id) {
                    purchase.status = PurchaseStatus::Completed;
                    purchase.last_error = None;
                }
                let state = PhoneNumberState {
                    number,
                    assistant_id,
                    released: false,
                    provider_sid,
                    vapi_phone_number_id,
                    friendly_name: None,
                };
                self.phone_numbers.insert(phone_number_id, state);
            }
            PhoneNumberPurchaseRequested {
                purchase_id,
                number,
                area_code,
                assistant_id,
                requested_at,
            } => {
                let attempts = self.purchases.get(&purchase_id).map_or(0, |p| p.attempts);
                let purchase = PhoneNumberPurchase {
                    status: PurchaseStatus::Pending,
                    number,
                    area_code,
                    assistant_id,
                    attempts: attempts + 1,
                    last_error: None,
                    requested_at,
                };
                self.purchases.insert(purchase_id, purchase);
            }
            PhoneNumberPurchaseNumberChosen {
                purchase_id,
                number,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.number = Some(number);
                }
            }
            PhoneNumberPurchaseResumed {
                purchase_id,
                resumed_at,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.requested_at = Some(resumed_at);
                }
            }
            PhoneNumberPurchaseAbandoned {
                purchase_id,
                reason,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.status = PurchaseStatus::Failed;
                    purchase.last_error = Some(format!("abandoned: {reason}"));
                }
            }
            PhoneNumberPurchaseFailed {
                purchase_id,
                stage,
                reason,
                ..
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.status = PurchaseStatus::Failed;
                    purchase.last_error = Some(format!("{stage}: {reason}"));
                }
            }
            PhoneNumberConfigured {
                phone_number_id,
                assistant_id,
                friendly_name,
            } => {
                if let Some(p) = self.phone_numbers.get_mut(&phone_number_id) {
                    p.assistant_id = assistant_id;
                    if friendly_name.is_some() {
                        p.friendly_name = friendly_name;
                    }
                }
            }
            PhoneNumberReleased { phone_number_id } => {
                if let Some(p) = self.phone_numbers.get_mut(&phone_number_id) {
                    p.released = true;
                }
            }
            AssistantCreated {
                assistant_id,
                name,
                template_slug,
                system_prompt,
                first_message,
                voice_id,
                model,
                functions,
                variables,
            } => {
                let state = AssistantState {
                    name,
                    vapi_assistant_id: None,
                    deleted: false,
                    template_slug,
                    system_prompt,
                    first_message,
                    voice_id,
                    model,
                    functions,
                    variables,
                    needs_sync: true,
                    sync_in_progress: None,
                };
                self.assistants.insert(assistant_id, state);
            }
            AssistantUpdated {
                assistant_id,
                name,
                template_slug,
                system_prompt,
                first_message,
                voice_id,
                model,
                functions,
                variables,
            } => {
                if let Some(a) = self.assistants.get_mut(&assistant_id) {
                    if let Some(name) = name {
                        a.name = name;
                    }
                    if template_slug.is_some() {
                        a.template_slug = template_slug;
                    }
                    if let Some(prompt) = system_prompt {
                        a.system_prompt = prompt;
                    }
                    if first_message.is_some() {
                        a.first_message = first_message;
                    }
                    if voice_id.is_some() {
                        a.voice_id = voice_id;
                    }
                    if model.is_some() {
                        a.model = model;
                    }
                    if let Some(functions) = functions {
                        a.functions = functions;
                    }
                    if let Some(variables) = variables {
                        a.variables = variables;
                    }
                    a.needs_sync = true;
                }
            }
            AssistantSyncStarted {
                assistant_id,
                sync_id,
                started_at,
            } => {
                if let Some(a) = self.assistants.get_mut(&assistant_id) {
                    a.sync_in_progress = Some(SyncClaim {
                        sync_id,
                        started_at,
                    });
                }
            }
            AssistantSyncFailed { assistant_id, .. } => {
                if let Some(a) = self.assistants.get_mut(&assistant_id) {
                    a.sync_in_progress = None;
                }
            }
            AssistantSynced {
                assistant_id,
                vapi_assistant_id,
            } => {
                if let Some(a) = self.assistants.get_mut(&assistant_id) {
                    a.vapi_assistant_id = Some(vapi_assistant_id);
                    a.needs_sync = false;
                    a.sync_in_progress = None;
                }
            }
            AssistantDeleted { assistant_id } => {
                if let Some(a) = self.assistants.get_mut(&assistant_id) {
                    a.deleted = true;
                }
            }
            ContactCreated {
                contact_id,
                phone_number,
                ..
            } => {
                self.contacts.insert(contact_id.clone());
                self.contact_phones.insert(phone_number, contact_id);
            }
            ContactUpdated { .. } => {}
            ContactDeleted { contact_id } => {
                self.contacts.remove(&contact_id);
                self.contact_phones.retain(|_, id| *id != contact_id);
            }
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
                };
                self.webhook_endpoint_details
                    .insert(endpoint_id.clone(), details);
                self.webhook_endpoints.insert(endpoint_id, url);
            }
            WebhookEndpointRemoved { endpoint_id } => {
                self.webhook_endpoint_details.remove(&endpoint_id);
                self.webhook_endpoints.remove(&endpoint_id);
            }
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
            OrganizationDeleted {} => self.deleted = true,
        }
    }
}
