//! [`UserEmail`]: one stream per normalized email address; the address's owner.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::UserError;
use crate::common::write_all;

/// Who an email address belongs to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserEmail {
    /// The user id the address is reserved for or claimed by.
    pub user_id: Option<String>,
    /// True once a user registered with the address.
    pub claimed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEmailCommand {
    /// Sign-up: takes the address for `user_id` (or for the id an invitation reserved).
    Claim { user_id: String },
    /// Invitation of an address without an account: reserves a user id for it (no-op when
    /// the address already has one).
    Reserve { user_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEmailEvent {
    EmailReserved { user_id: String },
    EmailClaimed { user_id: String },
}

impl DomainEvent for UserEmailEvent {
    fn event_type(&self) -> String {
        match self {
            UserEmailEvent::EmailReserved { .. } => "EmailReserved",
            UserEmailEvent::EmailClaimed { .. } => "EmailClaimed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl UserEmail {
    pub fn decide(&self, command: UserEmailCommand) -> Result<Vec<UserEmailEvent>, UserError> {
        match command {
            UserEmailCommand::Claim { user_id } => {
                if self.claimed {
                    return Err(UserError::EmailTaken);
                }
                if user_id.is_empty() {
                    return Err(UserError::InvalidInput("user_id must not be empty".into()));
                }
                let user_id = self.user_id.clone().unwrap_or(user_id);
                Ok(vec![UserEmailEvent::EmailClaimed { user_id }])
            }
            UserEmailCommand::Reserve { user_id } => {
                if self.user_id.is_some() {
                    return Ok(Vec::new());
                }
                if user_id.is_empty() {
                    return Err(UserError::InvalidInput("user_id must not be empty".into()));
                }
                Ok(vec![UserEmailEvent::EmailReserved { user_id }])
            }
        }
    }
}

impl Aggregate for UserEmail {
    const TYPE: &'static str = "user_email";
    type Command = UserEmailCommand;
    type Event = UserEmailEvent;
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
        match event {
            UserEmailEvent::EmailReserved { user_id } => self.user_id = Some(user_id),
            UserEmailEvent::EmailClaimed { user_id } => {
                self.user_id = Some(user_id);
                self.claimed = true;
            }
        }
    }
}
