//! One error type for the whole hub, mapped to a GraphQL `extensions.code` at the edge.
//!
//! Services return [`ApiError`]; resolvers pass it on with `?` (async-graphql keeps it as the error's
//! source) and `graphql::edge` turns it into a code once per response. Internal failures are logged with the
//! request's span (and so its request id) and answered with a bare `INTERNAL` code: nothing about the
//! database, keys or stack leaks to a caller.

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that do not prove who is asking. Deliberately uninformative.
    #[error("authentication required: missing, invalid or expired token")]
    Unauthenticated,
    /// The caller is known and the record is its own, but its role does not allow the action.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Absent, or not visible to the caller: the two answer alike.
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    #[error("invalid {field}: {message}")]
    Validation {
        field: &'static str,
        message: String,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    /// The same idempotency key is being processed right now; retry shortly for its outcome.
    #[error("a request with this idempotency key is still in progress; retry shortly")]
    InProgress,
    #[error("this idempotency key was used with a different input")]
    IdempotencyMismatch,
    /// A state machine refuses the step (e.g. fulfilling a DRAFT order).
    #[error("cannot {action}: {reason}")]
    InvalidTransition {
        action: &'static str,
        reason: String,
    },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request did not finish within {seconds} s")]
    Timeout { seconds: u64 },
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// A document refused before validation for what checking it would cost.
    #[error("query is too complex: {reason}")]
    QueryTooComplex { reason: String },
    /// A document that cannot be valid, found before the engine's validation runs.
    #[error("invalid document: {0}")]
    InvalidDocument(String),
    /// A subscriber fell further behind than its buffer; it resumes with `after: cursor`.
    #[error("the subscriber fell too far behind; resume after cursor {cursor}")]
    SlowConsumer { cursor: i64 },
    /// A cursor older than the events kept: resuming from it would skip what was purged.
    #[error(
        "events after cursor {cursor} are no longer kept; the oldest kept is at position {oldest}"
    )]
    CursorExpired { cursor: i64, oldest: i64 },
    /// More subscriptions on one connection than allowed.
    #[error("too many subscriptions on this connection (at most {limit})")]
    TooManySubscriptions { limit: usize },
    /// A sealed value that does not open: altered or moved in the database, or under a key this hub
    /// does not hold. Names the table and column, never the value.
    #[error("{0}")]
    Unreadable(crate::crypto::CryptoError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }

    pub fn not_found(entity: &'static str) -> Self {
        Self::NotFound { entity }
    }

    /// The stable code a client branches on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Validation { .. } => "VALIDATION",
            Self::Conflict(_) | Self::InProgress => "CONFLICT",
            Self::IdempotencyMismatch => "IDEMPOTENCY_MISMATCH",
            Self::InvalidTransition { .. } => "INVALID_TRANSITION",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::Timeout { .. } => "TIMEOUT",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::QueryTooComplex { .. } => crate::graphql::edge::QUERY_TOO_COMPLEX,
            Self::InvalidDocument(_) => crate::graphql::edge::VALIDATION_FAILED,
            Self::SlowConsumer { .. } => "SLOW_CONSUMER",
            Self::CursorExpired { .. } => "CURSOR_EXPIRED",
            Self::TooManySubscriptions { .. } => "TOO_MANY_SUBSCRIPTIONS",
            Self::Unreadable(_) => "DECRYPTION_FAILED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status used when the error ends a request before GraphQL runs.
    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Validation { .. }
            | Self::BadRequest(_)
            | Self::QueryTooComplex { .. }
            | Self::InvalidDocument(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) | Self::InProgress | Self::IdempotencyMismatch => {
                StatusCode::CONFLICT
            }
            Self::InvalidTransition { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::CursorExpired { .. } => StatusCode::GONE,
            Self::SlowConsumer { .. } | Self::TooManySubscriptions { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Internal(_) | Self::Unreadable(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs internal causes once, where they are turned into a response.
    pub(crate) fn log_if_internal(&self) {
        if let Self::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
    }

    /// Sets `code` (and `field` for validation errors) on a GraphQL error's extensions.
    pub(crate) fn annotate(&self, extensions: &mut async_graphql::ErrorExtensionValues) {
        extensions.set("code", self.code());
        if let Self::Validation { field, .. } = self {
            extensions.set("field", *field);
        }
        if matches!(self, Self::InProgress) {
            extensions.set("retryable", true);
        }
        if let Self::SlowConsumer { cursor } = self {
            // Decimal text, like every event cursor.
            extensions.set("cursor", cursor.to_string());
        }
    }

    /// A complete GraphQL-shaped response for errors raised before the schema runs.
    pub fn into_graphql_response(self) -> async_graphql::Response {
        self.log_if_internal();
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        self.annotate(&mut extensions);
        let mut error = async_graphql::ServerError::new(self.to_string(), None);
        error.extensions = Some(extensions);
        async_graphql::Response::from_errors(vec![error])
    }
}

impl From<sea_orm::DbErr> for ApiError {
    /// A violation of a unique key that names a conflict (a name or SKU taken meanwhile) is the
    /// caller's CONFLICT; every other database error is ours (see `db::constraints`).
    fn from(err: sea_orm::DbErr) -> Self {
        crate::db::constraints::conflict(&err).unwrap_or_else(|| Self::Internal(err.into()))
    }
}

impl From<crate::crypto::CryptoError> for ApiError {
    /// A sealed value that does not open is the caller's DECRYPTION_FAILED (naming table and column);
    /// a failing random generator is ours.
    fn from(err: crate::crypto::CryptoError) -> Self {
        match err {
            crate::crypto::CryptoError::Random | crate::crypto::CryptoError::MasterKey(_) => {
                Self::Internal(err.into())
            }
            other => Self::Unreadable(other),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
