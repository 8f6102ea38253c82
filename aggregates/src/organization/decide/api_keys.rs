//! API keys: creation with scopes, revocation.

use super::super::Organization;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_api_keys(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
            C::CreateApiKey {
                key_id,
                name,
                key_hash,
                mut scopes,
                ..
            } => {
                let name = name.trim().to_string();
                require(!name.is_empty(), invalid("name must not be empty"))?;
                require(
                    name.chars().count() <= 100,
                    invalid("name may be at most 100 characters"),
                )?;
                require(!key_hash.is_empty(), invalid("key_hash must not be empty"))?;
                scopes.sort();
                scopes.dedup();
                require(!scopes.is_empty(), invalid("scopes must not be empty"))?;
                require(
                    !self.api_keys.contains_key(&key_id),
                    invalid("key_id is already used"),
                )?;
                emit(
                    self,
                    out,
                    Ev::ApiKeyCreated {
                        key_id,
                        name,
                        key_hash,
                        scopes,
                    },
                );
            }
            C::RevokeApiKey { key_id, .. } => {
                let key = self.api_keys.get(&key_id).ok_or(E::ApiKeyNotFound)?;
                if !key.revoked {
                    emit(self, out, Ev::ApiKeyRevoked { key_id });
                }
            }
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
