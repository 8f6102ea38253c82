//! The contacts read model folded in memory. Calls starting and ending are almost every event
//! this projector sees; a run of them loads the contacts and links it touches, applies the run
//! in log order and writes the rows back in one statement per table. Contacts edited by hand
//! (rare) end the run and go through the per-event SQL, so their effect on existing links is
//! never reordered.

use std::collections::{HashMap, HashSet};

use aggregates::call::{CallEvent, Direction};
use eventlog::StoredEvent;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::caller_contact_id;
use crate::batch::{fetch_in, fetch_in_pairs, insert_rows, replace_all, Cell};
use crate::projector::{DomainEvent, ProjectionError, Tables};

const COLUMNS: [&str; 15] = [
    "id",
    "organization_id",
    "phone_number",
    "name",
    "email",
    "notes",
    "source",
    "call_count",
    "first_call_at",
    "last_call_at",
    "last_call_id",
    "last_summary",
    "deleted",
    "created_at",
    "updated_at",
];

/// What a call event means to the contacts read model.
pub enum CallFact<'a> {
    /// Call `call_id` of `organization` came from (or went to) `phone` at `at`.
    Counted {
        organization: String,
        call_id: &'a str,
        phone: &'a str,
        at: i64,
    },
    /// The call's summary, for its contact's "last summary".
    Summary { call_id: &'a str, summary: &'a str },
}

/// The contacts-relevant fact of a call event, if it has one.
pub fn call_fact<'a>(stored: &'a StoredEvent, event: &'a CallEvent) -> Option<CallFact<'a>> {
    let call_id = stored.aggregate_id.as_str();
    match event {
        CallEvent::CallStarted {
            organization_id,
            from_number,
            to_number,
            direction,
            started_at,
            ..
        } => {
            let phone = match direction {
                Direction::Outbound => to_number,
                _ => from_number,
            };
            let phone = phone.as_deref().filter(|p| !p.is_empty())?;
            Some(CallFact::Counted {
                organization: organization_id.to_string(),
                call_id,
                phone,
                at: started_at
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(stored.recorded_at),
            })
        }
        CallEvent::CallDetailsLearned {
            from_number: Some(phone),
            ..
        } => Some(CallFact::Counted {
            organization: stored.metadata.tenant_id.clone()?,
            call_id,
            phone,
            at: stored.recorded_at,
        }),
        CallEvent::CallEnded { report } => Some(CallFact::Summary {
            call_id,
            summary: report.summary.as_deref()?,
        }),
        CallEvent::CallAnalyzed { analysis } => Some(CallFact::Summary {
            call_id,
            summary: &analysis.summary,
        }),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct ContactRow {
    id: String,
    organization_id: String,
    phone_number: String,
    name: Option<String>,
    email: Option<String>,
    notes: Option<String>,
    source: String,
    call_count: i64,
    first_call_at: Option<i64>,
    last_call_at: Option<i64>,
    last_call_id: Option<String>,
    last_summary: Option<String>,
    deleted: i64,
    created_at: i64,
    updated_at: i64,
}

impl ContactRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            organization_id: row.try_get(1)?,
            phone_number: row.try_get(2)?,
            name: row.try_get(3)?,
            email: row.try_get(4)?,
            notes: row.try_get(5)?,
            source: row.try_get(6)?,
            call_count: row.try_get(7)?,
            first_call_at: row.try_get(8)?,
            last_call_at: row.try_get(9)?,
            last_call_id: row.try_get(10)?,
            last_summary: row.try_get(11)?,
            deleted: row.try_get(12)?,
            created_at: row.try_get(13)?,
            updated_at: row.try_get(14)?,
        })
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.organization_id.into(),
            self.phone_number.into(),
            self.name.into(),
            self.email.into(),
            self.notes.into(),
            self.source.into(),
            self.call_count.into(),
            self.first_call_at.into(),
            self.last_call_at.into(),
            self.last_call_id.into(),
            self.last_summary.into(),
            self.deleted.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }

    fn new_caller(organization: &str, phone: &str, at: i64) -> Self {
        Self {
            id: caller_contact_id(organization, phone),
            organization_id: organization.to_string(),
            phone_number: phone.to_string(),
            name: None,
            email: None,
            notes: None,
            source: "caller".into(),
            call_count: 0,
            first_call_at: None,
            last_call_at: None,
            last_call_id: None,
            last_summary: None,
            deleted: 0,
            created_at: at,
            updated_at: at,
        }
    }

    /// Counts one more call (the link was new), as the per-event UPDATE does: every SET
    /// reads the values from before it.
    fn count(&mut self, call_id: &str, at: i64) {
        self.call_count += 1;
        self.deleted = 0;
        if self.first_call_at.is_none_or(|first| first > at) {
            self.first_call_at = Some(at);
        }
        if self.last_call_at.is_none_or(|last| last <= at) {
            self.last_call_id = Some(call_id.to_string());
        }
        if self.last_call_at.is_none_or(|last| last < at) {
            self.last_call_at = Some(at);
        }
        self.updated_at = at;
    }
}

/// Folds a run of call facts (no hand-made contact changes inside it).
pub async fn apply_run(
    tx: &mut Transaction<'static, Any>,
    tables: Tables,
    facts: &[CallFact<'_>],
) -> Result<(), ProjectionError> {
    if facts.is_empty() {
        return Ok(());
    }
    let contacts = tables.name("contacts");
    let links = tables.name("contact_calls");

    // Existing links of every call in the run (a call id is unique across organizations).
    let mut call_ids: Vec<String> = facts
        .iter()
        .map(|fact| match fact {
            CallFact::Counted { call_id, .. } | CallFact::Summary { call_id, .. } => {
                call_id.to_string()
            }
        })
        .collect();
    call_ids.sort_unstable();
    call_ids.dedup();
    let select =
        format!("SELECT organization_id, call_id, contact_id FROM {links} WHERE call_id IN ");
    // call id → (organization, contact id)
    let mut link_of: HashMap<String, (String, String)> = HashMap::new();
    for row in fetch_in(tx, &select, &call_ids).await? {
        let (org, call, contact): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        link_of.insert(call, (org, contact));
    }

    // Contacts by the numbers counted and by the links summaries follow.
    let mut pairs: Vec<(String, String)> = facts
        .iter()
        .filter_map(|fact| match fact {
            CallFact::Counted {
                organization,
                phone,
                ..
            } => Some((organization.clone(), phone.to_string())),
            CallFact::Summary { .. } => None,
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut ids: Vec<String> = link_of.values().map(|(_, id)| id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let columns = COLUMNS.join(", ");
    let mut rows: HashMap<String, ContactRow> = HashMap::new();
    let by_pair =
        format!("SELECT {columns} FROM {contacts} WHERE (organization_id, phone_number) IN ");
    let by_id = format!("SELECT {columns} FROM {contacts} WHERE id IN ");
    for row in fetch_in_pairs(tx, &by_pair, &pairs).await? {
        let row = ContactRow::from_row(&row)?;
        rows.insert(row.id.clone(), row);
    }
    for row in fetch_in(tx, &by_id, &ids).await? {
        let row = ContactRow::from_row(&row)?;
        rows.insert(row.id.clone(), row);
    }
    let mut id_of: HashMap<(String, String), String> = rows
        .values()
        .map(|r| {
            (
                (r.organization_id.clone(), r.phone_number.clone()),
                r.id.clone(),
            )
        })
        .collect();

    let mut dirty: HashSet<String> = HashSet::new();
    let mut new_links: Vec<Vec<Cell>> = Vec::new();
    for fact in facts {
        match fact {
            CallFact::Counted {
                organization,
                call_id,
                phone,
                at,
            } => {
                let key = (organization.clone(), phone.to_string());
                let id = match id_of.get(&key) {
                    Some(id) => id.clone(),
                    None => {
                        let row = ContactRow::new_caller(organization, phone, *at);
                        let id = row.id.clone();
                        rows.insert(id.clone(), row);
                        id_of.insert(key, id.clone());
                        dirty.insert(id.clone());
                        id
                    }
                };
                if link_of.contains_key(*call_id) {
                    continue;
                }
                link_of.insert(call_id.to_string(), (organization.clone(), id.clone()));
                new_links.push(vec![
                    organization.clone().into(),
                    (*call_id).into(),
                    id.clone().into(),
                ]);
                if let Some(row) = rows.get_mut(&id) {
                    row.count(call_id, *at);
                    dirty.insert(id);
                }
            }
            CallFact::Summary { call_id, summary } => {
                let Some((_, id)) = link_of.get(*call_id) else {
                    continue;
                };
                if let Some(row) = rows.get_mut(id) {
                    if row.last_call_id.as_deref() == Some(*call_id) {
                        row.last_summary = Some(summary.to_string());
                        dirty.insert(id.clone());
                    }
                }
            }
        }
    }

    let mut dirty: Vec<String> = dirty.into_iter().collect();
    dirty.sort_unstable();
    let written: Vec<Vec<Cell>> = dirty
        .iter()
        .filter_map(|id| rows.remove(id))
        .map(ContactRow::into_cells)
        .collect();
    insert_rows(
        tx,
        &contacts,
        &COLUMNS,
        written,
        &replace_all(&COLUMNS, &["id"]),
    )
    .await?;
    insert_rows(
        tx,
        &links,
        &["organization_id", "call_id", "contact_id"],
        new_links,
        "ON CONFLICT (organization_id, call_id) DO NOTHING",
    )
    .await?;
    Ok(())
}

/// Is this one of the events that end a run (handled by the per-event SQL)?
pub fn is_contact_edit(event: &DomainEvent) -> bool {
    use aggregates::organization::OrganizationEvent as E;
    matches!(
        event,
        DomainEvent::Organization(
            E::ContactCreated { .. } | E::ContactUpdated { .. } | E::ContactDeleted { .. }
        )
    )
}
