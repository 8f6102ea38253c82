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
//! actor acts with admin rights and cannot accept invites.

mod command;
mod decide;
mod error;
mod event;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use command::{
    ContactSource, MemberStatus, NotificationSettings, OrganizationCommand, OrganizationSettings,
    Role, TransferNumbers, WebhookAuth,
};
pub use error::OrganizationError;
pub use event::OrganizationEvent;

use crate::common::write_all;

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
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssistantState {
    pub name: String,
    pub vapi_assistant_id: Option<String>,
    pub deleted: bool,
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
}

impl Organization {
    /// True when the organization exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.created && !self.deleted
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
                assistant_id,
                ..
            } => {
                let state = PhoneNumberState {
                    number,
                    assistant_id,
                    released: false,
                };
                self.phone_numbers.insert(phone_number_id, state);
            }
            PhoneNumberConfigured {
                phone_number_id,
                assistant_id,
                ..
            } => {
                if let Some(p) = self.phone_numbers.get_mut(&phone_number_id) {
                    p.assistant_id = assistant_id;
                }
            }
            PhoneNumberReleased { phone_number_id } => {
                if let Some(p) = self.phone_numbers.get_mut(&phone_number_id) {
                    p.released = true;
                }
            }
            AssistantCreated {
                assistant_id, name, ..
            } => {
                let state = AssistantState {
                    name,
                    vapi_assistant_id: None,
                    deleted: false,
                };
                self.assistants.insert(assistant_id, state);
            }
            AssistantUpdated {
                assistant_id, name, ..
            } => {
                if let (Some(a), Some(name)) = (self.assistants.get_mut(&assistant_id), name) {
                    a.name = name;
                }
            }
            AssistantSynced {
                assistant_id,
                vapi_assistant_id,
            } => {
                if let Some(a) = self.assistants.get_mut(&assistant_id) {
                    a.vapi_assistant_id = Some(vapi_assistant_id);
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
            IntegrationConnected { provider, .. } => {
                self.integrations.insert(provider, true);
            }
            IntegrationConfigured { .. } => {}
            IntegrationDisconnected { provider } => {
                self.integrations.insert(provider, false);
            }
            WebhookEndpointRegistered {
                endpoint_id, url, ..
            } => {
                self.webhook_endpoints.insert(endpoint_id, url);
            }
            WebhookEndpointRemoved { endpoint_id } => {
                self.webhook_endpoints.remove(&endpoint_id);
            }
            OrganizationDeleted {} => self.deleted = true,
        }
    }
}
