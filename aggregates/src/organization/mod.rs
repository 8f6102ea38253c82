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

mod apply;
mod command;
mod decide;
mod error;
mod event;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_endpoint_tests;
#[cfg(test)]
mod webhook_secret_tests;

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use command::{
    ApiKeyScope, ContactSource, MemberStatus, NotificationSettings, OrganizationCommand,
    OrganizationSettings, QuietHours, Role, TransferNumbers, WebhookAuth,
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
    /// Sealed signing secret.
    pub secret: String,
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// The secret before the last rotation (sealed), still signing until `previous_until`.
    #[serde(default)]
    pub previous_secret: Option<String>,
    #[serde(default)]
    pub previous_until: Option<Timestamp>,
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
    /// The Stripe customer, once created.
    #[serde(default)]
    pub billing_customer_id: Option<String>,
    #[serde(default)]
    pub onboarding_requested: bool,
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
        self.apply_event(event);
    }
}
