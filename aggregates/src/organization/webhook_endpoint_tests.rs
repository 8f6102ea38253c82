//! Outbound webhook endpoints: published event types only, admins only, changes recorded as
//! what changed, rotation keeps the previous secret until its time, the delivery process
//! disables once.

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

fn types(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn create(actor: &str, event_types: &[&str]) -> C {
    C::CreateWebhookEndpoint {
        endpoint_id: "ep1".into(),
        url: "https://crm.example.com/hooks".into(),
        description: Some("CRM".into()),
        event_types: types(event_types),
        secret: "sealed-1".into(),
        enabled: true,
        actor: actor.into(),
    }
}

fn created() -> Ev {
    Ev::WebhookEndpointCreated {
        endpoint_id: "ep1".into(),
        url: "https://crm.example.com/hooks".into(),
        description: Some("CRM".into()),
        event_types: types(&["call.ended", "call.started"]),
        secret: "sealed-1".into(),
        enabled: true,
    }
}

fn with_endpoint() -> Vec<Ev> {
    let mut given = team();
    given.push(created());
    given
}

#[test]
fn an_admin_creates_an_endpoint_with_published_types_sorted_once() {
    OrgTest::with(())
        .given(team())
        .when(create(
            "user:admin",
            &["call.started", "call.ended", "call.started"],
        ))
        .then_expect_events(vec![created()]);
}

#[test]
fn a_member_may_not_create_an_endpoint() {
    OrgTest::with(())
        .given(team())
        .when(create("user:member", &["call.ended"]))
        .then_expect_error(E::Forbidden);
}

#[test]
fn unknown_or_no_event_types_are_refused() {
    OrgTest::with(())
        .given(team())
        .when(create("user:admin", &["call.ended", "totally.bogus"]))
        .then_expect_error(E::UnknownEventType("totally.bogus".into()));
    OrgTest::with(())
        .given(team())
        .when(create("user:admin", &[]))
        .then_expect_error_message("invalid input: event_types must name at least one event type");
}

#[test]
fn an_update_records_only_what_changed_and_enabling_separately() {
    let mut given = with_endpoint();
    given.push(Ev::WebhookEndpointDisabled {
        endpoint_id: "ep1".into(),
        reason: Some("the receiver answered 410 Gone".into()),
    });
    OrgTest::with(())
        .given(given)
        .when(C::UpdateWebhookEndpoint {
            endpoint_id: "ep1".into(),
            url: Some("https://crm.example.com/hooks".into()),
            description: Some("New CRM".into()),
            event_types: None,
            enabled: Some(true),
            actor: "user:owner".into(),
        })
        .then_expect_events(vec![
            Ev::WebhookEndpointUpdated {
                endpoint_id: "ep1".into(),
                url: None,
                description: Some("New CRM".into()),
                event_types: None,
            },
            Ev::WebhookEndpointEnabled {
                endpoint_id: "ep1".into(),
            },
        ]);
}

#[test]
fn rotation_keeps_the_previous_secret_until_its_time() {
    let until = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
    let mut org = Organization::default();
    for e in with_endpoint() {
        org.apply(e);
    }
    let events = org
        .decide(C::RotateWebhookEndpointSecret {
            endpoint_id: "ep1".into(),
            secret: "sealed-2".into(),
            previous_until: until,
            actor: "user:admin".into(),
        })
        .unwrap();
    for e in events {
        org.apply(e);
    }
    let endpoint = &org.webhook_endpoint_details["ep1"];
    assert_eq!(endpoint.secret, "sealed-2");
    assert_eq!(endpoint.previous_secret.as_deref(), Some("sealed-1"));
    assert_eq!(endpoint.previous_until, Some(until));
}

#[test]
fn the_delivery_process_disables_once() {
    let disable = || C::DisableWebhookEndpoint {
        endpoint_id: "ep1".into(),
        reason: "5 deliveries in a row were dead-lettered".into(),
        actor: "system:process:webhook".into(),
    };
    let disabled = Ev::WebhookEndpointDisabled {
        endpoint_id: "ep1".into(),
        reason: Some("5 deliveries in a row were dead-lettered".into()),
    };
    OrgTest::with(())
        .given(with_endpoint())
        .when(disable())
        .then_expect_events(vec![disabled.clone()]);
    let mut given = with_endpoint();
    given.push(disabled);
    OrgTest::with(())
        .given(given)
        .when(disable())
        .then_expect_events(vec![]);
}

#[test]
fn an_unknown_endpoint_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::RotateWebhookEndpointSecret {
            endpoint_id: "nope".into(),
            secret: "sealed-2".into(),
            previous_until: Utc::now(),
            actor: "user:admin".into(),
        })
        .then_expect_error(E::WebhookEndpointNotFound);
}
