use std::collections::BTreeMap;

use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::replay;

type OrgTest = TestFramework<Organization>;
type C = OrganizationCommand;
type Ev = OrganizationEvent;
type E = OrganizationError;

const ORG: Uuid = Uuid::from_u128(7);
const OWNER: &str = "user:owner";
const ADMIN: &str = "user:admin";
const MEMBER: &str = "user:member";
const VIEWER: &str = "user:viewer";
const SYSTEM: &str = "system";

fn s(v: &str) -> String {
    v.to_string()
}

fn created() -> Vec<Ev> {
    vec![
        Ev::OrganizationCreated {
            id: ORG,
            name: s("Acme Trucking"),
            owner_user_id: s("owner"),
            owner_email: s("owner@acme.test"),
        },
        Ev::MemberJoined {
            user_id: s("owner"),
            email: s("owner@acme.test"),
            role: Role::Owner,
        },
    ]
}

fn joined(user_id: &str, role: Role) -> Ev {
    Ev::MemberJoined {
        user_id: s(user_id),
        email: format!("{user_id}@acme.test"),
        role,
    }
}

/// Created org with an active admin, member and viewer.
fn team() -> Vec<Ev> {
    let mut events = created();
    events.push(joined("admin", Role::Admin));
    events.push(joined("member", Role::Member));
    events.push(joined("viewer", Role::Viewer));
    events
}

fn with(mut events: Vec<Ev>, more: Vec<Ev>) -> Vec<Ev> {
    events.extend(more);
    events
}

fn create_contact(actor: &str, contact_id: &str, phone: &str) -> C {
    C::CreateContact {
        contact_id: s(contact_id),
        phone_number: s(phone),
        name: Some(s("Ann")),
        email: None,
        notes: None,
        source: ContactSource::Manual,
        actor: s(actor),
    }
}

fn contact_created(contact_id: &str, phone: &str) -> Ev {
    Ev::ContactCreated {
        contact_id: s(contact_id),
        phone_number: s(phone),
        name: Some(s("Ann")),
        email: None,
        notes: None,
        source: ContactSource::Manual,
    }
}

fn create_assistant(actor: &str, id: &str) -> C {
    C::CreateAssistant {
        assistant_id: s(id),
        name: s("Front desk"),
        template_slug: Some(s("trucking")),
        system_prompt: s("You are a receptionist."),
        first_message: None,
        voice_id: None,
        model: None,
        functions: vec![s("take_message")],
        variables: BTreeMap::from([(s("company"), s("Acme"))]),
        actor: s(actor),
    }
}

fn assistant_created(id: &str) -> Ev {
    Ev::AssistantCreated {
        assistant_id: s(id),
        name: s("Front desk"),
        template_slug: Some(s("trucking")),
        system_prompt: s("You are a receptionist."),
        first_message: None,
        voice_id: None,
        model: None,
        functions: vec![s("take_message")],
        variables: BTreeMap::from([(s("company"), s("Acme"))]),
    }
}

fn provision(actor: &str, id: &str, number: &str) -> C {
    C::ProvisionPhoneNumber {
        phone_number_id: s(id),
        number: s(number),
        provider_sid: s("PN123"),
        assistant_id: None,
        vapi_phone_number_id: None,
        actor: s(actor),
    }
}

fn provisioned(id: &str, number: &str) -> Ev {
    Ev::PhoneNumberProvisioned {
        phone_number_id: s(id),
        number: s(number),
        provider_sid: s("PN123"),
        assistant_id: None,
        vapi_phone_number_id: None,
    }
}

// ---- Create / delete ----

#[test]
fn creating_an_organization_makes_the_creator_its_owner() {
    OrgTest::with(())
        .given_no_previous_events()
        .when(C::Create {
            id: ORG,
            name: s("Acme Trucking"),
            owner_user_id: s("owner"),
            owner_email: s("owner@acme.test"),
            actor: s(OWNER),
        })
        .then_expect_events(created());
}

#[test]
fn creating_an_organization_twice_is_rejected() {
    OrgTest::with(())
        .given(created())
        .when(C::Create {
            id: ORG,
            name: s("Again"),
            owner_user_id: s("owner"),
            owner_email: s("owner@acme.test"),
            actor: s(OWNER),
        })
        .then_expect_error(E::AlreadyExists);
}

#[test]
fn creating_an_organization_without_a_name_is_rejected() {
    OrgTest::with(())
        .given_no_previous_events()
        .when(C::Create {
            id: ORG,
            name: s("  "),
            owner_user_id: s("owner"),
            owner_email: s("owner@acme.test"),
            actor: s(OWNER),
        })
        .then_expect_error(E::InvalidInput(s("name must not be empty")));
}

#[test]
fn any_command_on_a_missing_organization_is_not_found() {
    OrgTest::with(())
        .given_no_previous_events()
        .when(C::UpdateProfile {
            name: Some(s("X")),
            actor: s(SYSTEM),
        })
        .then_expect_error(E::NotFound);
}

#[test]
fn the_owner_can_delete_the_organization() {
    OrgTest::with(())
        .given(team())
        .when(C::Delete { actor: s(OWNER) })
        .then_expect_events(vec![Ev::OrganizationDeleted {}]);
}

#[test]
fn an_admin_cannot_delete_the_organization() {
    OrgTest::with(())
        .given(team())
        .when(C::Delete { actor: s(ADMIN) })
        .then_expect_error(E::Forbidden);
}

#[test]
fn any_command_on_a_deleted_organization_is_not_found() {
    OrgTest::with(())
        .given(with(created(), vec![Ev::OrganizationDeleted {}]))
        .when(create_contact(OWNER, "c1", "+1555"))
        .then_expect_error(E::NotFound);
}

// ---- Profile, settings, webhook auth ----

#[test]
fn an_admin_can_rename_the_organization() {
    OrgTest::with(())
        .given(team())
        .when(C::UpdateProfile {
            name: Some(s("Acme Logistics")),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::ProfileUpdated {
            name: Some(s("Acme Logistics")),
        }]);
}

#[test]
fn a_profile_update_without_changes_is_a_no_op() {
    OrgTest::with(())
        .given(team())
        .when(C::UpdateProfile {
            name: Some(s("Acme Trucking")),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![]);
    OrgTest::with(())
        .given(team())
        .when(C::UpdateProfile {
            name: None,
            actor: s(ADMIN),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_member_cannot_change_settings() {
    OrgTest::with(())
        .given(team())
        .when(C::UpdateSettings {
            settings: OrganizationSettings::default(),
            actor: s(MEMBER),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn an_admin_can_change_settings() {
    let settings = OrganizationSettings {
        notifications: NotificationSettings {
            sms_enabled: true,
            sms_numbers: vec![s("+1555")],
            email_enabled: false,
            email_addresses: vec![],
            post_call_summary: true,
            quiet_hours: None,
            usage_alerts_sms: false,
        },
        transfer_numbers: TransferNumbers {
            dispatch: Some(s("+1666")),
            manager: None,
            emergency: None,
        },
        business_hours: Some(json!({"mon": "9-17"})),
        timezone: Some(s("America/Chicago")),
    };
    OrgTest::with(())
        .given(team())
        .when(C::UpdateSettings {
            settings: settings.clone(),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::SettingsUpdated {
            settings: settings.clone(),
        }]);
    OrgTest::with(())
        .given(with(
            team(),
            vec![Ev::SettingsUpdated {
                settings: settings.clone(),
            }],
        ))
        .when(C::UpdateSettings {
            settings,
            actor: s(ADMIN),
        })
        .then_expect_events(vec![]);
}

#[test]
fn webhook_auth_is_configured_once_per_change() {
    let auth = WebhookAuth {
        shared_secret: Some(s("shh")),
        hmac_secret: None,
        ..Default::default()
    };
    OrgTest::with(())
        .given(team())
        .when(C::ConfigureWebhookAuth {
            auth: auth.clone(),
            actor: s(SYSTEM),
        })
        .then_expect_events(vec![Ev::WebhookAuthConfigured { auth: auth.clone() }]);
    OrgTest::with(())
        .given(with(
            team(),
            vec![Ev::WebhookAuthConfigured { auth: auth.clone() }],
        ))
        .when(C::ConfigureWebhookAuth {
            auth,
            actor: s(OWNER),
        })
        .then_expect_events(vec![]);
}

// ---- Authorization ----

#[test]
fn a_viewer_cannot_write() {
    OrgTest::with(())
        .given(team())
        .when(create_contact(VIEWER, "c1", "+1555"))
        .then_expect_error(E::Forbidden);
}

#[test]
fn a_member_can_write_contacts() {
    OrgTest::with(())
        .given(team())
        .when(create_contact(MEMBER, "c1", "+1555"))
        .then_expect_events(vec![contact_created("c1", "+1555")]);
}

#[test]
fn a_stranger_cannot_act() {
    OrgTest::with(())
        .given(team())
        .when(create_contact("user:stranger", "c1", "+1555"))
        .then_expect_error(E::Forbidden);
}

#[test]
fn an_unrecognised_actor_cannot_act() {
    OrgTest::with(())
        .given(team())
        .when(create_contact("owner", "c1", "+1555"))
        .then_expect_error(E::Forbidden);
}

#[test]
fn system_and_provider_actors_skip_role_checks() {
    OrgTest::with(())
        .given(team())
        .when(C::Delete { actor: s(SYSTEM) })
        .then_expect_events(vec![Ev::OrganizationDeleted {}]);
    OrgTest::with(())
        .given(team())
        .when(create_contact("provider:vapi", "c1", "+1555"))
        .then_expect_events(vec![contact_created("c1", "+1555")]);
}

#[test]
fn an_api_key_acts_with_admin_rights() {
    OrgTest::with(())
        .given(with(team(), vec![key_created("k1")]))
        .when(provision("api_key:k1", "pn1", "+1777"))
        .then_expect_events(vec![provisioned("pn1", "+1777")]);
    OrgTest::with(())
        .given(with(team(), vec![key_created("k1")]))
        .when(C::Delete {
            actor: s("api_key:k1"),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn an_invited_but_not_joined_user_cannot_act() {
    OrgTest::with(())
        .given(with(
            team(),
            vec![Ev::MemberInvited {
                user_id: s("new"),
                email: s("new@acme.test"),
                role: Role::Admin,
            }],
        ))
        .when(create_contact("user:new", "c1", "+1555"))
        .then_expect_error(E::Forbidden);
}

// ---- Members ----

#[test]
fn an_admin_can_invite_a_member() {
    OrgTest::with(())
        .given(team())
        .when(C::InviteMember {
            user_id: s("new"),
            email: s("new@acme.test"),
            role: Role::Member,
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::MemberInvited {
            user_id: s("new"),
            email: s("new@acme.test"),
            role: Role::Member,
        }]);
}

#[test]
fn a_member_cannot_invite() {
    OrgTest::with(())
        .given(team())
        .when(C::InviteMember {
            user_id: s("new"),
            email: s("new@acme.test"),
            role: Role::Viewer,
            actor: s(MEMBER),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn only_an_owner_can_invite_an_owner() {
    let invite = |actor: &str| C::InviteMember {
        user_id: s("new"),
        email: s("new@acme.test"),
        role: Role::Owner,
        actor: s(actor),
    };
    OrgTest::with(())
        .given(team())
        .when(invite(ADMIN))
        .then_expect_error(E::Forbidden);
    OrgTest::with(())
        .given(team())
        .when(invite(OWNER))
        .then_expect_events(vec![Ev::MemberInvited {
            user_id: s("new"),
            email: s("new@acme.test"),
            role: Role::Owner,
        }]);
}

#[test]
fn inviting_an_active_member_is_rejected() {
    OrgTest::with(())
        .given(team())
        .when(C::InviteMember {
            user_id: s("member"),
            email: s("member@acme.test"),
            role: Role::Admin,
            actor: s(OWNER),
        })
        .then_expect_error(E::AlreadyMember);
}

#[test]
fn the_invited_user_joins_with_the_invited_role() {
    let invited = Ev::MemberInvited {
        user_id: s("new"),
        email: s("new@acme.test"),
        role: Role::Admin,
    };
    OrgTest::with(())
        .given(with(team(), vec![invited.clone()]))
        .when(C::AcceptInvite {
            user_id: s("new"),
            actor: s("user:new"),
        })
        .then_expect_events(vec![Ev::MemberJoined {
            user_id: s("new"),
            email: s("new@acme.test"),
            role: Role::Admin,
        }]);
    OrgTest::with(())
        .given(with(team(), vec![invited]))
        .when(C::AcceptInvite {
            user_id: s("new"),
            actor: s(OWNER),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn accepting_twice_is_a_no_op_and_accepting_without_invite_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::AcceptInvite {
            user_id: s("member"),
            actor: s(MEMBER),
        })
        .then_expect_events(vec![]);
    OrgTest::with(())
        .given(team())
        .when(C::AcceptInvite {
            user_id: s("ghost"),
            actor: s("user:ghost"),
        })
        .then_expect_error(E::MemberNotFound);
}

#[test]
fn an_admin_can_change_a_members_role() {
    OrgTest::with(())
        .given(team())
        .when(C::ChangeMemberRole {
            user_id: s("viewer"),
            role: Role::Member,
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::MemberRoleChanged {
            user_id: s("viewer"),
            role: Role::Member,
        }]);
}

#[test]
fn changing_to_the_same_role_is_a_no_op() {
    OrgTest::with(())
        .given(team())
        .when(C::ChangeMemberRole {
            user_id: s("viewer"),
            role: Role::Viewer,
            actor: s(ADMIN),
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_admin_cannot_promote_to_owner() {
    OrgTest::with(())
        .given(team())
        .when(C::ChangeMemberRole {
            user_id: s("member"),
            role: Role::Owner,
            actor: s(ADMIN),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn changing_the_role_of_an_unknown_member_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::ChangeMemberRole {
            user_id: s("ghost"),
            role: Role::Member,
            actor: s(OWNER),
        })
        .then_expect_error(E::MemberNotFound);
}

#[test]
fn the_last_owner_cannot_be_demoted() {
    OrgTest::with(())
        .given(team())
        .when(C::ChangeMemberRole {
            user_id: s("owner"),
            role: Role::Admin,
            actor: s(OWNER),
        })
        .then_expect_error(E::LastOwner);
}

#[test]
fn the_last_owner_cannot_leave() {
    OrgTest::with(())
        .given(team())
        .when(C::RemoveMember {
            user_id: s("owner"),
            actor: s(OWNER),
        })
        .then_expect_error(E::LastOwner);
}

#[test]
fn an_owner_can_leave_when_another_owner_remains() {
    OrgTest::with(())
        .given(with(team(), vec![joined("owner2", Role::Owner)]))
        .when(C::RemoveMember {
            user_id: s("owner"),
            actor: s(OWNER),
        })
        .then_expect_events(vec![Ev::MemberRemoved {
            user_id: s("owner"),
        }]);
}

#[test]
fn an_admin_can_remove_a_member_but_not_an_owner() {
    OrgTest::with(())
        .given(team())
        .when(C::RemoveMember {
            user_id: s("member"),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::MemberRemoved {
            user_id: s("member"),
        }]);
    OrgTest::with(())
        .given(with(team(), vec![joined("owner2", Role::Owner)]))
        .when(C::RemoveMember {
            user_id: s("owner2"),
            actor: s(ADMIN),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn a_viewer_can_leave_but_not_remove_others() {
    OrgTest::with(())
        .given(team())
        .when(C::RemoveMember {
            user_id: s("viewer"),
            actor: s(VIEWER),
        })
        .then_expect_events(vec![Ev::MemberRemoved {
            user_id: s("viewer"),
        }]);
    OrgTest::with(())
        .given(team())
        .when(C::RemoveMember {
            user_id: s("member"),
            actor: s(VIEWER),
        })
        .then_expect_error(E::Forbidden);
}

#[test]
fn removing_an_unknown_member_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::RemoveMember {
            user_id: s("ghost"),
            actor: s(OWNER),
        })
        .then_expect_error(E::MemberNotFound);
}

#[test]
fn a_removed_member_can_no_longer_act() {
    OrgTest::with(())
        .given(with(
            team(),
            vec![Ev::MemberRemoved {
                user_id: s("member"),
            }],
        ))
        .when(create_contact(MEMBER, "c1", "+1555"))
        .then_expect_error(E::Forbidden);
}

// ---- Phone numbers ----

#[test]
fn an_admin_can_provision_a_phone_number() {
    OrgTest::with(())
        .given(team())
        .when(provision(ADMIN, "pn1", "+1777"))
        .then_expect_events(vec![provisioned("pn1", "+1777")]);
}

fn request_purchase(id: &str) -> C {
    C::RequestPhoneNumberPurchase {
        purchase_id: s(id),
        number: None,
        area_code: Some(s("415")),
        assistant_id: None,
        at: t(0),
        actor: s(ADMIN),
    }
}

/// A time `secs` seconds after a fixed instant.
fn t(secs: i64) -> crate::common::Timestamp {
    chrono::DateTime::from_timestamp(1_750_000_000 + secs, 0).expect("valid time")
}

fn purchase_requested(id: &str) -> Ev {
    Ev::PhoneNumberPurchaseRequested {
        purchase_id: s(id),
        number: None,
        area_code: Some(s("415")),
        assistant_id: None,
        requested_at: Some(t(0)),
    }
}

fn purchase_failed(id: &str) -> Ev {
    Ev::PhoneNumberPurchaseFailed {
        purchase_id: s(id),
        stage: s("twilio"),
        reason: s("refused"),
        provider_sid: None,
    }
}

#[test]
fn a_purchase_intent_is_recorded_and_a_second_one_is_refused_while_it_runs() {
    OrgTest::with(())
        .given(team())
        .when(request_purchase("pn1"))
        .then_expect_events(vec![purchase_requested("pn1")]);
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1")]))
        .when(request_purchase("pn1"))
        .then_expect_error(E::PurchaseInProgress);
}

#[test]
fn a_failed_purchase_may_be_retried_and_a_completed_one_may_not() {
    OrgTest::with(())
        .given(with(
            team(),
            vec![purchase_requested("pn1"), purchase_failed("pn1")],
        ))
        .when(request_purchase("pn1"))
        .then_expect_events(vec![purchase_requested("pn1")]);
    OrgTest::with(())
        .given(with(
            team(),
            vec![purchase_requested("pn1"), provisioned("pn1", "+1777")],
        ))
        .when(request_purchase("pn1"))
        .then_expect_error(E::InvalidInput(s("this purchase is already completed")));
}

#[test]
fn a_purchase_can_only_fail_while_in_progress_and_members_cannot_buy() {
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1")]))
        .when(C::FailPhoneNumberPurchase {
            purchase_id: s("pn1"),
            stage: s("twilio"),
            reason: s("refused"),
            provider_sid: None,
            actor: s(ADMIN),
        })
        .then_expect_events(vec![purchase_failed("pn1")]);
    OrgTest::with(())
        .given(team())
        .when(C::FailPhoneNumberPurchase {
            purchase_id: s("pn1"),
            stage: s("twilio"),
            reason: s("refused"),
            provider_sid: None,
            actor: s(ADMIN),
        })
        .then_expect_error(E::InvalidInput(s("no purchase in progress with this id")));
    let mut member = request_purchase("pn1");
    if let C::RequestPhoneNumberPurchase { actor, .. } = &mut member {
        *actor = s(MEMBER);
    }
    OrgTest::with(())
        .given(team())
        .when(member)
        .then_expect_error(E::Forbidden);
}

#[test]
fn the_state_keeps_what_a_vapi_sync_and_a_release_need() {
    let mut org = Organization::default();
    for event in with(
        team(),
        vec![
            assistant_created("a1"),
            purchase_requested("pn1"),
            Ev::PhoneNumberProvisioned {
                phone_number_id: s("pn1"),
                number: s("+1777"),
                provider_sid: s("PN1"),
                assistant_id: Some(s("a1")),
                vapi_phone_number_id: Some(s("v-pn")),
            },
        ],
    ) {
        org.apply(event);
    }
    let assistant = org.live_assistant("a1").expect("assistant");
    assert_eq!(assistant.system_prompt, "You are a receptionist.");
    assert!(assistant.needs_sync);
    let number = org.live_phone_number("pn1").expect("number");
    assert_eq!(number.provider_sid, "PN1");
    assert_eq!(number.vapi_phone_number_id.as_deref(), Some("v-pn"));
    assert_eq!(
        org.purchases.get("pn1").map(|p| p.status),
        Some(PurchaseStatus::Completed)
    );
    // Older payloads without `vapi_phone_number_id` still decode.
    let old: Ev = serde_json::from_value(json!({"PhoneNumberProvisioned": {
        "phone_number_id": "p", "number": "n", "provider_sid": "s", "assistant_id": null}}))
    .expect("old payload decodes");
    assert_eq!(old, provisioned_with("p", "n", "s"));
}

fn provisioned_with(id: &str, number: &str, sid: &str) -> Ev {
    Ev::PhoneNumberProvisioned {
        phone_number_id: s(id),
        number: s(number),
        provider_sid: s(sid),
        assistant_id: None,
        vapi_phone_number_id: None,
    }
}

#[test]
fn a_member_cannot_provision_a_phone_number() {
    OrgTest::with(())
        .given(team())
        .when(provision(MEMBER, "pn1", "+1777"))
        .then_expect_error(E::Forbidden);
}

#[test]
fn provisioning_an_active_number_twice_is_rejected() {
    OrgTest::with(())
        .given(with(team(), vec![provisioned("pn1", "+1777")]))
        .when(provision(ADMIN, "pn2", "+1777"))
        .then_expect_error(E::NumberAlreadyProvisioned);
}

#[test]
fn a_released_number_can_be_provisioned_again() {
    OrgTest::with(())
        .given(with(
            team(),
            vec![
                provisioned("pn1", "+1777"),
                Ev::PhoneNumberReleased {
                    phone_number_id: s("pn1"),
                },
            ],
        ))
        .when(provision(ADMIN, "pn2", "+1777"))
        .then_expect_events(vec![provisioned("pn2", "+1777")]);
}

#[test]
fn reusing_a_phone_number_id_is_invalid() {
    OrgTest::with(())
        .given(with(team(), vec![provisioned("pn1", "+1777")]))
        .when(provision(ADMIN, "pn1", "+1888"))
        .then_expect_error(E::InvalidInput(s("phone_number_id is already used")));
}

#[test]
fn a_phone_number_can_be_configured() {
    OrgTest::with(())
        .given(with(team(), vec![provisioned("pn1", "+1777")]))
        .when(C::ConfigurePhoneNumber {
            phone_number_id: s("pn1"),
            assistant_id: Some(s("a1")),
            friendly_name: Some(s("Main line")),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::PhoneNumberConfigured {
            phone_number_id: s("pn1"),
            assistant_id: Some(s("a1")),
            friendly_name: Some(s("Main line")),
        }]);
}

#[test]
fn configuring_an_unknown_phone_number_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::ConfigurePhoneNumber {
            phone_number_id: s("pn9"),
            assistant_id: None,
            friendly_name: None,
            actor: s(ADMIN),
        })
        .then_expect_error(E::PhoneNumberNotFound);
}

#[test]
fn a_phone_number_is_released_once() {
    let release = || C::ReleasePhoneNumber {
        phone_number_id: s("pn1"),
        actor: s(ADMIN),
    };
    let released = Ev::PhoneNumberReleased {
        phone_number_id: s("pn1"),
    };
    OrgTest::with(())
        .given(with(team(), vec![provisioned("pn1", "+1777")]))
        .when(release())
        .then_expect_events(vec![released.clone()]);
    OrgTest::with(())
        .given(with(team(), vec![provisioned("pn1", "+1777"), released]))
        .when(release())
        .then_expect_error(E::PhoneNumberNotFound);
}

// ---- Assistants ----

#[test]
fn a_member_can_create_an_assistant() {
    OrgTest::with(())
        .given(team())
        .when(create_assistant(MEMBER, "a1"))
        .then_expect_events(vec![assistant_created("a1")]);
}

#[test]
fn reusing_an_assistant_id_is_invalid() {
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(create_assistant(MEMBER, "a1"))
        .then_expect_error(E::InvalidInput(s("assistant_id is already used")));
}

fn update_assistant(id: &str, name: Option<&str>) -> C {
    C::UpdateAssistant {
        assistant_id: s(id),
        name: name.map(s),
        template_slug: None,
        system_prompt: None,
        first_message: None,
        voice_id: None,
        model: None,
        functions: None,
        variables: None,
        actor: s(MEMBER),
    }
}

#[test]
fn an_assistant_can_be_updated() {
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(update_assistant("a1", Some("Night desk")))
        .then_expect_events(vec![Ev::AssistantUpdated {
            assistant_id: s("a1"),
            name: Some(s("Night desk")),
            template_slug: None,
            system_prompt: None,
            first_message: None,
            voice_id: None,
            model: None,
            functions: None,
            variables: None,
        }]);
}

#[test]
fn an_empty_assistant_update_is_a_no_op() {
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(update_assistant("a1", None))
        .then_expect_events(vec![]);
}

#[test]
fn updating_an_unknown_assistant_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(update_assistant("a9", Some("x")))
        .then_expect_error(E::AssistantNotFound);
}

#[test]
fn an_assistant_is_marked_synced_with_its_vapi_id() {
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(C::MarkAssistantSynced {
            assistant_id: s("a1"),
            vapi_assistant_id: s("vapi-a1"),
            actor: s(SYSTEM),
        })
        .then_expect_events(vec![Ev::AssistantSynced {
            assistant_id: s("a1"),
            vapi_assistant_id: s("vapi-a1"),
        }]);
    let org = replay::<Organization>(with(
        team(),
        vec![
            assistant_created("a1"),
            Ev::AssistantSynced {
                assistant_id: s("a1"),
                vapi_assistant_id: s("vapi-a1"),
            },
        ],
    ));
    assert_eq!(
        org.live_assistant("a1")
            .and_then(|a| a.vapi_assistant_id.as_deref()),
        Some("vapi-a1")
    );
}

#[test]
fn syncing_an_unknown_assistant_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::MarkAssistantSynced {
            assistant_id: s("a9"),
            vapi_assistant_id: s("v"),
            actor: s(SYSTEM),
        })
        .then_expect_error(E::AssistantNotFound);
}

#[test]
fn a_deleted_assistant_cannot_be_deleted_again() {
    let delete = || C::DeleteAssistant {
        assistant_id: s("a1"),
        actor: s(MEMBER),
    };
    let deleted = Ev::AssistantDeleted {
        assistant_id: s("a1"),
    };
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(delete())
        .then_expect_events(vec![deleted.clone()]);
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1"), deleted]))
        .when(delete())
        .then_expect_error(E::AssistantNotFound);
}

// ---- Contacts ----

#[test]
fn a_contact_phone_number_must_be_unique_among_live_contacts() {
    OrgTest::with(())
        .given(with(team(), vec![contact_created("c1", "+1555")]))
        .when(create_contact(MEMBER, "c2", "+1555"))
        .then_expect_error(E::ContactExists(s("c1")));
}

#[test]
fn a_deleted_contacts_phone_number_can_be_reused() {
    OrgTest::with(())
        .given(with(
            team(),
            vec![
                contact_created("c1", "+1555"),
                Ev::ContactDeleted {
                    contact_id: s("c1"),
                },
            ],
        ))
        .when(create_contact(MEMBER, "c2", "+1555"))
        .then_expect_events(vec![contact_created("c2", "+1555")]);
}

#[test]
fn reusing_a_contact_id_is_invalid() {
    OrgTest::with(())
        .given(with(team(), vec![contact_created("c1", "+1555")]))
        .when(create_contact(MEMBER, "c1", "+1666"))
        .then_expect_error(E::InvalidInput(s("contact_id is already used")));
}

#[test]
fn a_contact_can_be_updated_and_an_empty_update_is_a_no_op() {
    let update = |notes: Option<&str>| C::UpdateContact {
        contact_id: s("c1"),
        name: None,
        email: None,
        notes: notes.map(s),
        actor: s(MEMBER),
    };
    OrgTest::with(())
        .given(with(team(), vec![contact_created("c1", "+1555")]))
        .when(update(Some("VIP")))
        .then_expect_events(vec![Ev::ContactUpdated {
            contact_id: s("c1"),
            name: None,
            email: None,
            notes: Some(s("VIP")),
        }]);
    OrgTest::with(())
        .given(with(team(), vec![contact_created("c1", "+1555")]))
        .when(update(None))
        .then_expect_events(vec![]);
}

#[test]
fn updating_or_deleting_an_unknown_contact_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::UpdateContact {
            contact_id: s("c9"),
            name: Some(s("x")),
            email: None,
            notes: None,
            actor: s(MEMBER),
        })
        .then_expect_error(E::ContactNotFound);
    OrgTest::with(())
        .given(team())
        .when(C::DeleteContact {
            contact_id: s("c9"),
            actor: s(MEMBER),
        })
        .then_expect_error(E::ContactNotFound);
}

#[test]
fn a_contact_can_be_deleted() {
    OrgTest::with(())
        .given(with(team(), vec![contact_created("c1", "+1555")]))
        .when(C::DeleteContact {
            contact_id: s("c1"),
            actor: s(MEMBER),
        })
        .then_expect_events(vec![Ev::ContactDeleted {
            contact_id: s("c1"),
        }]);
}

// ---- Integrations ----

#[test]
fn an_integration_can_be_connected_configured_and_disconnected() {
    let connected = Ev::IntegrationConnected {
        provider: s("slack"),
        config: json!({"channel": "#ops"}),
    };
    OrgTest::with(())
        .given(team())
        .when(C::ConnectIntegration {
            provider: s("slack"),
            config: json!({"channel": "#ops"}),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![connected.clone()]);
    OrgTest::with(())
        .given(with(team(), vec![connected.clone()]))
        .when(C::ConfigureIntegration {
            provider: s("slack"),
            config: json!({"channel": "#calls"}),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::IntegrationConfigured {
            provider: s("slack"),
            config: json!({"channel": "#calls"}),
        }]);
    OrgTest::with(())
        .given(with(team(), vec![connected]))
        .when(C::DisconnectIntegration {
            provider: s("slack"),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::IntegrationDisconnected {
            provider: s("slack"),
        }]);
}

#[test]
fn configuring_or_disconnecting_an_unconnected_integration_is_not_found() {
    let disconnected = with(
        team(),
        vec![
            Ev::IntegrationConnected {
                provider: s("slack"),
                config: json!({}),
            },
            Ev::IntegrationDisconnected {
                provider: s("slack"),
            },
        ],
    );
    OrgTest::with(())
        .given(disconnected)
        .when(C::ConfigureIntegration {
            provider: s("slack"),
            config: json!({}),
            actor: s(ADMIN),
        })
        .then_expect_error(E::IntegrationNotFound);
    OrgTest::with(())
        .given(team())
        .when(C::DisconnectIntegration {
            provider: s("hubspot"),
            actor: s(ADMIN),
        })
        .then_expect_error(E::IntegrationNotFound);
}

// ---- Webhook endpoints ----

fn register(url: &str) -> C {
    C::RegisterWebhookEndpoint {
        endpoint_id: s("wh1"),
        url: s(url),
        secret: s("whsec"),
        event_types: vec![s("call.ended")],
        actor: s(ADMIN),
    }
}

#[test]
fn a_webhook_endpoint_is_registered_and_removed() {
    let registered = Ev::WebhookEndpointRegistered {
        endpoint_id: s("wh1"),
        url: s("https://hooks.acme.test/calls"),
        secret: s("whsec"),
        event_types: vec![s("call.ended")],
    };
    OrgTest::with(())
        .given(team())
        .when(register("https://hooks.acme.test/calls"))
        .then_expect_events(vec![registered.clone()]);
    OrgTest::with(())
        .given(with(team(), vec![registered]))
        .when(C::RemoveWebhookEndpoint {
            endpoint_id: s("wh1"),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::WebhookEndpointRemoved {
            endpoint_id: s("wh1"),
        }]);
}

#[test]
fn a_webhook_url_must_be_http() {
    OrgTest::with(())
        .given(team())
        .when(register("ftp://hooks.acme.test"))
        .then_expect_error(E::InvalidInput(s(
            "url must start with http:// or https://",
        )));
}

#[test]
fn removing_an_unknown_webhook_endpoint_is_not_found() {
    OrgTest::with(())
        .given(team())
        .when(C::RemoveWebhookEndpoint {
            endpoint_id: s("wh9"),
            actor: s(ADMIN),
        })
        .then_expect_error(E::WebhookEndpointNotFound);
}

// ---- Contracts ----

#[test]
fn organization_state_survives_a_json_round_trip() {
    let org = replay::<Organization>(with(
        team(),
        vec![
            Ev::MemberInvited {
                user_id: s("new"),
                email: s("new@acme.test"),
                role: Role::Viewer,
            },
            provisioned("pn1", "+1777"),
            assistant_created("a1"),
            contact_created("c1", "+1555"),
            Ev::IntegrationConnected {
                provider: s("slack"),
                config: json!({}),
            },
            Ev::WebhookEndpointRegistered {
                endpoint_id: s("wh1"),
                url: s("https://x.test"),
                secret: s("s"),
                event_types: vec![],
            },
            Ev::WebhookAuthConfigured {
                auth: WebhookAuth {
                    shared_secret: None,
                    hmac_secret: Some(s("h")),
                    ..Default::default()
                },
            },
            Ev::SettingsUpdated {
                settings: OrganizationSettings {
                    business_hours: Some(json!({"mon": "9-17"})),
                    ..OrganizationSettings::default()
                },
            },
        ],
    ));
    let json = serde_json::to_string(&org).expect("serializes");
    let back: Organization = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, org);
    assert_eq!(org.contact_by_phone("+1555"), Some("c1"));
    assert_eq!(org.active_owner_count(), 1);
}

#[test]
fn organization_event_types_are_pinned() {
    let names = [
        "OrganizationCreated",
        "ProfileUpdated",
        "SettingsUpdated",
        "WebhookAuthConfigured",
        "MemberInvited",
        "MemberJoined",
        "MemberRoleChanged",
        "MemberRemoved",
        "PhoneNumberProvisioned",
        "PhoneNumberPurchaseRequested",
        "PhoneNumberPurchaseNumberChosen",
        "PhoneNumberPurchaseResumed",
        "PhoneNumberPurchaseAbandoned",
        "PhoneNumberPurchaseFailed",
        "PhoneNumberConfigured",
        "PhoneNumberReleased",
        "AssistantCreated",
        "AssistantUpdated",
        "AssistantSyncStarted",
        "AssistantSyncFailed",
        "AssistantSynced",
        "AssistantDeleted",
        "ContactCreated",
        "ContactUpdated",
        "ContactDeleted",
        "IntegrationAuthorizationStarted",
        "IntegrationAuthorizationUsed",
        "IntegrationConnected",
        "IntegrationConfigured",
        "IntegrationDisconnected",
        "WebhookEndpointRegistered",
        "WebhookEndpointRemoved",
        "OrganizationDeleted",
    ];
    let events = vec![
        created()[0].clone(),
        Ev::ProfileUpdated { name: None },
        Ev::SettingsUpdated {
            settings: OrganizationSettings::default(),
        },
        Ev::WebhookAuthConfigured {
            auth: WebhookAuth::default(),
        },
        Ev::MemberInvited {
            user_id: s("u"),
            email: s("e"),
            role: Role::Viewer,
        },
        joined("u", Role::Member),
        Ev::MemberRoleChanged {
            user_id: s("u"),
            role: Role::Admin,
        },
        Ev::MemberRemoved { user_id: s("u") },
        provisioned("p", "n"),
        Ev::PhoneNumberPurchaseRequested {
            purchase_id: s("p"),
            number: None,
            area_code: Some(s("415")),
            assistant_id: None,
            requested_at: Some(t(0)),
        },
        Ev::PhoneNumberPurchaseNumberChosen {
            purchase_id: s("p"),
            number: s("+1415"),
        },
        Ev::PhoneNumberPurchaseResumed {
            purchase_id: s("p"),
            resumed_at: t(1),
        },
        Ev::PhoneNumberPurchaseAbandoned {
            purchase_id: s("p"),
            reason: s("r"),
        },
        Ev::PhoneNumberPurchaseFailed {
            purchase_id: s("p"),
            stage: s("twilio"),
            reason: s("r"),
            provider_sid: None,
        },
        Ev::PhoneNumberConfigured {
            phone_number_id: s("p"),
            assistant_id: None,
            friendly_name: None,
        },
        Ev::PhoneNumberReleased {
            phone_number_id: s("p"),
        },
        assistant_created("a"),
        Ev::AssistantUpdated {
            assistant_id: s("a"),
            name: None,
            template_slug: None,
            system_prompt: None,
            first_message: None,
            voice_id: None,
            model: None,
            functions: None,
            variables: None,
        },
        Ev::AssistantSyncStarted {
            assistant_id: s("a"),
            sync_id: s("s"),
            started_at: t(0),
        },
        Ev::AssistantSyncFailed {
            assistant_id: s("a"),
            sync_id: s("s"),
            reason: s("r"),
        },
        Ev::AssistantSynced {
            assistant_id: s("a"),
            vapi_assistant_id: s("v"),
        },
        Ev::AssistantDeleted {
            assistant_id: s("a"),
        },
        contact_created("c", "n"),
        Ev::ContactUpdated {
            contact_id: s("c"),
            name: None,
            email: None,
            notes: None,
        },
        Ev::ContactDeleted { contact_id: s("c") },
        Ev::IntegrationAuthorizationStarted {
            provider: s("x"),
            state_hash: s("h"),
            expires_at: t(600),
        },
        Ev::IntegrationAuthorizationUsed {
            provider: s("x"),
            state_hash: s("h"),
        },
        Ev::IntegrationConnected {
            provider: s("x"),
            config: json!({}),
        },
        Ev::IntegrationConfigured {
            provider: s("x"),
            config: json!({}),
        },
        Ev::IntegrationDisconnected { provider: s("x") },
        Ev::WebhookEndpointRegistered {
            endpoint_id: s("w"),
            url: s("https://x"),
            secret: s("s"),
            event_types: vec![],
        },
        Ev::WebhookEndpointRemoved {
            endpoint_id: s("w"),
        },
        Ev::OrganizationDeleted {},
    ];
    assert_eq!(events.len(), names.len());
    for (event, name) in events.iter().zip(names) {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1");
        let value = serde_json::to_value(event).expect("serializes");
        assert!(value.get(name).is_some(), "{name} is the serde tag");
        let back: Ev = serde_json::from_value(value).expect("deserializes");
        assert_eq!(&back, event);
    }
    assert_eq!(<Organization as cqrs_es::Aggregate>::TYPE, "organization");
}

#[test]
fn roles_and_statuses_serialize_in_lowercase() {
    assert_eq!(
        serde_json::to_value(Role::Owner).expect("ser"),
        json!("owner")
    );
    assert_eq!(
        serde_json::to_value(MemberStatus::Invited).expect("ser"),
        json!("invited")
    );
    assert_eq!(
        serde_json::to_value(ContactSource::Caller).expect("ser"),
        json!("caller")
    );
}

#[test]
fn organization_error_codes_are_stable() {
    let codes = [
        (E::NotFound, "organization_not_found"),
        (E::AlreadyExists, "organization_already_exists"),
        (E::Forbidden, "forbidden"),
        (E::LastOwner, "last_owner"),
        (E::MemberNotFound, "member_not_found"),
        (E::AlreadyMember, "already_member"),
        (E::PhoneNumberNotFound, "phone_number_not_found"),
        (E::NumberAlreadyProvisioned, "number_already_provisioned"),
        (E::AssistantNotFound, "assistant_not_found"),
        (E::ContactExists(s("c")), "contact_exists"),
        (E::ContactNotFound, "contact_not_found"),
        (E::IntegrationNotFound, "integration_not_found"),
        (E::WebhookEndpointNotFound, "webhook_endpoint_not_found"),
        (E::InvalidInput(s("x")), "invalid_input"),
    ];
    for (error, code) in codes {
        assert_eq!(error.code(), code);
    }
}

// ---- API keys ----

fn create_key(actor: &str, key_id: &str) -> C {
    C::CreateApiKey {
        key_id: s(key_id),
        name: s(" CI "),
        key_hash: s("hash-1"),
        scopes: vec![ApiKeyScope::Write, ApiKeyScope::Read, ApiKeyScope::Write],
        actor: s(actor),
    }
}

fn key_created(key_id: &str) -> Ev {
    Ev::ApiKeyCreated {
        key_id: s(key_id),
        name: s("CI"),
        key_hash: s("hash-1"),
        scopes: vec![ApiKeyScope::Read, ApiKeyScope::Write],
    }
}

#[test]
fn an_admin_creates_an_api_key_with_deduplicated_scopes() {
    OrgTest::with(())
        .given(team())
        .when(create_key(ADMIN, "k1"))
        .then_expect_events(vec![key_created("k1")]);
}

#[test]
fn members_and_viewers_cannot_create_api_keys() {
    for actor in [MEMBER, VIEWER] {
        OrgTest::with(())
            .given(team())
            .when(create_key(actor, "k1"))
            .then_expect_error(E::Forbidden);
    }
}

#[test]
fn an_api_key_needs_a_name_and_a_scope_and_a_fresh_id() {
    OrgTest::with(())
        .given(team())
        .when(C::CreateApiKey {
            key_id: s("k1"),
            name: s("CI"),
            key_hash: s("h"),
            scopes: vec![],
            actor: s(OWNER),
        })
        .then_expect_error(E::InvalidInput(s("scopes must not be empty")));
    OrgTest::with(())
        .given(with(team(), vec![key_created("k1")]))
        .when(create_key(OWNER, "k1"))
        .then_expect_error(E::InvalidInput(s("key_id is already used")));
}

#[test]
fn revoking_an_api_key_flags_it_once() {
    let history = with(team(), vec![key_created("k1")]);
    OrgTest::with(())
        .given(history.clone())
        .when(C::RevokeApiKey {
            key_id: s("k1"),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![Ev::ApiKeyRevoked { key_id: s("k1") }]);
    let revoked = with(history, vec![Ev::ApiKeyRevoked { key_id: s("k1") }]);
    let org: Organization = replay(revoked.clone());
    assert!(org.live_api_key("k1").is_none());
    OrgTest::with(())
        .given(revoked)
        .when(C::RevokeApiKey {
            key_id: s("k1"),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![]);
    OrgTest::with(())
        .given(team())
        .when(C::RevokeApiKey {
            key_id: s("nope"),
            actor: s(ADMIN),
        })
        .then_expect_error(E::ApiKeyNotFound);
}

#[test]
fn an_unknown_revoked_or_read_only_api_key_issues_no_commands() {
    let read_only = Ev::ApiKeyCreated {
        key_id: s("ro"),
        name: s("dashboard"),
        key_hash: s("hash-ro"),
        scopes: vec![ApiKeyScope::Read],
    };
    let revoked = Ev::ApiKeyRevoked { key_id: s("k1") };
    for (history, actor) in [
        (team(), "api_key:k1"),
        (with(team(), vec![key_created("k1"), revoked]), "api_key:k1"),
        (with(team(), vec![read_only]), "api_key:ro"),
    ] {
        OrgTest::with(())
            .given(history)
            .when(create_contact(actor, "c1", "+1555"))
            .then_expect_error(E::Forbidden);
    }
}

#[test]
fn an_api_key_cannot_manage_members_or_keys() {
    let history = with(team(), vec![key_created("k1")]);
    OrgTest::with(())
        .given(history.clone())
        .when(create_key("api_key:k1", "k2"))
        .then_expect_error(E::Forbidden);
    OrgTest::with(())
        .given(history)
        .when(C::RemoveMember {
            user_id: s("viewer"),
            actor: s("api_key:k1"),
        })
        .then_expect_error(E::Forbidden);
}

// ---- Stale purchases (a request that crashed mid-purchase) ----

fn resume(id: &str, at: i64) -> C {
    C::ResumePhoneNumberPurchase {
        purchase_id: s(id),
        at: t(at),
        stale_after_secs: 120,
        actor: s(ADMIN),
    }
}

#[test]
fn a_purchase_younger_than_the_timeout_cannot_be_taken_over() {
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1")]))
        .when(resume("pn1", 119))
        .then_expect_error(E::PurchaseInProgress);
}

#[test]
fn a_stale_purchase_is_taken_over_once() {
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1")]))
        .when(resume("pn1", 120))
        .then_expect_events(vec![Ev::PhoneNumberPurchaseResumed {
            purchase_id: s("pn1"),
            resumed_at: t(120),
        }]);
    // The second retry sees the fresh take-over and is refused.
    OrgTest::with(())
        .given(with(
            team(),
            vec![
                purchase_requested("pn1"),
                Ev::PhoneNumberPurchaseResumed {
                    purchase_id: s("pn1"),
                    resumed_at: t(120),
                },
            ],
        ))
        .when(resume("pn1", 121))
        .then_expect_error(E::PurchaseInProgress);
}

#[test]
fn an_intent_from_before_timestamps_counts_as_stale() {
    let old: Ev = serde_json::from_value(json!({"PhoneNumberPurchaseRequested": {
        "purchase_id": "pn1", "number": null, "area_code": "415", "assistant_id": null}}))
    .expect("old payload decodes");
    OrgTest::with(())
        .given(with(team(), vec![old]))
        .when(resume("pn1", 0))
        .then_expect_events(vec![Ev::PhoneNumberPurchaseResumed {
            purchase_id: s("pn1"),
            resumed_at: t(0),
        }]);
}

#[test]
fn an_abandoned_purchase_may_be_requested_again() {
    let abandoned = Ev::PhoneNumberPurchaseAbandoned {
        purchase_id: s("pn1"),
        reason: s("not bought"),
    };
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1")]))
        .when(C::AbandonPhoneNumberPurchase {
            purchase_id: s("pn1"),
            reason: s("not bought"),
            actor: s(ADMIN),
        })
        .then_expect_events(vec![abandoned.clone()]);
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1"), abandoned]))
        .when(request_purchase("pn1"))
        .then_expect_events(vec![purchase_requested("pn1")]);
    OrgTest::with(())
        .given(team())
        .when(C::AbandonPhoneNumberPurchase {
            purchase_id: s("pn1"),
            reason: s("x"),
            actor: s(ADMIN),
        })
        .then_expect_error(E::InvalidInput(s("no purchase in progress with this id")));
}

#[test]
fn the_chosen_number_is_recorded_on_a_pending_purchase_only() {
    let choose = C::ChoosePurchaseNumber {
        purchase_id: s("pn1"),
        number: s("+14155550100"),
        actor: s(ADMIN),
    };
    OrgTest::with(())
        .given(with(team(), vec![purchase_requested("pn1")]))
        .when(choose.clone())
        .then_expect_events(vec![Ev::PhoneNumberPurchaseNumberChosen {
            purchase_id: s("pn1"),
            number: s("+14155550100"),
        }]);
    OrgTest::with(())
        .given(with(
            team(),
            vec![purchase_requested("pn1"), purchase_failed("pn1")],
        ))
        .when(choose)
        .then_expect_error(E::InvalidInput(s("no purchase in progress with this id")));
}

// ---- Assistant sync claims ----

fn begin_sync(actor: &str, sync_id: &str, at: i64) -> C {
    C::BeginAssistantSync {
        assistant_id: s("a1"),
        sync_id: s(sync_id),
        at: t(at),
        stale_after_secs: 120,
        actor: s(actor),
    }
}

fn sync_started(sync_id: &str, at: i64) -> Ev {
    Ev::AssistantSyncStarted {
        assistant_id: s("a1"),
        sync_id: s(sync_id),
        started_at: t(at),
    }
}

#[test]
fn a_sync_is_claimed_and_a_second_one_is_refused_while_it_runs() {
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(begin_sync(MEMBER, "s1", 0))
        .then_expect_events(vec![sync_started("s1", 0)]);
    OrgTest::with(())
        .given(with(
            team(),
            vec![assistant_created("a1"), sync_started("s1", 0)],
        ))
        .when(begin_sync(MEMBER, "s2", 5))
        .then_expect_error(E::SyncInProgress);
}

#[test]
fn a_finished_failed_or_stale_sync_lets_the_next_one_begin() {
    let synced = Ev::AssistantSynced {
        assistant_id: s("a1"),
        vapi_assistant_id: s("v1"),
    };
    let failed = Ev::AssistantSyncFailed {
        assistant_id: s("a1"),
        sync_id: s("s1"),
        reason: s("vapi refused"),
    };
    for ending in [synced, failed] {
        OrgTest::with(())
            .given(with(
                team(),
                vec![assistant_created("a1"), sync_started("s1", 0), ending],
            ))
            .when(begin_sync(MEMBER, "s2", 5))
            .then_expect_events(vec![sync_started("s2", 5)]);
    }
    OrgTest::with(())
        .given(with(
            team(),
            vec![assistant_created("a1"), sync_started("s1", 0)],
        ))
        .when(begin_sync(MEMBER, "s2", 120))
        .then_expect_events(vec![sync_started("s2", 120)]);
}

#[test]
fn only_the_claiming_sync_releases_its_claim_and_viewers_cannot_sync() {
    let fail = |sync_id: &str| C::FailAssistantSync {
        assistant_id: s("a1"),
        sync_id: s(sync_id),
        reason: s("refused"),
        actor: s(MEMBER),
    };
    let given = with(team(), vec![assistant_created("a1"), sync_started("s2", 0)]);
    OrgTest::with(())
        .given(given.clone())
        .when(fail("s1"))
        .then_expect_events(vec![]);
    OrgTest::with(())
        .given(given)
        .when(fail("s2"))
        .then_expect_events(vec![Ev::AssistantSyncFailed {
            assistant_id: s("a1"),
            sync_id: s("s2"),
            reason: s("refused"),
        }]);
    OrgTest::with(())
        .given(with(team(), vec![assistant_created("a1")]))
        .when(begin_sync(VIEWER, "s1", 0))
        .then_expect_error(E::Forbidden);
    OrgTest::with(())
        .given(team())
        .when(begin_sync(MEMBER, "s1", 0))
        .then_expect_error(E::AssistantNotFound);
}

// ---- OAuth authorization states ----

fn start_authorization(actor: &str) -> C {
    C::StartIntegrationAuthorization {
        provider: s("hubspot"),
        state_hash: s("h1"),
        expires_at: t(600),
        actor: s(actor),
    }
}

fn authorization_started() -> Ev {
    Ev::IntegrationAuthorizationStarted {
        provider: s("hubspot"),
        state_hash: s("h1"),
        expires_at: t(600),
    }
}

fn use_authorization(provider: &str, hash: &str, at: i64) -> C {
    C::UseIntegrationAuthorization {
        provider: s(provider),
        state_hash: s(hash),
        at: t(at),
        actor: s(SYSTEM),
    }
}

#[test]
fn an_admin_starts_an_authorization_and_members_may_not() {
    OrgTest::with(())
        .given(team())
        .when(start_authorization(ADMIN))
        .then_expect_events(vec![authorization_started()]);
    OrgTest::with(())
        .given(team())
        .when(start_authorization(MEMBER))
        .then_expect_error(E::Forbidden);
}

#[test]
fn an_authorization_state_is_used_once_before_it_expires() {
    let used = Ev::IntegrationAuthorizationUsed {
        provider: s("hubspot"),
        state_hash: s("h1"),
    };
    OrgTest::with(())
        .given(with(team(), vec![authorization_started()]))
        .when(use_authorization("hubspot", "h1", 599))
        .then_expect_events(vec![used.clone()]);
    OrgTest::with(())
        .given(with(team(), vec![authorization_started(), used]))
        .when(use_authorization("hubspot", "h1", 10))
        .then_expect_error(E::InvalidAuthorizationState);
    OrgTest::with(())
        .given(with(team(), vec![authorization_started()]))
        .when(use_authorization("hubspot", "h1", 600))
        .then_expect_error(E::AuthorizationStateExpired);
    OrgTest::with(())
        .given(with(team(), vec![authorization_started()]))
        .when(use_authorization("google_calendar", "h1", 10))
        .then_expect_error(E::InvalidAuthorizationState);
    OrgTest::with(())
        .given(with(team(), vec![authorization_started()]))
        .when(use_authorization("hubspot", "other", 10))
        .then_expect_error(E::InvalidAuthorizationState);
}
