//! Applying events: Phone numbers and their purchases.

use super::super::*;

impl Organization {
    pub(super) fn apply_numbers(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            PhoneNumberProvisioned {
                phone_number_id,
                number,
                provider_sid,
                assistant_id,
                vapi_phone_number_id,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&phone_number_id) {
                    purchase.status = PurchaseStatus::Completed;
                    purchase.last_error = None;
                }
                let state = PhoneNumberState {
                    number,
                    assistant_id,
                    released: false,
                    provider_sid,
                    vapi_phone_number_id,
                    friendly_name: None,
                };
                self.phone_numbers.insert(phone_number_id, state);
            }
            PhoneNumberPurchaseRequested {
                purchase_id,
                number,
                area_code,
                assistant_id,
                requested_at,
            } => {
                let attempts = self.purchases.get(&purchase_id).map_or(0, |p| p.attempts);
                let purchase = PhoneNumberPurchase {
                    status: PurchaseStatus::Pending,
                    number,
                    area_code,
                    assistant_id,
                    attempts: attempts + 1,
                    last_error: None,
                    requested_at,
                };
                self.purchases.insert(purchase_id, purchase);
            }
            PhoneNumberPurchaseNumberChosen {
                purchase_id,
                number,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.number = Some(number);
                }
            }
            PhoneNumberPurchaseResumed {
                purchase_id,
                resumed_at,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.requested_at = Some(resumed_at);
                }
            }
            PhoneNumberPurchaseAbandoned {
                purchase_id,
                reason,
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.status = PurchaseStatus::Failed;
                    purchase.last_error = Some(format!("abandoned: {reason}"));
                }
            }
            PhoneNumberPurchaseFailed {
                purchase_id,
                stage,
                reason,
                ..
            } => {
                if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
                    purchase.status = PurchaseStatus::Failed;
                    purchase.last_error = Some(format!("{stage}: {reason}"));
                }
            }
            PhoneNumberConfigured {
                phone_number_id,
                assistant_id,
                friendly_name,
            } => {
                if let Some(p) = self.phone_numbers.get_mut(&phone_number_id) {
                    p.assistant_id = assistant_id;
                    if friendly_name.is_some() {
                        p.friendly_name = friendly_name;
                    }
                }
            }
            PhoneNumberReleased { phone_number_id } => {
                if let Some(p) = self.phone_numbers.get_mut(&phone_number_id) {
                    p.released = true;
                }
            }
            _ => {}
        }
    }
}
