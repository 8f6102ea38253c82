//! The `contacts` read model: contacts created automatically from callers' numbers (call
//! count, first/last call, last summary) merged with contacts people created and edited.

use aggregates::call::CallEvent;
use aggregates::organization::{ContactSource, OrganizationEvent};
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};

mod fold;

use fold::CallFact;

pub struct ContactsProjector;

/// The id of the contact created automatically for a caller's number.
pub fn caller_contact_id(organization_id: &str, phone: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("contact:{organization_id}:{phone}").as_bytes(),
    )
    .to_string()
}

impl ContactsProjector {
    /// Counts call `call_id` once for the contact with `phone`, creating the contact if needed.
    async fn count_call(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        organization_id: &str,
        call_id: &str,
        phone: &str,
        at: i64,
    ) -> Result<(), ProjectionError> {
        let contacts = tables.name("contacts");
        let links = tables.name("contact_calls");
        sqlx::query(&format!(
            "INSERT INTO {contacts} (id, organization_id, phone_number, source, created_at, \
             updated_at) VALUES ($1, $2, $3, 'caller', $4, $4) \
             ON CONFLICT (organization_id, phone_number) DO NOTHING"
        ))
        .bind(caller_contact_id(organization_id, phone))
        .bind(organization_id.to_string())
        .bind(phone.to_string())
        .bind(at)
        .execute(&mut **tx)
        .await?;
        let linked = sqlx::query(&format!(
            "INSERT INTO {links} (organization_id, call_id, contact_id) \
             SELECT organization_id, $1, id FROM {contacts} \
             WHERE organization_id = $2 AND phone_number = $3 \
             ON CONFLICT (organization_id, call_id) DO NOTHING"
        ))
        .bind(call_id.to_string())
        .bind(organization_id.to_string())
        .bind(phone.to_string())
        .execute(&mut **tx)
        .await?;
        if linked.rows_affected() > 0 {
            sqlx::query(&format!(
                "UPDATE {contacts} SET call_count = call_count + 1, deleted = 0, \
                 first_call_at = CASE WHEN first_call_at IS NULL OR first_call_at > $1 \
                 THEN $1 ELSE first_call_at END, \
                 last_call_id = CASE WHEN last_call_at IS NULL OR last_call_at <= $1 \
                 THEN $2 ELSE last_call_id END, \
                 last_call_at = CASE WHEN last_call_at IS NULL OR last_call_at < $1 \
                 THEN $1 ELSE last_call_at END, updated_at = $1 \
                 WHERE organization_id = $3 AND phone_number = $4"
            ))
            .bind(at)
            .bind(call_id.to_string())
            .bind(organization_id.to_string())
            .bind(phone.to_string())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn set_summary(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        summary: &str,
    ) -> Result<(), ProjectionError> {
        let contacts = tables.name("contacts");
        let links = tables.name("contact_calls");
        sqlx::query(&format!(
            "UPDATE {contacts} SET last_summary = $1 WHERE last_call_id = $2 AND id IN \
             (SELECT contact_id FROM {links} WHERE call_id = $2)"
        ))
        .bind(summary.to_string())
        .bind(stored.aggregate_id.clone())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn apply_call(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &CallEvent,
    ) -> Result<(), ProjectionError> {
        match fold::call_fact(stored, event) {
            Some(CallFact::Counted {
                organization,
                call_id,
                phone,
                at,
            }) => Self::count_call(tx, tables, &organization, call_id, phone, at).await,
            Some(CallFact::Summary { summary, .. }) => {
                Self::set_summary(tx, tables, stored, summary).await
            }
            None => Ok(()),
        }
    }

    async fn apply_organization(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &OrganizationEvent,
    ) -> Result<(), ProjectionError> {
        let contacts = tables.name("contacts");
        let org = stored.aggregate_id.clone();
        let at = stored.recorded_at;
        match event {
            OrganizationEvent::ContactCreated {
                contact_id,
                phone_number,
                name,
                email,
                notes,
                source,
            } => {
                let source = match source {
                    ContactSource::Manual => "manual",
                    ContactSource::Caller => "caller",
                };
                // A contact made by hand takes over the automatic one for the same number
                // (keeping its call history).
                sqlx::query(&format!(
                    "INSERT INTO {contacts} (id, organization_id, phone_number, name, email, \
                     notes, source, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                     $8, $8) ON CONFLICT (organization_id, phone_number) DO UPDATE SET \
                     id = excluded.id, name = excluded.name, email = excluded.email, \
                     notes = excluded.notes, source = excluded.source, deleted = 0, \
                     updated_at = excluded.updated_at"
                ))
                .bind(contact_id.clone())
                .bind(org)
                .bind(phone_number.clone())
                .bind(name.clone())
                .bind(email.clone())
                .bind(notes.clone())
                .bind(source)
                .bind(at)
                .execute(&mut **tx)
                .await?;
                let links = tables.name("contact_calls");
                sqlx::query(&format!(
                    "UPDATE {links} SET contact_id = $1 WHERE organization_id = $2 AND \
                     contact_id = $3"
                ))
                .bind(contact_id.clone())
                .bind(stored.aggregate_id.clone())
                .bind(caller_contact_id(&stored.aggregate_id, phone_number))
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::ContactUpdated {
                contact_id,
                name,
                email,
                notes,
            } => {
                sqlx::query(&format!(
                    "UPDATE {contacts} SET name = COALESCE($1, name), \
                     email = COALESCE($2, email), notes = COALESCE($3, notes), updated_at = $4 \
                     WHERE id = $5 AND organization_id = $6"
                ))
                .bind(name.clone())
                .bind(email.clone())
                .bind(notes.clone())
                .bind(at)
                .bind(contact_id.clone())
                .bind(org)
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::ContactDeleted { contact_id } => {
                sqlx::query(&format!(
                    "UPDATE {contacts} SET deleted = 1, updated_at = $1 \
                     WHERE id = $2 AND organization_id = $3"
                ))
                .bind(at)
                .bind(contact_id.clone())
                .bind(org)
                .execute(&mut **tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl Projector for ContactsProjector {
    fn name(&self) -> &'static str {
        "contacts"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Call(
                CallEvent::CallStarted { .. }
                    | CallEvent::CallDetailsLearned { .. }
                    | CallEvent::CallEnded { .. }
                    | CallEvent::CallAnalyzed { .. }
            ) | DomainEvent::Organization(_)
        )
    }

    fn tables(&self) -> &'static [&'static str] {
        &["contacts", "contact_calls"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        match event {
            DomainEvent::Call(event) => Self::apply_call(tx, tables, stored, event).await,
            DomainEvent::Organization(event) => {
                Self::apply_organization(tx, tables, stored, event).await
            }
            _ => Ok(()),
        }
    }

    /// Folds runs of call events in memory (see [`fold`]); hand-made contact changes in
    /// between are applied one by one, in order.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        let mut run = Vec::new();
        for (stored, event) in events {
            if fold::is_contact_edit(event) {
                fold::apply_run(tx, tables, &run).await?;
                run.clear();
                self.apply(tx, tables, stored, event).await?;
            } else if let DomainEvent::Call(call_event) = event {
                run.extend(fold::call_fact(stored, call_event));
            }
        }
        fold::apply_run(tx, tables, &run).await
    }
}
