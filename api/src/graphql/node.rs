//! The Relay `Node` interface and `node(id:)`: any record by its global ID, if the caller may see it.

use async_graphql::{Context, ID, Interface, Object};

use super::ContextExt;
use crate::{
    error::ApiError,
    financial::{
        FinancialService,
        graphql::{Invoice, Order, Payment},
    },
    identity::{
        IdentityService,
        graphql::{Member, Organization},
    },
    master_data::{
        MasterDataService,
        graphql::{Customer, Device, Location, Product, Share},
    },
    payments::{
        PaymentKeysService, PaymentRequestService,
        graphql::{Card, IssuerKey, PaymentRequest},
    },
    records::{GlobalId, RecordKind},
};

/// An object with a global ID.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Organization(Organization),
    Member(Member),
    Location(Location),
    Product(Product),
    Customer(Customer),
    Device(Device),
    Share(Share),
    Order(Order),
    Invoice(Invoice),
    Payment(Payment),
    IssuerKey(IssuerKey),
    Card(Card),
    PaymentRequest(PaymentRequest),
    WorkPlan(crate::work::graphql::WorkPlan),
    Delivery(crate::logistics::graphql::Delivery),
    ClearingBatch(crate::clearing::graphql::ClearingBatch),
    ClearingEntry(crate::clearing::graphql::ClearingEntry),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any record by global ID. IDs of records the caller may not see, and IDs that name no record,
    /// answer NOT_FOUND alike.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Node> {
        let principal = ctx.principal()?;
        let GlobalId { kind, id: uuid } = id.parse().map_err(|_| ApiError::not_found("node"))?;
        let identity = ctx.data_unchecked::<IdentityService>();
        let master = ctx.data_unchecked::<MasterDataService>();
        let financial = ctx.data_unchecked::<FinancialService>();
        let keys = ctx.data_unchecked::<PaymentKeysService>();
        let node = match kind {
            RecordKind::Organization => {
                Node::Organization(identity.organization(principal, uuid).await?.into())
            }
            RecordKind::Member => {
                Node::Member(Member::from(identity.member(principal, uuid).await?))
            }
            RecordKind::Location => {
                Node::Location(Location(master.location(principal, uuid).await?))
            }
            RecordKind::Product => Node::Product(Product(master.product(principal, uuid).await?)),
            RecordKind::Customer => {
                Node::Customer(Customer(master.customer(principal, uuid).await?))
            }
            RecordKind::Device => Node::Device(Device(master.device(principal, uuid).await?)),
            RecordKind::Share => Node::Share(Share(master.share(principal, uuid).await?)),
            RecordKind::Order => Node::Order(Order(financial.order(principal, uuid).await?)),
            RecordKind::Invoice => {
                Node::Invoice(Invoice(financial.invoice(principal, uuid).await?))
            }
            RecordKind::Payment => {
                Node::Payment(Payment(financial.payment(principal, uuid).await?))
            }
            RecordKind::IssuerKey => {
                Node::IssuerKey(IssuerKey(keys.issuer_key(principal, uuid).await?))
            }
            RecordKind::Card => Node::Card(Card(keys.card(principal, uuid).await?)),
            RecordKind::PaymentRequest => Node::PaymentRequest(PaymentRequest(
                ctx.data_unchecked::<PaymentRequestService>()
                    .payment_request(principal, uuid)
                    .await?,
            )),
            RecordKind::WorkPlan => Node::WorkPlan(crate::work::graphql::WorkPlan(
                ctx.data_unchecked::<crate::work::WorkService>()
                    .work_plan(principal, uuid)
                    .await?,
            )),
            RecordKind::Delivery => Node::Delivery(crate::logistics::graphql::Delivery(
                ctx.data_unchecked::<crate::logistics::LogisticsService>()
                    .delivery(principal, uuid)
                    .await?,
            )),
            RecordKind::ClearingBatch => {
                Node::ClearingBatch(crate::clearing::graphql::ClearingBatch(
                    ctx.data_unchecked::<crate::clearing::ClearingService>()
                        .batch(principal, uuid)
                        .await?,
                ))
            }
            RecordKind::ClearingEntry => {
                Node::ClearingEntry(crate::clearing::graphql::ClearingEntry(
                    ctx.data_unchecked::<crate::clearing::ClearingService>()
                        .entry(principal, uuid)
                        .await?,
                ))
            }
        };
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record kind names a GraphQL type that implements `Node`, and every such type has a kind:
    /// a kind renamed on one side only would mint IDs that `node(id:)` cannot resolve.
    #[test]
    fn record_kinds_are_the_node_types_of_the_schema() {
        let sdl = crate::graphql::sdl();
        let mut node_types: Vec<&str> = sdl
            .lines()
            .filter(|line| line.starts_with("type ") && line.contains(" implements Node"))
            .filter_map(|line| line.split_whitespace().nth(1))
            .collect();
        node_types.sort_unstable();
        let mut kinds: Vec<&str> = RecordKind::ALL.iter().map(|kind| kind.name()).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, node_types);
    }
}
