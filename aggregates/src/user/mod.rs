//! The User aggregate: one per account (id = a UUID), plus [`UserEmail`], one per normalized
//! email address, which makes an address belong to at most one user.
//!
//! Email uniqueness cannot be decided by `User` alone (an aggregate sees only its own
//! stream), so sign-up first claims the address on the `user_email` stream: two concurrent
//! sign-ups with one address append to the same stream, optimistic concurrency lets one
//! win, and the loser retries on fresh state and gets `EmailTaken`. Inviting an address
//! that has no account *reserves* it with a user id; the later sign-up adopts that id, so
//! the invitation already names the new user.
//!
//! Secrets never reach the aggregate: it receives argon2id password hashes and SHA-256
//! hashes of random tokens, and every time arrives in a command.

mod command;
mod email;
mod error;
mod event;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use command::UserCommand;
pub use email::{UserEmail, UserEmailCommand, UserEmailEvent};
pub use error::UserError;
pub use event::UserEvent;

use crate::common::{emit, write_all, Timestamp};

/// The normal form of an email address: trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// An open session (token stored as its SHA-256 hash only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub token_hash: String,
    pub expires_at: Timestamp,
}

/// An outstanding password reset token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingReset {
    pub token_hash: String,
    pub expires_at: Timestamp,
}

/// User state: what sign-in, sessions and resets need.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    pub id: Option<Uuid>,
    pub registered: bool,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    /// session id → session. Signed-out sessions are dropped; a password reset drops all.
    pub sessions: BTreeMap<String, Session>,
    /// reset id → pending reset. Used (and, on a reset, all) tokens are dropped.
    pub resets: BTreeMap<String, PendingReset>,
    pub failed_sign_ins: u64,
    /// True once the address is verified (and for accounts from before verification).
    #[serde(default = "verified_by_default")]
    pub email_verified: bool,
    /// verification id → outstanding email verification token.
    #[serde(default)]
    pub verifications: BTreeMap<String, PendingReset>,
}

/// Snapshots from before verification existed hold accounts that count as verified.
fn verified_by_default() -> bool {
    true
}

fn require(condition: bool, error: UserError) -> Result<(), UserError> {
    if condition {
        Ok(())
    } else {
        Err(error)
    }
}

fn invalid(message: &str) -> UserError {
    UserError::InvalidInput(message.to_string())
}

impl User {
    /// True when session `session_id` exists, carries `token_hash` and has not expired.
    pub fn session_is_live(&self, session_id: &str, token_hash: &str, now: Timestamp) -> bool {
        self.sessions
            .get(session_id)
            .is_some_and(|s| s.token_hash == token_hash && s.expires_at > now)
    }

    /// Pure decision: the events `command` would produce against this state.
    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        use UserCommand as C;
        use UserEvent as Ev;
        if let C::Register { .. } = command {
            require(!self.registered, UserError::AlreadyRegistered)?;
        } else {
            require(self.registered, UserError::NotFound)?;
        }
        let mut scratch = self.clone();
        let mut out = Vec::new();
        match command {
            C::Register {
                user_id,
                email,
                password_hash,
                name,
            } => {
                let email = normalize_email(&email);
                require(
                    email.contains('@') && email.len() <= 320,
                    invalid("email must be an email address"),
                )?;
                let name = name.trim().to_string();
                require(!name.is_empty(), invalid("name must not be empty"))?;
                require(
                    name.chars().count() <= 200,
                    invalid("name may be at most 200 characters"),
                )?;
                require(
                    !password_hash.is_empty(),
                    invalid("password_hash must not be empty"),
                )?;
                let registered = Ev::UserRegistered {
                    user_id,
                    email,
                    password_hash,
                    name,
                    verification_required: true,
                };
                emit(&mut scratch, &mut out, registered);
            }
            C::SignIn {
                session_id,
                token_hash,
                expires_at,
            } => {
                require(
                    !session_id.is_empty(),
                    invalid("session_id must not be empty"),
                )?;
                require(
                    !token_hash.is_empty(),
                    invalid("token_hash must not be empty"),
                )?;
                require(
                    !self.sessions.contains_key(&session_id),
                    invalid("session_id is already used"),
                )?;
                let signed_in = Ev::SignedIn {
                    session_id,
                    token_hash,
                    expires_at,
                };
                emit(&mut scratch, &mut out, signed_in);
            }
            C::RecordSignInFailure { at } => emit(&mut scratch, &mut out, Ev::SignInFailed { at }),
            C::SignOut { session_id } => {
                if self.sessions.contains_key(&session_id) {
                    emit(&mut scratch, &mut out, Ev::SignedOut { session_id });
                }
            }
            C::RequestPasswordReset {
                reset_id,
                token_hash,
                expires_at,
            } => {
                require(
                    !token_hash.is_empty(),
                    invalid("token_hash must not be empty"),
                )?;
                require(
                    !self.resets.contains_key(&reset_id),
                    invalid("reset_id is already used"),
                )?;
                let requested = Ev::PasswordResetRequested {
                    reset_id,
                    token_hash,
                    expires_at,
                };
                emit(&mut scratch, &mut out, requested);
            }
            C::RequestEmailVerification {
                verification_id,
                token_hash,
                expires_at,
            } => {
                require(!self.email_verified, UserError::AlreadyVerified)?;
                require(
                    !token_hash.is_empty(),
                    invalid("token_hash must not be empty"),
                )?;
                require(
                    !self.verifications.contains_key(&verification_id),
                    invalid("verification_id is already used"),
                )?;
                let requested = Ev::EmailVerificationRequested {
                    verification_id,
                    token_hash,
                    expires_at,
                };
                emit(&mut scratch, &mut out, requested);
            }
            C::VerifyEmail { token_hash, at } => {
                let verification_id = self
                    .verifications
                    .iter()
                    .find(|(_, v)| v.token_hash == token_hash && v.expires_at > at)
                    .map(|(id, _)| id.clone())
                    .ok_or(UserError::InvalidVerificationToken)?;
                emit(
                    &mut scratch,
                    &mut out,
                    Ev::EmailVerified { verification_id },
                );
            }
            C::ResetPassword {
                token_hash,
                password_hash,
                at,
            } => {
                let reset_id = self
                    .resets
                    .iter()
                    .find(|(_, r)| r.token_hash == token_hash && r.expires_at > at)
                    .map(|(id, _)| id.clone())
                    .ok_or(UserError::InvalidResetToken)?;
                require(
                    !password_hash.is_empty(),
                    invalid("password_hash must not be empty"),
                )?;
                let reset = Ev::PasswordReset {
                    reset_id,
                    password_hash,
                };
                emit(&mut scratch, &mut out, reset);
            }
        }
        Ok(out)
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use UserEvent::*;
        match event {
            UserRegistered {
                user_id,
                email,
                password_hash,
                name,
                verification_required,
            } => {
                self.id = Some(user_id);
                self.registered = true;
                self.email_verified = !verification_required;
                self.email = email;
                self.password_hash = password_hash;
                self.name = name;
            }
            EmailVerificationRequested {
                verification_id,
                token_hash,
                expires_at,
            } => {
                let pending = PendingReset {
                    token_hash,
                    expires_at,
                };
                self.verifications.insert(verification_id, pending);
            }
            EmailVerified { .. } => {
                self.email_verified = true;
                self.verifications.clear();
            }
            SignedIn {
                session_id,
                token_hash,
                expires_at,
            } => {
                // Sessions that expired before this one began can never be used again.
                self.sessions
                    .retain(|_, s| s.expires_at > expires_at - LONGEST_SESSION);
                let session = Session {
                    token_hash,
                    expires_at,
                };
                self.sessions.insert(session_id, session);
            }
            SignInFailed { .. } => self.failed_sign_ins += 1,
            SignedOut { session_id } => {
                self.sessions.remove(&session_id);
            }
            PasswordResetRequested {
                reset_id,
                token_hash,
                expires_at,
            } => {
                let reset = PendingReset {
                    token_hash,
                    expires_at,
                };
                self.resets.insert(reset_id, reset);
            }
            PasswordReset { password_hash, .. } => {
                self.password_hash = password_hash;
                self.sessions.clear();
                self.resets.clear();
            }
        }
    }
}

/// No session lasts longer than this; older ones are pruned from the state when a newer
/// session opens (keeps the snapshot small for users who sign in often).
pub const LONGEST_SESSION: chrono::TimeDelta = chrono::TimeDelta::days(366);
