//! The one place that decides what a caller may do. Every service asks here before acting;
//! later domains add their actions (and visibility filters) to this module, not to resolvers.

use crate::{
    auth::{Principal, Role},
    error::{ApiError, ApiResult},
};

/// Something a caller wants to do, independent of the record it is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the directory of organization names and kinds.
    ReadDirectory,
    /// Read what the caller's organization may see (its members, its records, records shared with it).
    ReadOwnOrganization,
    /// Create or change the organization's records.
    WriteRecords,
    /// Add or remove members of one's own organization.
    ManageMembers,
    /// Mint tokens for members of one's own organization.
    IssueTokens,
    /// Create a new partner organization (the platform operator's right).
    CreateOrganization,
}

/// Allows `action` for `principal`, or says FORBIDDEN with the rule that stopped it.
pub fn authorize(principal: &Principal, action: Action) -> ApiResult<()> {
    let allowed = match action {
        Action::ReadDirectory | Action::ReadOwnOrganization => true,
        Action::WriteRecords => matches!(principal.role, Role::Admin | Role::Member),
        Action::ManageMembers | Action::IssueTokens => principal.role == Role::Admin,
        Action::CreateOrganization => principal.role == Role::Admin && principal.is_retailer(),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(rule(action)))
    }
}

fn rule(action: Action) -> &'static str {
    match action {
        Action::ReadDirectory | Action::ReadOwnOrganization => "reading requires a member role",
        Action::WriteRecords => "changing records requires the MEMBER or ADMIN role",
        Action::ManageMembers => "managing members requires the ADMIN role",
        Action::IssueTokens => "issuing tokens requires the ADMIN role",
        Action::CreateOrganization => "only the retailer's ADMIN creates organizations",
    }
}

#[cfg(test)]
mod tests {
    use entities::organization::OrganizationKind;
    use uuid::Uuid;

    use super::*;

    fn principal(kind: OrganizationKind, role: Role) -> Principal {
        Principal {
            member_id: Uuid::nil(),
            organization_id: Uuid::nil(),
            organization_kind: kind,
            role,
            token_id: Uuid::nil(),
        }
    }

    #[test]
    fn role_matrix() {
        use Action::*;
        use OrganizationKind::{Retailer, Supplier};
        let cases = [
            (Retailer, Role::Viewer, WriteRecords, false),
            (Retailer, Role::Viewer, ReadOwnOrganization, true),
            (Retailer, Role::Member, WriteRecords, true),
            (Retailer, Role::Member, ManageMembers, false),
            (Retailer, Role::Member, IssueTokens, false),
            (Retailer, Role::Member, CreateOrganization, false),
            (Retailer, Role::Admin, CreateOrganization, true),
            (Supplier, Role::Admin, CreateOrganization, false),
            (Supplier, Role::Admin, ManageMembers, true),
            (Supplier, Role::Admin, IssueTokens, true),
            (Supplier, Role::Viewer, ReadDirectory, true),
        ];
        for (kind, role, action, expected) in cases {
            let outcome = authorize(&principal(kind, role), action);
            assert_eq!(outcome.is_ok(), expected, "{kind:?} {role:?} {action:?}");
            if let Err(err) = outcome {
                assert_eq!(err.code(), "FORBIDDEN");
            }
        }
    }
}
