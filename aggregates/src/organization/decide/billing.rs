//! Billing and onboarding: the Stripe customer, the onboarding request.

use super::super::Organization;
use super::{invalid, require};
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_billing(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
            C::SetBillingCustomer { customer_id, .. } => {
                let customer_id = customer_id.trim().to_string();
                require(
                    !customer_id.is_empty(),
                    invalid("customer_id must not be empty"),
                )?;
                // Two requests racing to create the customer both get Stripe's one answer
                // (the same Idempotency-Key); a different id later is refused.
                match &self.billing_customer_id {
                    Some(known) if *known == customer_id => {}
                    Some(_) => return Err(E::BillingCustomerExists),
                    None => emit(self, out, Ev::BillingCustomerCreated { customer_id }),
                }
            }
            C::RequestOnboarding {
                business_name,
                template_slug,
                variables,
                area_code,
                email,
                at,
                actor,
            } => {
                require(!self.onboarding_requested, E::OnboardingAlreadyRequested)?;
                let business_name = business_name.trim().to_string();
                require(
                    !business_name.is_empty() && business_name.chars().count() <= 200,
                    invalid("business_name must be 1 to 200 characters"),
                )?;
                require(
                    !template_slug.trim().is_empty(),
                    invalid("template_slug must not be empty"),
                )?;
                if let Some(code) = &area_code {
                    let ok = code.len() == 3
                        && code.bytes().all(|b| b.is_ascii_digit())
                        && !code.starts_with(['0', '1']);
                    require(ok, invalid("area_code must be a 3-digit US area code"))?;
                }
                require(email.contains('@'), invalid("email must be an address"))?;
                emit(
                    self,
                    out,
                    Ev::OnboardingRequested {
                        business_name,
                        template_slug: template_slug.trim().to_string(),
                        variables,
                        area_code,
                        email,
                        requested_by: actor,
                        at,
                    },
                );
            }
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::super::super::{Organization, OrganizationError as E, OrganizationEvent as Ev};
    use super::C;

    const ORG: Uuid = Uuid::from_u128(7);

    fn created() -> Vec<Ev> {
        vec![
            Ev::OrganizationCreated {
                id: ORG,
                name: "Acme Haulage".into(),
                owner_user_id: "owner".into(),
                owner_email: "owner@example.com".into(),
            },
            Ev::MemberJoined {
                user_id: "owner".into(),
                email: "owner@example.com".into(),
                role: super::super::super::Role::Owner,
            },
        ]
    }

    fn onboarding(actor: &str) -> C {
        C::RequestOnboarding {
            business_name: "Acme Haulage".into(),
            template_slug: "trucking-dispatch".into(),
            variables: BTreeMap::new(),
            area_code: Some("415".into()),
            email: "owner@example.com".into(),
            at: chrono::DateTime::<Utc>::UNIX_EPOCH,
            actor: actor.into(),
        }
    }

    #[test]
    fn the_first_billing_customer_stays() {
        let set = |id: &str| C::SetBillingCustomer {
            customer_id: id.into(),
            actor: "system:process:onboarding".into(),
        };
        TestFramework::<Organization>::with(())
            .given(created())
            .when(set("cus_1"))
            .then_expect_events(vec![Ev::BillingCustomerCreated {
                customer_id: "cus_1".into(),
            }]);
        let mut with_customer = created();
        with_customer.push(Ev::BillingCustomerCreated {
            customer_id: "cus_1".into(),
        });
        TestFramework::<Organization>::with(())
            .given(with_customer.clone())
            .when(set("cus_1"))
            .then_expect_events(vec![]);
        TestFramework::<Organization>::with(())
            .given(with_customer)
            .when(set("cus_2"))
            .then_expect_error(E::BillingCustomerExists);
    }

    #[test]
    fn only_the_owner_requests_onboarding_and_only_once() {
        TestFramework::<Organization>::with(())
            .given(created())
            .when(onboarding("user:stranger"))
            .then_expect_error(E::Forbidden);
        let requested = Ev::OnboardingRequested {
            business_name: "Acme Haulage".into(),
            template_slug: "trucking-dispatch".into(),
            variables: BTreeMap::new(),
            area_code: Some("415".into()),
            email: "owner@example.com".into(),
            requested_by: "user:owner".into(),
            at: chrono::DateTime::<Utc>::UNIX_EPOCH,
        };
        TestFramework::<Organization>::with(())
            .given(created())
            .when(onboarding("user:owner"))
            .then_expect_events(vec![requested.clone()]);
        let mut again = created();
        again.push(requested);
        TestFramework::<Organization>::with(())
            .given(again)
            .when(onboarding("user:owner"))
            .then_expect_error(E::OnboardingAlreadyRequested);
    }
}
