//! Members: invitations, acceptance, roles, removal (never the last owner).

use super::super::MemberStatus;
use super::super::Organization;
use super::invalid;
use super::require;
use super::{Ev, C, E};
use crate::common::emit;

impl Organization {
    pub(super) fn decide_members(&mut self, command: C, out: &mut Vec<Ev>) -> Result<(), E> {
        match command {
            C::InviteMember {
                user_id,
                email,
                role,
                ..
            } => {
                require(!user_id.is_empty(), invalid("user_id must not be empty"))?;
                require(self.active_member(&user_id).is_none(), E::AlreadyMember)?;
                emit(
                    self,
                    out,
                    Ev::MemberInvited {
                        user_id,
                        email,
                        role,
                    },
                );
            }
            C::AcceptInvite { user_id, .. } => {
                let member = self.members.get(&user_id).ok_or(E::MemberNotFound)?;
                if member.status == MemberStatus::Invited {
                    let joined = Ev::MemberJoined {
                        email: member.email.clone(),
                        role: member.role,
                        user_id,
                    };
                    emit(self, out, joined);
                }
            }
            C::ChangeMemberRole { user_id, role, .. } => {
                let member = self.members.get(&user_id).ok_or(E::MemberNotFound)?;
                if member.role != role {
                    require(!self.is_last_active_owner(&user_id), E::LastOwner)?;
                    emit(self, out, Ev::MemberRoleChanged { user_id, role });
                }
            }
            C::RemoveMember { user_id, .. } => {
                require(self.members.contains_key(&user_id), E::MemberNotFound)?;
                require(!self.is_last_active_owner(&user_id), E::LastOwner)?;
                emit(self, out, Ev::MemberRemoved { user_id });
            }
            _ => return Err(super::misrouted()),
        }
        Ok(())
    }
}
