//! Webhook secrets: the first one may be created by a member's sync, replacing or revealing
//! one is an admin's; rotation keeps the old secret for an overlap window; reveal works once.

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;

type OrgTest = TestFramework<Organization>;
type C = OrganizationCommand;
type Ev = OrganizationEvent;
type E = OrganizationError;

fn team() -> Vec<Ev> {
    let joined = |id: &str, role| Ev::MemberJoined {
        user_id: id.into(),
        email: format!("{id}@acme.test"),
        role,
    };
    vec![
        Ev::OrganizationCreated {
            id: Uuid::from_u128(7),
            name: "Acme".into(),
            owner_user_id: "owner".into(),
            owner_email: "owner@acme.test".into(),
        },
        joined("owner", Role::Owner),
        joined("admin", Role::Admin),
        joined("member", Role::Member),
    ]
}

fn auth(secret: &str) -> WebhookAuth {
    WebhookAuth {
        shared_secret: Some(secret.into()),
        ..Default::default()
    }
}

fn until() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

#[test]
fn a_member_may_create_the_first_webhook_secret_but_not_replace_it() {
    OrgTest::with(())
        .given(team())
        .when(C::ConfigureWebhookAuth {
            auth: auth("sealed-1"),
            actor: "user:member".into(),
        })
        .then_expect_events(vec![Ev::WebhookAuthConfigured {
            auth: auth("sealed-1"),
        }]);
    let mut given = team();
    given.push(Ev::WebhookAuthConfigured {
        auth: auth("sealed-1"),
    });
    OrgTest::with(())
        .given(given)
        .when(C::ConfigureWebhookAuth {
            auth: auth("sealed-2"),
            actor: "user:member".into(),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn rotation_keeps_the_previous_secret_until_the_overlap_ends() {
    let mut given = team();
    given.push(Ev::WebhookAuthConfigured {
        auth: auth("sealed-1"),
    });
    OrgTest::with(())
        .given(given.clone())
        .when(C::RotateWebhookSecret {
            secret: "sealed-2".into(),
            previous_valid_until: until(),
            actor: "user:admin".into(),
        })
        .then_expect_events(vec![Ev::WebhookSecretRotated {
            secret: "sealed-2".into(),
            previous_valid_until: Some(until()),
        }]);
    given.push(Ev::WebhookSecretRotated {
        secret: "sealed-2".into(),
        previous_valid_until: Some(until()),
    });
    let state = crate::replay::<Organization>(given);
    let auth = state.webhook_auth.expect("auth");
    assert_eq!(auth.current(), Some("sealed-2"));
    assert_eq!(auth.previous_secret.as_deref(), Some("sealed-1"));
    assert_eq!(auth.previous_valid_until, Some(until()));
    assert!(auth.revealed, "a rotated secret was shown to the admin");
    OrgTest::with(())
        .given(team())
        .when(C::RotateWebhookSecret {
            secret: "sealed-2".into(),
            previous_valid_until: until(),
            actor: "user:member".into(),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn a_secret_is_revealed_once() {
    let mut given = team();
    OrgTest::with(())
        .given(given.clone())
        .when(C::RevealWebhookSecret {
            actor: "user:admin".into(),
        })
        .then_expect_error(E::NoWebhookSecret);
    given.push(Ev::WebhookAuthConfigured {
        auth: auth("sealed-1"),
    });
    OrgTest::with(())
        .given(given.clone())
        .when(C::RevealWebhookSecret {
            actor: "user:admin".into(),
        })
        .then_expect_events(vec![Ev::WebhookSecretRevealed {}]);
    given.push(Ev::WebhookSecretRevealed {});
    OrgTest::with(())
        .given(given)
        .when(C::RevealWebhookSecret {
            actor: "user:admin".into(),
        })
        .then_expect_error(E::WebhookSecretAlreadyRevealed);
}
