//! Gives every error in a GraphQL response an `extensions.code`, in one place.
//!
//! Resolvers return [`ApiError`] through `?`; async-graphql keeps it as the error's source, and this
//! extension reads it back once the request is done. Parse and validation failures (including the depth
//! and complexity limits) get codes here too.

use std::sync::Arc;

use async_graphql::{
    Response, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
        NextValidation,
    },
    parser::types::ExecutableDocument,
};
use futures_util::{StreamExt, stream::BoxStream};

use crate::error::ApiError;

pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
pub const QUERY_TOO_DEEP: &str = "QUERY_TOO_DEEP";
pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            assign_code(error);
        }
        response
    }

    /// Each response of a subscription gets its codes like a query's.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                for error in &mut response.errors {
                    assign_code(error);
                }
                response
            })
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut err| {
            set_code(&mut err, PARSE_FAILED);
            err
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for err in &mut errors {
                // async-graphql reports its limits only by message.
                let code = if err.message.contains("nested too deep") {
                    QUERY_TOO_DEEP
                } else if err.message.contains("too complex") {
                    QUERY_TOO_COMPLEX
                } else {
                    VALIDATION_FAILED
                };
                set_code(err, code);
            }
            errors
        })
    }
}

/// The response to a document that does not parse (parsed by the HTTP edge, before the schema runs).
pub fn parse_failure(mut error: ServerError) -> Response {
    set_code(&mut error, PARSE_FAILED);
    Response::from_errors(vec![error])
}

fn has_code(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some())
}

fn set_code(error: &mut ServerError, code: &'static str) {
    if !has_code(error) {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

fn assign_code(error: &mut ServerError) {
    if has_code(error) {
        return;
    }
    let source = error.source.clone();
    if let Some(api_error) = source.as_deref().and_then(|s| s.downcast_ref::<ApiError>()) {
        api_error.log_if_internal();
        let mut extensions = error.extensions.take().unwrap_or_default();
        api_error.annotate(&mut extensions);
        error.extensions = Some(extensions);
    } else {
        // Input coercion and other engine errors: the caller sent something the schema rejects.
        set_code(error, VALIDATION_FAILED);
    }
}
