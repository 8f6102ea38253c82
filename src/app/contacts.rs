//! Contacts written from outside the dashboard (inbound integration events): create or update
//! a contact by phone number, and append a note to one.

use aggregates::organization::{ContactSource, OrganizationCommand};
use sqlx::Row;
use uuid::Uuid;

use super::{organizations, AppError, Caller};
use crate::state::AppState;

/// What to write on the contact with this phone number.
pub struct Upsert<'a> {
    pub phone_number: &'a str,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Appended to the contact's notes on a new line.
    pub note: Option<String>,
}

/// The contact written and whether it was created.
pub struct Written {
    pub contact_id: String,
    pub created: bool,
    pub position: i64,
}

async fn read_model(
    state: &AppState,
    organization: &str,
    phone: &str,
) -> Result<Option<(String, Option<String>)>, AppError> {
    let row = sqlx::query(
        "SELECT id, notes FROM contacts WHERE organization_id = $1 AND phone_number = $2",
    )
    .bind(organization.to_string())
    .bind(phone.to_string())
    .fetch_optional(state.store.pool())
    .await?;
    Ok(match row {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    })
}

/// Creates the contact with this phone number, or updates it (a number known only from calls
/// becomes the contact under the id its history has). `client_key` makes a retry safe.
pub async fn upsert(
    state: &AppState,
    caller: &Caller,
    write: Upsert<'_>,
    client_key: Option<&str>,
) -> Result<Written, AppError> {
    let phone = write.phone_number.trim();
    let valid = phone.starts_with('+')
        && phone.len() >= 8
        && phone.len() <= 16
        && phone[1..].chars().all(|c| c.is_ascii_digit());
    if !valid {
        return Err(AppError::invalid(
            "invalid_phone_number",
            "phone_number must be E.164 (+ and 7 to 15 digits)",
        ));
    }
    let org = organizations::load(state, caller).await?;
    // A note is appended to the notes as last written: the read model is read once it
    // reflects the log (a few milliseconds behind at most; bounded).
    if write.note.is_some() {
        let head = state.store.head().await?;
        let _ = state
            .wait_for_position(head, std::time::Duration::from_secs(5))
            .await;
    }
    let known = read_model(state, &caller.organization_id.to_string(), phone).await?;
    let notes = |current: Option<String>| match (&write.note, current) {
        (Some(note), Some(current)) if !current.is_empty() => Some(format!("{current}\n{note}")),
        (Some(note), _) => Some(note.clone()),
        (None, _) => None,
    };
    let (contact_id, created, command) = match org.contact_phones.get(phone) {
        Some(id) => {
            let current = known.and_then(|(_, notes)| notes);
            let command = OrganizationCommand::UpdateContact {
                contact_id: id.clone(),
                name: write.name,
                email: write.email,
                notes: notes(current),
                actor: caller.actor.clone(),
            };
            (id.clone(), false, command)
        }
        None => {
            let id = known
                .as_ref()
                .map(|(id, _)| id.clone())
                .filter(|id| !org.contacts.contains(id))
                .unwrap_or_else(|| Uuid::new_v4().to_string());
            let command = OrganizationCommand::CreateContact {
                contact_id: id.clone(),
                phone_number: phone.to_string(),
                name: write.name,
                email: write.email,
                notes: notes(None),
                source: ContactSource::Manual,
                actor: caller.actor.clone(),
            };
            (id, true, command)
        }
    };
    let done = organizations::execute_as(state, caller, "contact", client_key, command).await?;
    Ok(Written {
        contact_id,
        created,
        position: done.result.last_position,
    })
}
