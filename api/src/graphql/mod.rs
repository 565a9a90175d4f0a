//! The GraphQL schema: domain roots merged, guard rails set, errors coded at the edge.

pub mod edge;
pub mod relay;

use async_graphql::{Context, EmptySubscription, MergedObject, Schema};

use crate::{
    auth::Principal,
    config::Limits,
    error::{ApiError, ApiResult},
    identity::{
        IdentityService,
        graphql::{IdentityMutation, IdentityQuery},
    },
};

#[derive(MergedObject, Default)]
pub struct QueryRoot(IdentityQuery);

#[derive(MergedObject, Default)]
pub struct MutationRoot(IdentityMutation);

pub type HubSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Services the resolvers reach through the context.
#[derive(Clone)]
pub struct Services {
    pub identity: IdentityService,
}

/// Builds the schema; `services` is `None` only for printing the SDL.
pub fn build_schema(limits: &Limits, services: Option<Services>) -> HubSchema {
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .limit_depth(limits.max_query_depth)
    .limit_complexity(limits.max_query_complexity)
    .limit_recursive_depth(64)
    .limit_directives(16)
    .extension(edge::ErrorCodes);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(services) = services {
        builder = builder.data(services.identity);
    }
    builder.finish()
}

/// The SDL checked in as `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Limits::default(), None).sdl()
}

/// Access to the request's caller from resolvers.
pub trait ContextExt {
    fn principal(&self) -> ApiResult<&Principal>;
}

impl ContextExt for Context<'_> {
    fn principal(&self) -> ApiResult<&Principal> {
        // The HTTP edge authenticates before executing; a missing principal means no credentials.
        self.data_opt::<Principal>()
            .ok_or(ApiError::Unauthenticated)
    }
}
