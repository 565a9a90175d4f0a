//! Customers: the GraphQL node type (contact fields only for callers allowed sensitive data), its
//! filter input, the `customers` query and the create, update and delete mutations.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::customer;

use super::{
    DeleteRecordInput, DeleteRecordPayload, OrderDirection, organization, patch,
    prime_organizations, service,
};
use crate::graphql::relay::IntoConnection;
use crate::{
    error::ApiResult,
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    identity::graphql::Organization,
    master_data::{
        sensitive::{ContactField, CustomerContact},
        service::{CustomerFilter, CustomerPatch, NewCustomer},
    },
    records::RecordKind,
};

// ---- node type ----

/// A customer. Name, email, phone and address are sensitive: they are null for callers whose share does
/// not include sensitive fields.
pub struct Customer(pub customer::Model);

impl Customer {
    /// A contact field in clear for callers allowed sensitive data; null for the others.
    async fn contact(&self, ctx: &Context<'_>, field: ContactField) -> ApiResult<Option<String>> {
        let principal = ctx.principal()?;
        let shares = ctx.scope().received_shares(service(ctx), principal).await?;
        service(ctx)
            .customer_field(principal, &shares, &self.0, field)
            .await
    }
}

#[Object]
impl Customer {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Customer, self.0.id)
    }
    async fn name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx, ContactField::Name).await?)
    }
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx, ContactField::Email).await?)
    }
    async fn phone(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx, ContactField::Phone).await?)
    }
    async fn address(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx, ContactField::Address).await?)
    }
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(organization(ctx, self.0.owner_organization_id).await?)
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

// ---- filter ----

#[derive(InputObject, Default)]
pub struct CustomerFilterInput {
    /// Exact email (case-insensitive).
    email: Option<String>,
}

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// Customers the caller may see, newest last (or first with `direction: DESC`).
    #[allow(clippy::too_many_arguments)]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<CustomerFilterInput>,
        #[graphql(default)] direction: OrderDirection,
    ) -> async_graphql::Result<HubConnection<Customer>> {
        let principal = ctx.principal()?;
        let filter = CustomerFilter {
            email: filter.unwrap_or_default().email,
        };
        let page = service(ctx)
            .customers(
                principal,
                filter,
                direction.into(),
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        prime_organizations(ctx, &page, &[("owner", |c| Some(c.owner_organization_id))]).await?;
        Ok(page.into_connection(Customer))
    }
}

// ---- mutation inputs and payloads ----

#[derive(InputObject)]
pub struct CreateCustomerInput {
    name: String,
    email: String,
    phone: Option<String>,
    address: Option<String>,
    /// Retrying with the same key and input returns the same record (keys are kept 24 hours).
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateCustomerInput {
    id: ID,
    version: i32,
    name: Option<String>,
    email: Option<String>,
    phone: async_graphql::MaybeUndefined<String>,
    address: async_graphql::MaybeUndefined<String>,
}

#[derive(SimpleObject)]
pub struct CustomerPayload {
    customer: Customer,
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates a customer owned by the caller's organization (MEMBER or ADMIN).
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let contact = CustomerContact {
            name: input.name,
            email: input.email,
            phone: input.phone,
            address: input.address,
        };
        let customer = service(ctx)
            .create_customer(
                ctx.principal()?,
                NewCustomer { contact },
                input.idempotency_key.as_deref(),
            )
            .await?;
        Ok(CustomerPayload {
            customer: Customer(customer),
        })
    }

    /// Updates a customer the caller owns or holds a WRITE share on.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = decode_id("id", RecordKind::Customer, &input.id)?;
        let changes = CustomerPatch {
            name: input.name,
            email: input.email,
            phone: patch(input.phone),
            address: patch(input.address),
        };
        let customer = service(ctx)
            .update_customer(ctx.principal()?, id, input.version, changes)
            .await?;
        Ok(CustomerPayload {
            customer: Customer(customer),
        })
    }

    /// Deletes a customer the caller owns. Refused with CONFLICT while orders reference it.
    async fn delete_customer(
        &self,
        ctx: &Context<'_>,
        input: DeleteRecordInput,
    ) -> async_graphql::Result<DeleteRecordPayload> {
        let id = decode_id("id", RecordKind::Customer, &input.id)?;
        let deleted = service(ctx).delete_customer(ctx.principal()?, id).await?;
        Ok(DeleteRecordPayload {
            deleted_id: encode_id(RecordKind::Customer, deleted),
        })
    }
}
