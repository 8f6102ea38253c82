//! Applying events: billing and onboarding.

use super::super::*;

impl Organization {
    pub(super) fn apply_billing(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            BillingCustomerCreated { customer_id } => {
                self.billing_customer_id = Some(customer_id);
            }
            OnboardingRequested { .. } => self.onboarding_requested = true,
            _ => {}
        }
    }
}
