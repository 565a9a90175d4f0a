//! The Relay `Node` interface and `node(id:)`: any record by its global ID, if the caller may see it.

use async_graphql::{Context, ID, Interface, Object};

use super::{ContextExt, relay::parse_id};
use crate::{
    error::ApiError,
    financial::{
        FinancialService,
        graphql::{INVOICE, Invoice, ORDER, Order, PAYMENT, Payment},
    },
    identity::{
        IdentityService,
        graphql::{Member, Organization},
    },
    master_data::{
        MasterDataService,
        graphql::{
            CUSTOMER, Customer, DEVICE, Device, LOCATION, Location, PRODUCT, Product, SHARE, Share,
        },
    },
    payments::{
        PaymentKeysService, PaymentRequestService,
        graphql::{CARD, Card, ISSUER_KEY, IssuerKey, PAYMENT_REQUEST, PaymentRequest},
    },
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
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any record by global ID. IDs of records the caller may not see, and IDs that name no record,
    /// answer NOT_FOUND alike.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Node> {
        let principal = ctx.principal()?;
        let (type_name, uuid) = parse_id(&id).ok_or(ApiError::not_found("node"))?;
        let identity = ctx.data_unchecked::<IdentityService>();
        let master = ctx.data_unchecked::<MasterDataService>();
        let financial = ctx.data_unchecked::<FinancialService>();
        let keys = ctx.data_unchecked::<PaymentKeysService>();
        let node = match type_name.as_str() {
            "Organization" => {
                Node::Organization(identity.organization(principal, uuid).await?.into())
            }
            "Member" => Node::Member(Member::from(identity.member(principal, uuid).await?)),
            LOCATION => Node::Location(Location(master.location(principal, uuid).await?)),
            PRODUCT => Node::Product(Product(master.product(principal, uuid).await?)),
            CUSTOMER => Node::Customer(Customer(master.customer(principal, uuid).await?)),
            DEVICE => Node::Device(Device(master.device(principal, uuid).await?)),
            SHARE => Node::Share(Share(master.share(principal, uuid).await?)),
            ORDER => Node::Order(Order(financial.order(principal, uuid).await?)),
            INVOICE => Node::Invoice(Invoice(financial.invoice(principal, uuid).await?)),
            PAYMENT => Node::Payment(Payment(financial.payment(principal, uuid).await?)),
            ISSUER_KEY => Node::IssuerKey(IssuerKey(keys.issuer_key(principal, uuid).await?)),
            CARD => Node::Card(Card(keys.card(principal, uuid).await?)),
            PAYMENT_REQUEST => Node::PaymentRequest(PaymentRequest(
                ctx.data_unchecked::<PaymentRequestService>()
                    .payment_request(principal, uuid)
                    .await?,
            )),
            _ => return Err(ApiError::not_found("node").into()),
        };
        Ok(node)
    }
}
