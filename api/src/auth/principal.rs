use entities::{member::MemberRole, organization::OrganizationKind};
use uuid::Uuid;

/// The role a caller acts with. Ordered from least to most powerful among member roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum Role {
    Viewer,
    Member,
    Admin,
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Member => 1,
            Role::Admin => 2,
        }
    }

    /// The weaker of two roles.
    pub fn least(self, other: Role) -> Role {
        if self.rank() <= other.rank() {
            self
        } else {
            other
        }
    }
}

/// An authenticated caller: a member of one organization, acting with one role.
#[derive(Debug, Clone)]
pub struct Principal {
    pub member_id: Uuid,
    pub organization_id: Uuid,
    pub organization_kind: OrganizationKind,
    pub role: Role,
    /// The `jti` of the token that authenticated this request, for audit.
    pub token_id: Uuid,
}

impl Principal {
    pub fn is_retailer(&self) -> bool {
        self.organization_kind == OrganizationKind::Retailer
    }
}

impl From<MemberRole> for Role {
    fn from(role: MemberRole) -> Self {
        match role {
            MemberRole::Admin => Role::Admin,
            MemberRole::Member => Role::Member,
            MemberRole::Viewer => Role::Viewer,
        }
    }
}

impl From<Role> for MemberRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => MemberRole::Admin,
            Role::Member => MemberRole::Member,
            Role::Viewer => MemberRole::Viewer,
        }
    }
}
