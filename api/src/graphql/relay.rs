//! Relay conventions at the GraphQL edge: opaque global IDs that carry their type, and connections
//! built from the data layer's pages (`db::pagination`).

use async_graphql::{
    Context, ID, OutputType, SimpleObject,
    connection::{Connection, Edge},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

pub use crate::db::pagination::PageArgs;
use crate::{
    db::pagination::Page,
    error::{ApiError, ApiResult},
};

/// Encodes `Type:uuid` as unpadded base64url, so IDs are opaque and carry their type.
pub fn encode_id(type_name: &str, id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{type_name}:{id}")))
}

/// Decodes a global ID that must name `expected_type`.
///
/// An ID that does not decode at all (guessed or altered) names no record: NOT_FOUND, exactly like an ID
/// of a record the caller may not see. A well-formed ID of another type is a VALIDATION error on `field`.
pub fn decode_id(field: &'static str, expected_type: &'static str, id: &ID) -> ApiResult<Uuid> {
    let (type_name, uuid) = parse_id(id).ok_or(ApiError::NotFound {
        entity: expected_type,
    })?;
    if type_name != expected_type {
        return Err(ApiError::validation(
            field,
            format!("expected an ID of a {expected_type}"),
        ));
    }
    Ok(uuid)
}

/// Splits a global ID into its type name and UUID, if it is well formed.
pub fn parse_id(id: &ID) -> Option<(String, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(id.as_str()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (type_name, uuid) = text.split_once(':')?;
    Some((type_name.to_owned(), Uuid::parse_str(uuid).ok()?))
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
        let global = encode_id("Organization", id);
        assert_eq!(decode_id("id", "Organization", &global).ok(), Some(id));
        let err = decode_id("id", "Member", &global).err().map(|e| e.code());
        assert_eq!(err, Some("VALIDATION"));
        let garbage = decode_id("id", "Organization", &ID("not base64!".into())).err();
        assert_eq!(garbage.map(|e| e.code()), Some("NOT_FOUND"));
    }
}
