//! Assistants: configuration and the VAPI sync's steps.

use super::super::is_stale;
use super::super::Organization;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_assistants(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
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
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
