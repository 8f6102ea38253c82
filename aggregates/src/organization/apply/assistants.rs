//! Applying events: Assistants and their syncs.

use super::super::*;

impl Organization {
    pub(super) fn apply_assistants(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
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
            _ => {}
        }
    }
}
