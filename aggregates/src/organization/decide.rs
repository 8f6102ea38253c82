//! Organization decision logic: authorization here, then each command's rules in its area's
//! file (`decide/`: profile, members, numbers, assistants, contacts, integrations, API keys).

mod api_keys;
mod assistants;
mod billing;
mod contacts;
mod integrations;
mod members;
mod numbers;
mod profile;
mod webhook_endpoints;

use super::command::Permission;
use super::{
    ApiKeyScope, Organization, OrganizationCommand as C, OrganizationError as E,
    OrganizationEvent as Ev, PurchaseStatus, Role,
};
use crate::common::Actor;

fn role_allows(role: Role, needed: Permission) -> bool {
    match role {
        Role::Owner => true,
        Role::Admin => needed <= Permission::Manage,
        Role::Member => needed <= Permission::Write,
        Role::Viewer | Role::Auditor => false,
    }
}

fn require(condition: bool, error: E) -> Result<(), E> {
    if condition {
        Ok(())
    } else {
        Err(error)
    }
}

/// A command handed to the wrong area's `decide_*` (a bug in the dispatch below).
fn misrouted() -> E {
    invalid("the command was routed to the wrong area")
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
            c @ (C::Create { .. }
            | C::UpdateProfile { .. }
            | C::UpdateSettings { .. }
            | C::ConfigureWebhookAuth { .. }
            | C::RotateWebhookSecret { .. }
            | C::RevealWebhookSecret { .. }
            | C::Delete { .. }) => self.decide_profile(c, out),
            c @ (C::InviteMember { .. }
            | C::AcceptInvite { .. }
            | C::ChangeMemberRole { .. }
            | C::RemoveMember { .. }) => self.decide_members(c, out),
            c @ (C::ProvisionPhoneNumber { .. }
            | C::RequestPhoneNumberPurchase { .. }
            | C::ChoosePurchaseNumber { .. }
            | C::ResumePhoneNumberPurchase { .. }
            | C::AbandonPhoneNumberPurchase { .. }
            | C::FailPhoneNumberPurchase { .. }
            | C::ConfigurePhoneNumber { .. }
            | C::ReleasePhoneNumber { .. }) => self.decide_numbers(c, out),
            c @ (C::CreateAssistant { .. }
            | C::UpdateAssistant { .. }
            | C::BeginAssistantSync { .. }
            | C::FailAssistantSync { .. }
            | C::MarkAssistantSynced { .. }
            | C::DeleteAssistant { .. }) => self.decide_assistants(c, out),
            c @ (C::CreateContact { .. } | C::UpdateContact { .. } | C::DeleteContact { .. }) => {
                self.decide_contacts(c, out)
            }
            c @ (C::StartIntegrationAuthorization { .. }
            | C::UseIntegrationAuthorization { .. }
            | C::ConnectIntegration { .. }
            | C::ConfigureIntegration { .. }
            | C::DisconnectIntegration { .. }
            | C::RegisterWebhookEndpoint { .. }
            | C::RemoveWebhookEndpoint { .. }) => self.decide_integrations(c, out),
            c @ (C::CreateWebhookEndpoint { .. }
            | C::UpdateWebhookEndpoint { .. }
            | C::RotateWebhookEndpointSecret { .. }
            | C::DisableWebhookEndpoint { .. }) => self.decide_webhook_endpoints(c, out),
            c @ (C::CreateApiKey { .. } | C::RevokeApiKey { .. }) => self.decide_api_keys(c, out),
            c @ (C::SetBillingCustomer { .. } | C::RequestOnboarding { .. }) => {
                self.decide_billing(c, out)
            }
        }
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
