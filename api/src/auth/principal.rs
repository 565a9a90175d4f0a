use entities::{member::MemberRole, organization::OrganizationKind};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// The role a caller acts with. Member roles are ordered VIEWER < MEMBER < ADMIN; DEVICE stands apart:
/// a checkout device may request and submit payments for its own terminal and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum Role {
    Viewer,
    Member,
    Admin,
    /// A checkout device authenticated by its own key (never a member's role).
    Device,
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Device | Role::Viewer => 0,
            Role::Member => 1,
            Role::Admin => 2,
        }
    }

    /// The weaker of two member roles.
    pub fn least(self, other: Role) -> Role {
        if self.rank() <= other.rank() {
            self
        } else {
            other
        }
    }
}

/// Who is acting: a member (person or partner system) or a checkout device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Member(Uuid),
    Device(Uuid),
}

/// An authenticated caller acting for one organization with one role.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    pub organization_id: Uuid,
    pub organization_kind: OrganizationKind,
    pub role: Role,
    /// The `jti` of the token, when it has one (for audit).
    pub token_id: Option<Uuid>,
}

impl Principal {
    pub fn is_retailer(&self) -> bool {
        self.organization_kind == OrganizationKind::Retailer
    }

    pub fn is_financial_provider(&self) -> bool {
        self.organization_kind == OrganizationKind::FinancialProvider
    }

    pub fn member_id(&self) -> Option<Uuid> {
        match self.actor {
            Actor::Member(id) => Some(id),
            Actor::Device(_) => None,
        }
    }

    pub fn device_id(&self) -> Option<Uuid> {
        match self.actor {
            Actor::Device(id) => Some(id),
            Actor::Member(_) => None,
        }
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

impl TryFrom<Role> for MemberRole {
    type Error = ApiError;

    fn try_from(role: Role) -> ApiResult<Self> {
        match role {
            Role::Admin => Ok(MemberRole::Admin),
            Role::Member => Ok(MemberRole::Member),
            Role::Viewer => Ok(MemberRole::Viewer),
            Role::Device => Err(ApiError::validation(
                "role",
                "DEVICE belongs to devices, not members",
            )),
        }
    }
}
