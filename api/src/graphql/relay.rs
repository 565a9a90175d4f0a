//! Relay conventions at the GraphQL edge: opaque global IDs that carry their type, and connections
//! built from the data layer's pages (`db::pagination`).

use async_graphql::{
    Context, ID, OutputType, SimpleObject,
    connection::{Connection, Edge},
};
use uuid::Uuid;

pub use crate::db::pagination::PageArgs;
use crate::{
    db::pagination::Page,
    error::{ApiError, ApiResult},
    records::{GlobalId, RecordKind},
};

/// The global ID of the record `id` of `kind`.
pub fn encode_id(kind: RecordKind, id: Uuid) -> ID {
    ID(kind.global_id(id).to_string())
}

/// Decodes a global ID that must name a record of `expected`.
///
/// An ID that does not decode at all (guessed or altered) names no record: NOT_FOUND, exactly like an ID
/// of a record the caller may not see. A well-formed ID of another kind is a VALIDATION error on `field`.
pub fn decode_id(field: &'static str, expected: RecordKind, id: &ID) -> ApiResult<Uuid> {
    let global: GlobalId = id.parse().map_err(|_| ApiError::NotFound {
        entity: expected.name(),
    })?;
    global.id_of(expected).ok_or_else(|| {
        ApiError::validation(field, format!("expected an ID of a {}", expected.name()))
    })
}

/// Fields every connection carries besides edges and page info.
#[derive(SimpleObject)]
pub struct ConnectionFields {
    /// Number of rows matching the filters that the caller may see, across all pages.
    pub total_count: u64,
}

pub type HubConnection<N> = Connection<String, N, ConnectionFields>;

/// A page of the data layer as a GraphQL connection.
pub trait IntoConnection<M> {
    /// The GraphQL connection of this page, each row mapped to its GraphQL node.
    fn into_connection<N: OutputType>(self, node: impl Fn(M) -> N) -> HubConnection<N>;
}

impl<M> IntoConnection<M> for Page<M> {
    fn into_connection<N: OutputType>(self, node: impl Fn(M) -> N) -> HubConnection<N> {
        let mut connection = Connection::with_additional_fields(
            self.has_previous_page,
            self.has_next_page,
            ConnectionFields {
                total_count: self.total_count.unwrap_or_default(),
            },
        );
        connection.edges.extend(
            self.edges
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, node(row))),
        );
        connection
    }
}

/// Whether the current connection field selects `totalCount` (so counting can be skipped otherwise).
pub fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_keep_their_type() {
        let id = Uuid::new_v4();
        let global = encode_id(RecordKind::Organization, id);
        assert_eq!(
            decode_id("id", RecordKind::Organization, &global).ok(),
            Some(id)
        );
        let err = decode_id("id", RecordKind::Member, &global)
            .err()
            .map(|e| e.code());
        assert_eq!(err, Some("VALIDATION"));
        let garbage = decode_id("id", RecordKind::Organization, &ID("not base64!".into())).err();
        assert_eq!(garbage.map(|e| e.code()), Some("NOT_FOUND"));
    }
}
