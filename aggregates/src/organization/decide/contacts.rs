//! Contacts: unique phone numbers, edits, deletion.

use super::super::Organization;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_contacts(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
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
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
