//! Applying events: Contacts.

use super::super::*;

impl Organization {
    pub(super) fn apply_contacts(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
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
            _ => {}
        }
    }
}
