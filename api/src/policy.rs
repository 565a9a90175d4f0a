//! The one place that decides what a caller may do and see. Every service asks here before acting, and
//! every query of shared records filters with [`visible`], so visibility is applied inside the database
//! query. Later domains add their actions and filters to this module, not to resolvers.

use entities::{
    clearing_batch, clearing_entry, delivery, invoice, order, order_line, order_party, payment,
    payment_evidence, payment_request, sales_daily, sales_pending,
    share::{self, ResourceType, ShareAccess},
    work_plan,
};
use sea_orm::{
    ActiveEnum, EntityTrait,
    sea_query::{Condition, Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::{
    auth::{Actor, Principal, Role},
    error::{ApiError, ApiResult},
};

/// Declares [`Action`] and [`Action::ALL`] from one list, so no action can be left out of `ALL` (the
/// end-to-end role test walks it).
macro_rules! actions {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Something a caller wants to do, independent of the record it is done to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($(#[$doc])* $name,)*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$name,)*];
        }
    };
}

actions! {
    /// Read who one is (`me`).
    ReadSelf,
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
    /// Register, change or revoke the organization's checkout devices.
    ManageDevices,
    /// Grant and revoke shares of the organization's records.
    ManageShares,
    /// Register, retire and revoke the organization's issuer keys (financial providers).
    ManageKeys,
    /// Register, block and unblock the cards the organization issues (financial providers).
    IssueCards,
    /// Open or cancel a payment request (checkout staff, or the terminal's own device).
    RequestPayment,
    /// Submit a one-time number for a payment request (the terminal's device only).
    SubmitPayment,
    /// Read the whole one-time-number token kept sealed in a payment's evidence (the issuer's ADMIN).
    ReadCardData,
    /// Read how field encryption stands: keys and re-encryption progress (the platform operator).
    ReadEncryptionStatus,
    /// Export checkpoints of the organization's audit chain and verify it.
    ReadAudit,
    /// Capture, void or refund the organization's card payments (its checkout staff).
    SettlePayments,
    /// Close the organization's open clearing batches before their schedule (the merchant's ADMIN).
    CloseClearingBatch,
    /// Confirm a closed clearing batch with a signature (the provider's ADMIN).
    ConfirmClearingBatch,
}

/// Allows `action` for `principal`, or says FORBIDDEN with the rule that stopped it.
pub fn authorize(principal: &Principal, action: Action) -> ApiResult<()> {
    // A device requests and submits payments for its own terminal, and nothing else.
    if principal.role == Role::Device {
        return if matches!(
            action,
            Action::ReadSelf | Action::RequestPayment | Action::SubmitPayment
        ) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("a device may only take payments"))
        };
    }
    let allowed = match action {
        Action::ReadSelf | Action::ReadDirectory | Action::ReadOwnOrganization => true,
        Action::WriteRecords | Action::RequestPayment | Action::SettlePayments => {
            matches!(principal.role, Role::Admin | Role::Member)
        }
        Action::SubmitPayment => false,
        Action::ManageMembers
        | Action::IssueTokens
        | Action::ManageDevices
        | Action::ManageShares
        | Action::ReadAudit
        | Action::CloseClearingBatch => principal.role == Role::Admin,
        // Only financial providers hold issuer keys and issue cards.
        Action::ManageKeys => principal.role == Role::Admin && principal.is_financial_provider(),
        Action::IssueCards => {
            matches!(principal.role, Role::Admin | Role::Member)
                && principal.is_financial_provider()
        }
        Action::ReadCardData | Action::ConfirmClearingBatch => {
            principal.role == Role::Admin && principal.is_financial_provider()
        }
        Action::CreateOrganization | Action::ReadEncryptionStatus => {
            principal.role == Role::Admin && principal.is_retailer()
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(rule(action)))
    }
}

fn rule(action: Action) -> &'static str {
    match action {
        Action::ReadSelf | Action::ReadDirectory | Action::ReadOwnOrganization => {
            "reading requires a member role"
        }
        Action::WriteRecords => "changing records requires the MEMBER or ADMIN role",
        Action::ManageMembers => "managing members requires the ADMIN role",
        Action::IssueTokens => "issuing tokens requires the ADMIN role",
        Action::CreateOrganization => "only the retailer's ADMIN creates organizations",
        Action::ManageDevices => "managing devices requires the ADMIN role",
        Action::ManageShares => "managing shares requires the ADMIN role",
        Action::ManageKeys => {
            "managing issuer keys requires the ADMIN role of a financial provider"
        }
        Action::IssueCards => {
            "issuing cards requires the MEMBER or ADMIN role of a financial provider"
        }
        Action::RequestPayment => "requesting payments requires the MEMBER or ADMIN role",
        Action::SubmitPayment => "only the terminal's device submits card payments",
        Action::ReadCardData => "reading card data requires the ADMIN role of the card's issuer",
        Action::ReadEncryptionStatus => "only the retailer's ADMIN reads the encryption status",
        Action::ReadAudit => "the audit trail is for the ADMIN role",
        Action::SettlePayments => {
            "capturing, voiding and refunding require the MEMBER or ADMIN role"
        }
        Action::CloseClearingBatch => "closing a clearing batch requires the ADMIN role",
        Action::ConfirmClearingBatch => {
            "confirming a clearing batch requires the ADMIN role of a financial provider"
        }
    }
}

/// A master-data entity whose rows have an owner and can be shared.
pub trait SharedEntity: EntityTrait {
    const RESOURCE: ResourceType;
    fn id_column() -> Self::Column;
    fn owner_column() -> Self::Column;
    fn id_of(model: &Self::Model) -> Uuid;
}

/// What the caller wants to do with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    /// Writing sensitive fields: a WRITE share that includes them (one cannot overwrite what one may
    /// not read).
    WriteSensitive,
    /// A change no share can grant: only the owner makes it.
    Own,
}

/// SQL condition selecting the rows of `E` the caller may read (or write): its organization's own rows
/// and rows shared with it (the whole type or the one record; WRITE shares for writing). `Need::Own`
/// selects the caller's own rows only.
pub fn visible<E: SharedEntity>(principal: &Principal, need: Need) -> Condition {
    let owned = Condition::any()
        .add(Expr::col((E::default(), E::owner_column())).eq(principal.organization_id));
    match need {
        Need::Own => owned,
        Need::Read => owned.add(Expr::exists(shared::<E>(principal, None, false))),
        Need::Write => owned.add(Expr::exists(shared::<E>(
            principal,
            Some(ShareAccess::Write),
            false,
        ))),
        Need::WriteSensitive => owned.add(Expr::exists(shared::<E>(
            principal,
            Some(ShareAccess::Write),
            true,
        ))),
    }
}

/// SQL condition selecting the rows of `E` whose sensitive fields the caller may read: its own, and
/// those shared with it with sensitive fields included. A filter on a sensitive field (customers by
/// email) is confined to these rows, so a count cannot confirm a value the caller may not read.
pub fn sensitive_visible<E: SharedEntity>(principal: &Principal) -> Condition {
    Condition::any()
        .add(Expr::col((E::default(), E::owner_column())).eq(principal.organization_id))
        .add(Expr::exists(shared::<E>(principal, None, true)))
}

/// The changes one can make to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChange {
    Rename,
    /// Moving the terminal to another location.
    Move,
    Revoke,
}

/// What a device change needs. A WRITE share lets the grantee rename the device (a service provider
/// labelling the terminals it maintains); moving a terminal and revoking it decide where and whether
/// the owner takes payments, so no share grants them.
pub fn device_change_need(change: DeviceChange) -> Need {
    match change {
        DeviceChange::Rename => Need::Write,
        DeviceChange::Move | DeviceChange::Revoke => Need::Own,
    }
}

/// The shares through which the caller reaches a row of `E`: for its type or for the one record,
/// optionally only with `access`, or only those that include sensitive fields.
fn shared<E: SharedEntity>(
    principal: &Principal,
    access: Option<ShareAccess>,
    include_sensitive: bool,
) -> sea_orm::sea_query::SelectStatement {
    let table = E::default();
    let mut shares = Query::select();
    shares
        .expr(Expr::val(1))
        .from(share::Entity)
        .and_where(
            Expr::col((share::Entity, share::Column::GranteeOrganizationId))
                .eq(principal.organization_id),
        )
        .and_where(
            Expr::col((share::Entity, share::Column::ResourceType)).eq(E::RESOURCE.to_value()),
        )
        .and_where(
            Expr::col((share::Entity, share::Column::OwnerOrganizationId))
                .equals((table, E::owner_column())),
        )
        .cond_where(
            Condition::any()
                .add(Expr::col((share::Entity, share::Column::RecordId)).is_null())
                .add(
                    Expr::col((share::Entity, share::Column::RecordId))
                        .equals((table, E::id_column())),
                ),
        );
    if let Some(access) = access {
        shares.and_where(Expr::col((share::Entity, share::Column::Access)).eq(access.to_value()));
    }
    if include_sensitive {
        shares.and_where(Expr::col((share::Entity, share::Column::IncludeSensitive)).eq(true));
    }
    shares.to_owned()
}

/// Orders the caller may see: its own, and those it is a party of (a supplier of one of the products).
pub fn order_visible(principal: &Principal) -> Condition {
    let mut parties = Query::select();
    parties
        .expr(Expr::val(1))
        .from(order_party::Entity)
        .and_where(
            Expr::col((order_party::Entity, order_party::Column::OrderId))
                .equals((order::Entity, order::Column::Id)),
        )
        .and_where(
            Expr::col((order_party::Entity, order_party::Column::OrganizationId))
                .eq(principal.organization_id),
        );
    Condition::any()
        .add(
            Expr::col((order::Entity, order::Column::OwnerOrganizationId))
                .eq(principal.organization_id),
        )
        .add(Expr::exists(parties.to_owned()))
}

/// Order lines the caller may see: every line of its own orders; of others' orders only the lines of its
/// own products (a supplier never sees another supplier's lines).
pub fn order_line_visible(principal: &Principal) -> Condition {
    let mut own_orders = Query::select();
    own_orders
        .column(order::Column::Id)
        .from(order::Entity)
        .and_where(Expr::col(order::Column::OwnerOrganizationId).eq(principal.organization_id));
    Condition::any()
        .add(
            Expr::col((order_line::Entity, order_line::Column::OrderId))
                .in_subquery(own_orders.to_owned()),
        )
        .add(
            Expr::col((
                order_line::Entity,
                order_line::Column::SupplierOrganizationId,
            ))
            .eq(principal.organization_id),
        )
}

/// The same lines as [`order_line_visible`], for a query that joins each line with its order: the
/// owner is then tested on the order row, which its index serves.
pub fn sold_line_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(
            Expr::col((order::Entity, order::Column::OwnerOrganizationId))
                .eq(principal.organization_id),
        )
        .add(
            Expr::col((
                order_line::Entity,
                order_line::Column::SupplierOrganizationId,
            ))
            .eq(principal.organization_id),
        )
}

/// Rows of the daily sales roll-up the caller may see: the sums of the lines [`order_line_visible`]
/// shows (its own orders'; its own products' in others' orders).
pub fn sales_daily_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(
            Expr::col((
                sales_daily::Entity,
                sales_daily::Column::OwnerOrganizationId,
            ))
            .eq(principal.organization_id),
        )
        .add(
            Expr::col((sales_daily::Entity, sales_daily::Column::SupplierKey))
                .eq(principal.organization_id),
        )
}

/// Sales contributions not folded yet that the caller may see, as for [`sales_daily_visible`].
pub fn sales_pending_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(
            Expr::col((
                sales_pending::Entity,
                sales_pending::Column::OwnerOrganizationId,
            ))
            .eq(principal.organization_id),
        )
        .add(
            Expr::col((
                sales_pending::Entity,
                sales_pending::Column::SupplierOrganizationId,
            ))
            .eq(principal.organization_id),
        )
}

/// Whether the caller sees an order's money totals: only the owner does (a party sees its own lines).
pub fn may_see_order_totals(principal: &Principal, order: &order::Model) -> bool {
    order.owner_organization_id == principal.organization_id
}

/// Invoices are their owner's.
pub fn invoice_visible(principal: &Principal) -> Condition {
    Condition::all().add(
        Expr::col((invoice::Entity, invoice::Column::OwnerOrganizationId))
            .eq(principal.organization_id),
    )
}

/// Clearing batches are seen by the merchant and the provider they are between.
pub fn clearing_batch_visible(principal: &Principal) -> Condition {
    let org = principal.organization_id;
    Condition::any()
        .add(
            Expr::col((
                clearing_batch::Entity,
                clearing_batch::Column::MerchantOrganizationId,
            ))
            .eq(org),
        )
        .add(
            Expr::col((
                clearing_batch::Entity,
                clearing_batch::Column::ProviderOrganizationId,
            ))
            .eq(org),
        )
}

/// A capture or refund is seen by the merchant and the provider of its payment.
pub fn clearing_entry_visible(principal: &Principal) -> Condition {
    let org = principal.organization_id;
    Condition::any()
        .add(
            Expr::col((
                clearing_entry::Entity,
                clearing_entry::Column::MerchantOrganizationId,
            ))
            .eq(org),
        )
        .add(
            Expr::col((
                clearing_entry::Entity,
                clearing_entry::Column::ProviderOrganizationId,
            ))
            .eq(org),
        )
}

/// Payments are seen by their owner and by the financial provider that issued the card.
pub fn payment_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(
            Expr::col((payment::Entity, payment::Column::OwnerOrganizationId))
                .eq(principal.organization_id),
        )
        .add(
            Expr::col((payment::Entity, payment::Column::IssuerOrganizationId))
                .eq(principal.organization_id),
        )
}

/// Work plans the caller may see: those it planned and those assigned to it.
pub fn work_plan_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(
            Expr::col((work_plan::Entity, work_plan::Column::OwnerOrganizationId))
                .eq(principal.organization_id),
        )
        .add(
            Expr::col((work_plan::Entity, work_plan::Column::AssigneeOrganizationId))
                .eq(principal.organization_id),
        )
}

/// The two parties of a work plan or a delivery: the owner who asks, the one who does the work or
/// carries the goods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The planner of a work plan, the shipper of a delivery.
    Owner,
    /// The assignee of a work plan, the carrier of a delivery.
    Performer,
}

/// The caller's party in a record, preferring `wanted` when it is both (work an organization assigns
/// to itself); `None` when it is neither.
pub fn party_of(
    principal: &Principal,
    owner: Uuid,
    performer: Uuid,
    wanted: Party,
) -> Option<Party> {
    let me = principal.organization_id;
    match wanted {
        Party::Owner if owner == me => Some(Party::Owner),
        Party::Performer if performer == me => Some(Party::Performer),
        _ if owner == me => Some(Party::Owner),
        _ if performer == me => Some(Party::Performer),
        _ => None,
    }
}

/// Whether the caller reads a delivery's recipient and positions in clear: its shipper and its
/// carrier, the two parties (nobody else sees the delivery at all).
pub fn may_read_delivery_details(principal: &Principal, delivery: &delivery::Model) -> bool {
    party_of(
        principal,
        delivery.owner_organization_id,
        delivery.carrier_organization_id,
        Party::Owner,
    )
    .is_some()
}

/// SQL condition: the caller is `party` of the work plan.
pub fn work_plan_party(principal: &Principal, party: Party) -> Condition {
    let column = match party {
        Party::Owner => work_plan::Column::OwnerOrganizationId,
        Party::Performer => work_plan::Column::AssigneeOrganizationId,
    };
    Condition::all().add(Expr::col((work_plan::Entity, column)).eq(principal.organization_id))
}

/// Deliveries the caller may see: those it ships and those it carries.
pub fn delivery_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(delivery_party(principal, Party::Owner))
        .add(delivery_party(principal, Party::Performer))
}

/// SQL condition: the caller is `party` of the delivery.
pub fn delivery_party(principal: &Principal, party: Party) -> Condition {
    let column = match party {
        Party::Owner => delivery::Column::OwnerOrganizationId,
        Party::Performer => delivery::Column::CarrierOrganizationId,
    };
    Condition::all().add(Expr::col((delivery::Entity, column)).eq(principal.organization_id))
}

/// Payment requests the caller may see: its organization's, and for a device its own terminal's only.
pub fn payment_request_visible(principal: &Principal) -> Condition {
    let mut condition = Condition::all().add(
        Expr::col((
            payment_request::Entity,
            payment_request::Column::OwnerOrganizationId,
        ))
        .eq(principal.organization_id),
    );
    if let Some(device) = principal.device_id() {
        condition = condition.add(
            Expr::col((payment_request::Entity, payment_request::Column::DeviceId)).eq(device),
        );
    }
    condition
}

/// Whether the caller may follow the payment requests of `terminal` (owned by `terminal_owner`): the
/// terminal's own device, or a member of the organization that owns it.
pub fn may_follow_terminal(principal: &Principal, terminal: Uuid, terminal_owner: Uuid) -> bool {
    terminal_owner == principal.organization_id
        && principal
            .device_id()
            .is_none_or(|device| device == terminal)
}

/// Declines the caller may see: at its own terminals (the merchant), or of tokens whose signature by
/// the caller (the issuer) verified.
pub fn decline_visible(principal: &Principal) -> Condition {
    Condition::any()
        .add(
            Expr::col((
                payment_evidence::Entity,
                payment_evidence::Column::OwnerOrganizationId,
            ))
            .eq(principal.organization_id),
        )
        .add(
            Expr::col((
                payment_evidence::Entity,
                payment_evidence::Column::IssuerOrganizationId,
            ))
            .eq(principal.organization_id),
        )
}

/// Whether the caller is shown a payment request's challenge: the terminal's device (it has the card
/// sign it) and the member who opened the request (a checkout that drives the card itself). Other
/// members of the merchant see the request without it: a challenge in many hands helps pre-play.
pub fn may_see_challenge(principal: &Principal, request: &payment_request::Model) -> bool {
    match principal.actor {
        Actor::Device(device) => device == request.device_id,
        Actor::Member(member) => {
            request.owner_organization_id == principal.organization_id
                && request.requested_by_member_id == Some(member)
        }
    }
}

/// The shares granted to the caller's organization, loaded once per request to decide which sensitive
/// fields it may read (row visibility itself is always decided in SQL by [`visible`]).
#[derive(Debug, Clone, Default)]
pub struct ReceivedShares(Vec<share::Model>);

impl ReceivedShares {
    pub fn new(shares: Vec<share::Model>) -> Self {
        Self(shares)
    }

    /// Whether the caller may read the sensitive fields of one visible record.
    pub fn may_read_sensitive(
        &self,
        principal: &Principal,
        resource: ResourceType,
        owner: Uuid,
        record: Uuid,
    ) -> bool {
        owner == principal.organization_id
            || self.0.iter().any(|share| {
                share.include_sensitive
                    && share.resource_type == resource
                    && share.owner_organization_id == owner
                    && share.record_id.is_none_or(|id| id == record)
            })
    }
}

/// The record kind of a shareable resource (what its global IDs and audit entries name).
pub fn record_kind(resource: ResourceType) -> crate::records::RecordKind {
    use crate::records::RecordKind;
    match resource {
        ResourceType::Location => RecordKind::Location,
        ResourceType::Product => RecordKind::Product,
        ResourceType::Customer => RecordKind::Customer,
        ResourceType::Device => RecordKind::Device,
    }
}

/// The name of a resource in messages (`NOT_FOUND` says which kind of record is missing).
pub fn resource_name(resource: ResourceType) -> &'static str {
    match resource {
        ResourceType::Location => "location",
        ResourceType::Product => "product",
        ResourceType::Customer => "customer",
        ResourceType::Device => "device",
    }
}

#[cfg(test)]
mod tests {
    use entities::organization::OrganizationKind;
    use uuid::Uuid;

    use super::*;

    fn principal(kind: OrganizationKind, role: Role) -> Principal {
        Principal {
            actor: crate::auth::Actor::Member(Uuid::nil()),
            organization_id: Uuid::nil(),
            organization_kind: kind,
            role,
            token_id: None,
        }
    }

    #[test]
    fn shares_never_move_or_revoke_devices() {
        assert_eq!(device_change_need(DeviceChange::Rename), Need::Write);
        assert_eq!(device_change_need(DeviceChange::Move), Need::Own);
        assert_eq!(device_change_need(DeviceChange::Revoke), Need::Own);
    }

    /// Every action for every role of a retailer and of a financial provider, against a table written
    /// here, independently of `authorize`.
    #[test]
    fn every_action_for_every_role() {
        use Action::*;
        use OrganizationKind::{FinancialProvider, Retailer};
        let reads = [ReadSelf, ReadDirectory, ReadOwnOrganization];
        let expected = |kind: OrganizationKind, role: Role| -> Vec<Action> {
            let mut allowed: Vec<Action> = match role {
                Role::Device => return vec![ReadSelf, RequestPayment, SubmitPayment],
                Role::Viewer => reads.to_vec(),
                Role::Member => {
                    [&reads[..], &[WriteRecords, RequestPayment, SettlePayments]].concat()
                }
                Role::Admin => [
                    &reads[..],
                    &[WriteRecords, RequestPayment, ManageMembers, IssueTokens],
                    &[ManageDevices, ManageShares, ReadAudit, SettlePayments],
                    &[CloseClearingBatch],
                ]
                .concat(),
            };
            match (kind, role) {
                (Retailer, Role::Admin) => {
                    allowed.extend([CreateOrganization, ReadEncryptionStatus])
                }
                (FinancialProvider, Role::Admin) => {
                    allowed.extend([ManageKeys, IssueCards, ReadCardData, ConfirmClearingBatch])
                }
                (FinancialProvider, Role::Member) => allowed.push(IssueCards),
                _ => {}
            }
            allowed
        };
        for kind in [Retailer, FinancialProvider] {
            for role in [Role::Viewer, Role::Member, Role::Admin, Role::Device] {
                let allowed = expected(kind, role);
                for &action in Action::ALL {
                    let outcome = authorize(&principal(kind, role), action);
                    assert_eq!(
                        outcome.is_ok(),
                        allowed.contains(&action),
                        "{kind:?} {role:?} {action:?}"
                    );
                }
            }
        }
        assert_eq!(
            Action::ALL.len(),
            19,
            "a new action needs a row in the table above"
        );
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
            (Retailer, Role::Device, ReadSelf, true),
            (Retailer, Role::Device, ReadDirectory, false),
            (Retailer, Role::Device, ReadOwnOrganization, false),
            (Retailer, Role::Device, WriteRecords, false),
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
