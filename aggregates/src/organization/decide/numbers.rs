//! Phone numbers: the purchase saga's steps, configuration, release.

use super::super::is_stale;
use super::super::Organization;
use super::super::PurchaseStatus;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_numbers(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
            C::ProvisionPhoneNumber {
                phone_number_id,
                number,
                provider_sid,
                assistant_id,
                vapi_phone_number_id,
                ..
            } => {
                require(
                    !number.trim().is_empty(),
                    invalid("number must not be empty"),
                )?;
                let taken = self
                    .phone_numbers
                    .values()
                    .any(|p| !p.released && p.number == number);
                require(!taken, E::NumberAlreadyProvisioned)?;
                require(
                    !self.phone_numbers.contains_key(&phone_number_id),
                    invalid("phone_number_id is already used"),
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberProvisioned {
                        phone_number_id,
                        number,
                        provider_sid,
                        assistant_id,
                        vapi_phone_number_id,
                    },
                );
            }
            C::RequestPhoneNumberPurchase {
                purchase_id,
                number,
                area_code,
                assistant_id,
                at,
                ..
            } => {
                require(
                    !purchase_id.trim().is_empty(),
                    invalid("purchase_id must not be empty"),
                )?;
                let wanted =
                    |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
                require(
                    wanted(&number) || wanted(&area_code),
                    invalid("a number or an area code is required"),
                )?;
                if let Some(purchase) = self.purchases.get(&purchase_id) {
                    require(
                        purchase.status != PurchaseStatus::Pending,
                        E::PurchaseInProgress,
                    )?;
                }
                require(
                    !self.phone_numbers.contains_key(&purchase_id)
                        && self
                            .purchases
                            .get(&purchase_id)
                            .is_none_or(|p| p.status != PurchaseStatus::Completed),
                    invalid("this purchase is already completed"),
                )?;
                if let Some(id) = &assistant_id {
                    require(self.live_assistant(id).is_some(), E::AssistantNotFound)?;
                }
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseRequested {
                        purchase_id,
                        number,
                        area_code,
                        assistant_id,
                        requested_at: Some(at),
                    },
                );
            }
            C::ChoosePurchaseNumber {
                purchase_id,
                number,
                ..
            } => {
                self.require_pending_purchase(&purchase_id)?;
                require(
                    !number.trim().is_empty(),
                    invalid("number must not be empty"),
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseNumberChosen {
                        purchase_id,
                        number,
                    },
                );
            }
            C::ResumePhoneNumberPurchase {
                purchase_id,
                at,
                stale_after_secs,
                ..
            } => {
                let purchase = self.require_pending_purchase(&purchase_id)?;
                require(
                    is_stale(purchase.requested_at, at, stale_after_secs),
                    E::PurchaseInProgress,
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseResumed {
                        purchase_id,
                        resumed_at: at,
                    },
                );
            }
            C::AbandonPhoneNumberPurchase {
                purchase_id,
                reason,
                ..
            } => {
                self.require_pending_purchase(&purchase_id)?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseAbandoned {
                        purchase_id,
                        reason,
                    },
                );
            }
            C::FailPhoneNumberPurchase {
                purchase_id,
                stage,
                reason,
                provider_sid,
                ..
            } => {
                self.require_pending_purchase(&purchase_id)?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberPurchaseFailed {
                        purchase_id,
                        stage,
                        reason,
                        provider_sid,
                    },
                );
            }
            C::ConfigurePhoneNumber {
                phone_number_id,
                assistant_id,
                friendly_name,
                ..
            } => {
                require(
                    self.live_phone_number(&phone_number_id).is_some(),
                    E::PhoneNumberNotFound,
                )?;
                emit(
                    self,
                    out,
                    Ev::PhoneNumberConfigured {
                        phone_number_id,
                        assistant_id,
                        friendly_name,
                    },
                );
            }
            C::ReleasePhoneNumber {
                phone_number_id, ..
            } => {
                require(
                    self.live_phone_number(&phone_number_id).is_some(),
                    E::PhoneNumberNotFound,
                )?;
                emit(self, out, Ev::PhoneNumberReleased { phone_number_id });
            }
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
