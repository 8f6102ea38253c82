//! Applying events: Members.

use super::super::*;

impl Organization {
    pub(super) fn apply_members(&mut self, event: OrganizationEvent) {
        use OrganizationEvent::*;
        match event {
            MemberInvited {
                user_id,
                email,
                role,
            } => {
                let member = Member {
                    email,
                    role,
                    status: MemberStatus::Invited,
                };
                self.members.insert(user_id, member);
            }
            MemberJoined {
                user_id,
                email,
                role,
            } => {
                let member = Member {
                    email,
                    role,
                    status: MemberStatus::Active,
                };
                self.members.insert(user_id, member);
            }
            MemberRoleChanged { user_id, role } => {
                if let Some(member) = self.members.get_mut(&user_id) {
                    member.role = role;
                }
            }
            MemberRemoved { user_id } => {
                self.members.remove(&user_id);
            }
            _ => {}
        }
    }
}
