//! Gives every error in a GraphQL response an `extensions.code`, in one place.
//!
//! Resolvers return [`ApiError`] through `?`; async-graphql keeps it as the error's source, and
//! [`assign_codes`] reads it back once the request is done. Parse and validation failures (including
//! the depth and complexity limits) get codes here too. The HTTP edge calls it on every response; the
//! WebSocket engine serializes responses itself, so its schema runs [`ErrorCodes`] instead.

use std::sync::Arc;

use async_graphql::{
    Response, ServerError, ServerResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
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
        assign_codes(&mut response);
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
                assign_codes(&mut response);
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

/// Gives each error of a response its code: a resolver's [`ApiError`] its own (logged if internal),
/// an engine error the code of what the caller sent wrong. Errors already coded keep theirs.
pub fn assign_codes(response: &mut Response) {
    for error in &mut response.errors {
        assign_code(error);
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
        // Validation, input coercion and other engine errors: the caller sent something the schema
        // rejects. async-graphql reports its limits only by message.
        let code = if error.message.contains("nested too deep") {
            QUERY_TOO_DEEP
        } else if error.message.contains("too complex") {
            QUERY_TOO_COMPLEX
        } else {
            VALIDATION_FAILED
        };
        set_code(error, code);
    }
}
