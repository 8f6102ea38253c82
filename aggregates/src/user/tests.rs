use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::replay;

type UserTest = TestFramework<User>;
type EmailTest = TestFramework<UserEmail>;
type C = UserCommand;
type Ev = UserEvent;

const ID: Uuid = Uuid::from_u128(42);

fn t(hour: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2025, 1, 1, hour, 0, 0)
        .single()
        .unwrap_or_default()
}

fn registered() -> Vec<Ev> {
    vec![Ev::UserRegistered {
        user_id: ID,
        email: "ann@acme.test".into(),
        password_hash: "argon-hash-1".into(),
        name: "Ann".into(),
        verification_required: true,
    }]
}

fn signed_in(session: &str, expires: u32) -> Ev {
    Ev::SignedIn {
        session_id: session.into(),
        token_hash: format!("tok-{session}"),
        expires_at: t(expires),
    }
}

fn reset_requested(reset: &str, expires: u32) -> Ev {
    Ev::PasswordResetRequested {
        reset_id: reset.into(),
        token_hash: format!("reset-{reset}"),
        expires_at: t(expires),
    }
}

fn with(mut events: Vec<Ev>, more: Vec<Ev>) -> Vec<Ev> {
    events.extend(more);
    events
}

#[test]
fn registering_lowercases_the_email_and_keeps_only_the_hash() {
    UserTest::with(())
        .given_no_previous_events()
        .when(C::Register {
            user_id: ID,
            email: "  Ann@ACME.test ".into(),
            password_hash: "argon-hash-1".into(),
            name: " Ann ".into(),
        })
        .then_expect_events(registered());
}

#[test]
fn a_user_cannot_register_twice() {
    UserTest::with(())
        .given(registered())
        .when(C::Register {
            user_id: ID,
            email: "ann@acme.test".into(),
            password_hash: "h".into(),
            name: "Ann".into(),
        })
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn registering_needs_an_email_address_and_a_name() {
    UserTest::with(())
        .given_no_previous_events()
        .when(C::Register {
            user_id: ID,
            email: "not-an-address".into(),
            password_hash: "h".into(),
            name: "Ann".into(),
        })
        .then_expect_error(UserError::InvalidInput(
            "email must be an email address".into(),
        ));
    UserTest::with(())
        .given_no_previous_events()
        .when(C::Register {
            user_id: ID,
            email: "a@b.c".into(),
            password_hash: "h".into(),
            name: "  ".into(),
        })
        .then_expect_error(UserError::InvalidInput("name must not be empty".into()));
}

#[test]
fn commands_on_an_unknown_user_are_refused() {
    UserTest::with(())
        .given_no_previous_events()
        .when(C::SignOut {
            session_id: "s1".into(),
        })
        .then_expect_error(UserError::NotFound);
}

#[test]
fn signing_in_opens_a_session_that_is_live_until_it_expires() {
    UserTest::with(())
        .given(registered())
        .when(C::SignIn {
            session_id: "s1".into(),
            token_hash: "tok-s1".into(),
            expires_at: t(10),
        })
        .then_expect_events(vec![signed_in("s1", 10)]);
    let user: User = replay(with(registered(), vec![signed_in("s1", 10)]));
    assert!(user.session_is_live("s1", "tok-s1", t(9)));
    assert!(!user.session_is_live("s1", "tok-s1", t(10)), "expired");
    assert!(!user.session_is_live("s1", "other", t(9)), "wrong token");
    assert!(
        !user.session_is_live("s2", "tok-s1", t(9)),
        "unknown session"
    );
}

#[test]
fn signing_out_revokes_the_session_and_is_idempotent() {
    let history = with(registered(), vec![signed_in("s1", 10), signed_in("s2", 10)]);
    UserTest::with(())
        .given(history.clone())
        .when(C::SignOut {
            session_id: "s1".into(),
        })
        .then_expect_events(vec![Ev::SignedOut {
            session_id: "s1".into(),
        }]);
    let user: User = replay(with(
        history,
        vec![Ev::SignedOut {
            session_id: "s1".into(),
        }],
    ));
    assert!(!user.session_is_live("s1", "tok-s1", t(1)));
    assert!(
        user.session_is_live("s2", "tok-s2", t(1)),
        "other sessions stay"
    );
    UserTest::with(())
        .given(with(
            registered(),
            vec![Ev::SignedOut {
                session_id: "s1".into(),
            }],
        ))
        .when(C::SignOut {
            session_id: "s1".into(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_sign_in_is_recorded() {
    UserTest::with(())
        .given(registered())
        .when(C::RecordSignInFailure { at: t(1) })
        .then_expect_events(vec![Ev::SignInFailed { at: t(1) }]);
}

#[test]
fn a_password_reset_with_a_valid_token_revokes_every_session_and_token() {
    let history = with(
        registered(),
        vec![
            signed_in("s1", 20),
            reset_requested("r1", 5),
            reset_requested("r2", 5),
        ],
    );
    let reset = Ev::PasswordReset {
        reset_id: "r1".into(),
        password_hash: "argon-hash-2".into(),
    };
    UserTest::with(())
        .given(history.clone())
        .when(C::ResetPassword {
            token_hash: "reset-r1".into(),
            password_hash: "argon-hash-2".into(),
            at: t(4),
        })
        .then_expect_events(vec![reset.clone()]);
    let user: User = replay(with(history, vec![reset]));
    assert_eq!(user.password_hash, "argon-hash-2");
    assert!(user.sessions.is_empty(), "sessions revoked");
    assert!(user.resets.is_empty(), "every reset token is spent");
}

#[test]
fn a_reset_token_is_single_use() {
    UserTest::with(())
        .given(with(
            registered(),
            vec![
                reset_requested("r1", 5),
                Ev::PasswordReset {
                    reset_id: "r1".into(),
                    password_hash: "argon-hash-2".into(),
                },
            ],
        ))
        .when(C::ResetPassword {
            token_hash: "reset-r1".into(),
            password_hash: "argon-hash-3".into(),
            at: t(4),
        })
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn an_expired_or_unknown_reset_token_is_refused() {
    let history = with(registered(), vec![reset_requested("r1", 5)]);
    UserTest::with(())
        .given(history.clone())
        .when(C::ResetPassword {
            token_hash: "reset-r1".into(),
            password_hash: "h".into(),
            at: t(5),
        })
        .then_expect_error(UserError::InvalidResetToken);
    UserTest::with(())
        .given(history)
        .when(C::ResetPassword {
            token_hash: "forged".into(),
            password_hash: "h".into(),
            at: t(1),
        })
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn old_expired_sessions_are_pruned_when_a_new_one_opens() {
    let old = Ev::SignedIn {
        session_id: "old".into(),
        token_hash: "x".into(),
        expires_at: t(1) - LONGEST_SESSION - chrono::TimeDelta::days(1),
    };
    let user: User = replay(with(registered(), vec![old, signed_in("new", 2)]));
    assert_eq!(user.sessions.keys().collect::<Vec<_>>(), ["new"]);
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(UserError::EmailTaken.code(), "email_taken");
    assert_eq!(UserError::InvalidResetToken.code(), "invalid_reset_token");
    assert_eq!(UserError::NotFound.code(), "user_not_found");
    assert_eq!(
        UserError::InvalidVerificationToken.code(),
        "invalid_verification_token"
    );
}

// ---- Email verification ----

fn verification_requested(id: &str, hash: &str, expires: u32) -> Ev {
    Ev::EmailVerificationRequested {
        verification_id: id.into(),
        token_hash: hash.into(),
        expires_at: t(expires),
    }
}

fn verify(hash: &str, at: u32) -> C {
    C::VerifyEmail {
        token_hash: hash.into(),
        at: t(at),
    }
}

#[test]
fn a_new_account_is_unverified_until_its_token_comes_back_once() {
    let mut user = User::default();
    for event in registered() {
        user.apply(event);
    }
    assert!(!user.email_verified, "sign-up does not verify");
    UserTest::with(())
        .given(registered())
        .when(C::RequestEmailVerification {
            verification_id: "v1".into(),
            token_hash: "h1".into(),
            expires_at: t(20),
        })
        .then_expect_events(vec![verification_requested("v1", "h1", 20)]);
    let given = with(registered(), vec![verification_requested("v1", "h1", 20)]);
    UserTest::with(())
        .given(given.clone())
        .when(verify("h1", 19))
        .then_expect_events(vec![Ev::EmailVerified {
            verification_id: "v1".into(),
        }]);
    let used = with(
        given,
        vec![Ev::EmailVerified {
            verification_id: "v1".into(),
        }],
    );
    UserTest::with(())
        .given(used.clone())
        .when(verify("h1", 19))
        .then_expect_error(UserError::InvalidVerificationToken);
    UserTest::with(())
        .given(used)
        .when(C::RequestEmailVerification {
            verification_id: "v2".into(),
            token_hash: "h2".into(),
            expires_at: t(20),
        })
        .then_expect_error(UserError::AlreadyVerified);
}

#[test]
fn an_expired_or_unknown_verification_token_is_refused() {
    let given = with(registered(), vec![verification_requested("v1", "h1", 20)]);
    UserTest::with(())
        .given(given.clone())
        .when(verify("h1", 20))
        .then_expect_error(UserError::InvalidVerificationToken);
    UserTest::with(())
        .given(given)
        .when(verify("other", 1))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn accounts_registered_before_verification_existed_count_as_verified() {
    let old: Ev = serde_json::from_value(serde_json::json!({"UserRegistered": {
        "user_id": ID, "email": "ann@acme.test", "password_hash": "h", "name": "Ann"}}))
    .expect("old payload decodes");
    let mut user = User::default();
    user.apply(old);
    assert!(user.email_verified);
    let snapshot = serde_json::json!({"id": ID, "registered": true, "email": "a@b.c",
        "name": "A", "password_hash": "h", "sessions": {}, "resets": {}, "failed_sign_ins": 0});
    let state: User = serde_json::from_value(snapshot).expect("old snapshot decodes");
    assert!(state.email_verified);
}

// ---- UserEmail ----

#[test]
fn the_first_claim_of_an_address_wins_and_a_second_is_refused() {
    EmailTest::with(())
        .given_no_previous_events()
        .when(UserEmailCommand::Claim {
            user_id: "u1".into(),
        })
        .then_expect_events(vec![UserEmailEvent::EmailClaimed {
            user_id: "u1".into(),
        }]);
    EmailTest::with(())
        .given(vec![UserEmailEvent::EmailClaimed {
            user_id: "u1".into(),
        }])
        .when(UserEmailCommand::Claim {
            user_id: "u2".into(),
        })
        .then_expect_error(UserError::EmailTaken);
}

#[test]
fn a_sign_up_adopts_the_user_id_an_invitation_reserved() {
    EmailTest::with(())
        .given(vec![UserEmailEvent::EmailReserved {
            user_id: "invited".into(),
        }])
        .when(UserEmailCommand::Claim {
            user_id: "fresh".into(),
        })
        .then_expect_events(vec![UserEmailEvent::EmailClaimed {
            user_id: "invited".into(),
        }]);
}

#[test]
fn reserving_an_address_that_has_an_owner_changes_nothing() {
    EmailTest::with(())
        .given(vec![UserEmailEvent::EmailClaimed {
            user_id: "u1".into(),
        }])
        .when(UserEmailCommand::Reserve {
            user_id: "u2".into(),
        })
        .then_expect_events(vec![]);
    EmailTest::with(())
        .given_no_previous_events()
        .when(UserEmailCommand::Reserve {
            user_id: "u2".into(),
        })
        .then_expect_events(vec![UserEmailEvent::EmailReserved {
            user_id: "u2".into(),
        }]);
}
