//! Keyset pagination (`first/after/last/before`) over any sort column, with the row id as tie-breaker,
//! and opaque cursors bound to their ordering. The data layer's: services page their queries here,
//! and the GraphQL edge turns a [`Page`] into a Relay connection.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ColumnType, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, Select,
    Value,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 100;

/// The page arguments of a connection field.
#[derive(Debug, Default, Clone)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// The value a page is sorted by, as stored in a cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortKey {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

impl From<SortKey> for Value {
    fn from(key: SortKey) -> Self {
        match key {
            SortKey::Text(text) => text.into(),
            SortKey::Int(int) => int.into(),
            SortKey::Time(time) => time.into(),
        }
    }
}

/// How a connection is ordered: a named sort column, its direction, and how to read the key off a row.
pub struct Ordering<E: EntityTrait> {
    /// Part of every cursor, so a cursor from one ordering is refused by another.
    pub name: &'static str,
    pub column: E::Column,
    pub descending: bool,
    pub key: fn(&E::Model) -> SortKey,
}

#[derive(Serialize, Deserialize)]
struct CursorData {
    order: String,
    key: SortKey,
    id: Uuid,
}

fn encode_cursor(order: &str, key: SortKey, id: Uuid) -> String {
    let data = CursorData {
        order: order.to_owned(),
        key,
        id,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap_or_default())
}

/// Decodes a cursor of the ordering named `order` over a column of type `column_type`. Cursors are
/// input: a hand-made one whose key has another type than the column (text against a number, say)
/// is refused here, before it reaches SQL as a type error.
fn decode_cursor(
    field: &'static str,
    order: &str,
    column_type: &ColumnType,
    cursor: &str,
) -> ApiResult<(SortKey, Uuid)> {
    let invalid = || ApiError::validation(field, "not a cursor of this connection and ordering");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let data: CursorData = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if data.order != order || !data.key.fits(column_type) {
        return Err(invalid());
    }
    Ok((data.key, data.id))
}

/// Longest text key a cursor may carry (sort columns hold names and SKUs of at most a few hundred).
const MAX_TEXT_KEY_CHARS: usize = 1_024;

impl SortKey {
    /// Whether this key can be compared with a column of `column_type` by every supported database:
    /// the same type, text without NUL (PostgreSQL refuses it), a time within years 1 to 9999.
    fn fits(&self, column_type: &ColumnType) -> bool {
        match self {
            SortKey::Text(text) => {
                matches!(
                    column_type,
                    ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_)
                ) && !text.contains('\0')
                    && text.chars().count() <= MAX_TEXT_KEY_CHARS
            }
            SortKey::Int(_) => matches!(
                column_type,
                ColumnType::BigInteger | ColumnType::Integer | ColumnType::SmallInteger
            ),
            SortKey::Time(time) => {
                matches!(
                    column_type,
                    ColumnType::TimestampWithTimeZone
                        | ColumnType::DateTime
                        | ColumnType::Timestamp
                ) && (1..=9999).contains(&chrono::Datelike::year(time))
            }
        }
    }
}

fn page_size(field: &'static str, size: Option<i32>) -> ApiResult<Option<u64>> {
    match size {
        None => Ok(None),
        Some(n) if (0..=MAX_PAGE_SIZE as i32).contains(&n) => Ok(Some(n as u64)),
        Some(_) => Err(ApiError::validation(
            field,
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// One page of rows with their cursors.
pub struct Page<M> {
    pub edges: Vec<(String, M)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    /// Counted only when the query selects `totalCount`.
    pub total_count: Option<u64>,
}

/// Fetches one page of `select` (already filtered by visibility and the caller's filters).
///
/// `hasPreviousPage` with `first` (and `hasNextPage` with `last`) say whether a cursor was given, which
/// the Relay specification allows; the other direction is exact (one extra row is read).
pub async fn paginate<E, C>(
    db: &C,
    select: Select<E>,
    id_column: E::Column,
    id_of: fn(&E::Model) -> Uuid,
    ordering: Ordering<E>,
    args: PageArgs,
    with_total: bool,
) -> ApiResult<Page<E::Model>>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Sync,
    C: ConnectionTrait,
{
    let first = page_size("first", args.first)?;
    let last = page_size("last", args.last)?;
    if first.is_some() && last.is_some() {
        return Err(ApiError::validation(
            "last",
            "give either first or last, not both",
        ));
    }
    let column_type = ordering.column.def().get_column_type().clone();
    let after = args
        .after
        .as_deref()
        .map(|c| decode_cursor("after", ordering.name, &column_type, c))
        .transpose()?;
    let before = args
        .before
        .as_deref()
        .map(|c| decode_cursor("before", ordering.name, &column_type, c))
        .transpose()?;
    let total_count = if with_total {
        Some(select.clone().count(db).await?)
    } else {
        None
    };

    let mut cursor = select.cursor_by((ordering.column, id_column));
    if ordering.descending {
        cursor.desc();
    }
    if let Some((key, id)) = after.clone() {
        cursor.after((Value::from(key), Value::from(id)));
    }
    if let Some((key, id)) = before.clone() {
        cursor.before((Value::from(key), Value::from(id)));
    }
    let backwards = last.is_some();
    let size = last.or(first).unwrap_or(DEFAULT_PAGE_SIZE);
    if backwards {
        cursor.last(size + 1);
    } else {
        cursor.first(size + 1);
    }
    let mut rows = cursor.all(db).await?;
    let more = rows.len() as u64 > size;
    if more {
        if backwards {
            rows.remove(0);
        } else {
            rows.truncate(size as usize);
        }
    }
    let (has_previous_page, has_next_page) = if backwards {
        (more, before.is_some())
    } else {
        (after.is_some(), more)
    };
    let edges = rows
        .into_iter()
        .map(|row| {
            (
                encode_cursor(ordering.name, (ordering.key)(&row), id_of(&row)),
                row,
            )
        })
        .collect();
    Ok(Page {
        edges,
        has_next_page,
        has_previous_page,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_ordering() {
        let id = Uuid::new_v4();
        let text = ColumnType::Text;
        let cursor = encode_cursor("name", SortKey::Text("a".into()), id);
        assert_eq!(
            decode_cursor("after", "name", &text, &cursor).ok(),
            Some((SortKey::Text("a".into()), id))
        );
        assert!(decode_cursor("after", "price", &text, &cursor).is_err());
        assert!(decode_cursor("after", "name", &text, "garbage").is_err());
    }

    #[test]
    fn cursor_keys_must_have_the_column_type() {
        let id = Uuid::new_v4();
        let forged = encode_cursor("price", SortKey::Text("1".into()), id);
        let err = decode_cursor("after", "price", &ColumnType::BigInteger, &forged).err();
        assert_eq!(err.map(|e| e.code()), Some("VALIDATION"));
        let genuine = encode_cursor("price", SortKey::Int(1), id);
        assert!(decode_cursor("after", "price", &ColumnType::BigInteger, &genuine).is_ok());
        let time = encode_cursor("createdAt", SortKey::Int(1), id);
        let column = ColumnType::TimestampWithTimeZone;
        assert!(decode_cursor("after", "createdAt", &column, &time).is_err());
        // Values no database could compare: NUL in text, a time past year 9999.
        let nul = encode_cursor("name", SortKey::Text("a\0b".into()), id);
        assert!(decode_cursor("after", "name", &ColumnType::Text, &nul).is_err());
        let far = DateTime::<Utc>::from_timestamp(300_000_000_000, 0).expect("time");
        let far = encode_cursor("createdAt", SortKey::Time(far), id);
        assert!(decode_cursor("after", "createdAt", &column, &far).is_err());
    }
}
