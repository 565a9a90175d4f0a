//! The GraphQL schema: domain roots merged, guard rails set, errors coded at the edge.

pub mod cost;
pub mod edge;
pub mod live;
pub mod loaders;
pub mod node;
pub mod relay;
pub mod scalars;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use sea_orm::DatabaseConnection;

use crate::{
    auth::Principal,
    config::Limits,
    error::{ApiError, ApiResult},
    events::{
        EventFeed, EventService,
        graphql::{EventQuery, EventSubscription},
    },
    financial::{
        FinancialService,
        graphql::{FinancialMutation, FinancialQuery, FinancialSubscription},
    },
    graphql::{loaders::RequestScope, node::NodeQuery},
    identity::{
        IdentityService,
        graphql::{IdentityMutation, IdentityQuery},
    },
    master_data::{
        MasterDataService,
        graphql::{MasterDataMutation, MasterDataQuery},
    },
    payments::{
        ApprovalService, PaymentKeysService, PaymentRequestService,
        graphql::{
            ApprovalMutation, DeclinesQuery, PaymentKeysMutation, PaymentKeysQuery,
            PaymentRequestMutation, PaymentRequestQuery, PaymentRequestSubscription,
        },
    },
};

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    NodeQuery,
    IdentityQuery,
    MasterDataQuery,
    FinancialQuery,
    crate::work::graphql::WorkQuery,
    crate::logistics::graphql::LogisticsQuery,
    EventQuery,
    PaymentKeysQuery,
    PaymentRequestQuery,
    DeclinesQuery,
    crate::crypto::graphql::EncryptionQuery,
    crate::audit::graphql::AuditQuery,
    crate::analytics::graphql::AnalyticsQuery,
    crate::clearing::graphql::ClearingQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    IdentityMutation,
    MasterDataMutation,
    FinancialMutation,
    crate::work::graphql::WorkMutation,
    crate::logistics::graphql::LogisticsMutation,
    PaymentKeysMutation,
    PaymentRequestMutation,
    ApprovalMutation,
    crate::clearing::graphql::SettlementMutation,
    crate::clearing::graphql::ClearingMutation,
);

#[derive(MergedSubscription, Default)]
pub struct SubscriptionRoot(
    EventSubscription,
    PaymentRequestSubscription,
    FinancialSubscription,
    crate::logistics::graphql::LogisticsSubscription,
);

pub type HubSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Services the resolvers reach through the context.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub identity: IdentityService,
    pub master_data: MasterDataService,
    pub financial: FinancialService,
    pub work: crate::work::WorkService,
    pub logistics: crate::logistics::LogisticsService,
    pub events: EventService,
    pub payment_keys: PaymentKeysService,
    pub payment_requests: PaymentRequestService,
    pub approval: ApprovalService,
    pub feed: EventFeed,
    pub vault: crate::crypto::Vault,
    pub analytics: crate::analytics::AnalyticsService,
    pub audit: crate::audit::AuditService,
    /// Opens the audit scope of each mutation.
    pub audit_scope: crate::audit::scope::AuditMutations,
    pub linker: crate::audit::Linker,
    pub sales_folder: crate::analytics::SalesFolder,
    pub settlement: crate::payments::SettlementService,
    pub clearing: crate::clearing::ClearingService,
}

/// One schema per kind of operation, differing only in the extensions they run. An extension's
/// hook wraps every field the engine resolves, so a page of 50 products paid for the audit's
/// mutation test hundreds of times; reads run with none.
pub struct Schemas {
    /// Queries over HTTP: no extension; the HTTP edge gives the errors their codes.
    pub queries: HubSchema,
    /// Mutations (and anything not proven a query) over HTTP: each root field opens its audit
    /// scope.
    pub mutations: HubSchema,
    /// Subscriptions over WebSocket: the engine serializes each response itself, so an extension
    /// gives the errors their codes.
    pub subscriptions: HubSchema,
}

impl Schemas {
    pub fn new(limits: &Limits, services: &Services) -> Self {
        let with_services = || builder(limits, Some(services.clone()));
        Self {
            queries: with_services().finish(),
            mutations: with_services()
                .extension(edge::ErrorCodes)
                .extension(services.audit_scope.clone())
                .finish(),
            subscriptions: with_services().extension(edge::ErrorCodes).finish(),
        }
    }
}

/// The schema's guard rails and, unless only printing the SDL, its services.
fn builder(
    limits: &Limits,
    services: Option<Services>,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .limit_depth(limits.max_query_depth)
    .limit_complexity(limits.max_query_complexity)
    .limit_recursive_depth(64)
    .limit_directives(16);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(services) = services {
        builder = builder
            .data(services.identity)
            .data(services.master_data)
            .data(services.financial)
            .data(services.work)
            .data(services.logistics)
            .data(services.events)
            .data(services.payment_keys)
            .data(services.payment_requests)
            .data(services.approval)
            .data(services.feed)
            .data(services.vault)
            .data(services.analytics)
            .data(services.audit)
            .data(services.settlement)
            .data(services.clearing);
    }
    builder
}

/// The names of the query and mutation root types, as the SDL spells them.
pub fn root_type_names() -> (String, String) {
    use async_graphql::OutputType;
    (
        QueryRoot::type_name().into_owned(),
        MutationRoot::type_name().into_owned(),
    )
}

/// The SDL checked in as `schema.graphql`.
pub fn sdl() -> String {
    builder(&Limits::default(), None).finish().sdl()
}

/// Attaches the caller and its per-request caches to a request.
pub fn with_caller(
    request: async_graphql::Request,
    services: &std::sync::Arc<Services>,
    principal: Principal,
) -> async_graphql::Request {
    let scope = RequestScope::new(services, &principal);
    request.data(principal).data(scope)
}

/// Access to the request's caller and caches from resolvers.
pub trait ContextExt {
    fn principal(&self) -> ApiResult<&Principal>;
    fn scope(&self) -> &RequestScope;
}

impl ContextExt for Context<'_> {
    fn principal(&self) -> ApiResult<&Principal> {
        // The HTTP edge authenticates before executing; a missing principal means no credentials.
        self.data_opt::<Principal>()
            .ok_or(ApiError::Unauthenticated)
    }

    fn scope(&self) -> &RequestScope {
        // `with_caller` attaches the scope together with the principal.
        self.data_unchecked::<RequestScope>()
    }
}
