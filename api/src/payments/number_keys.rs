//! The number-hash key ring (`docs/payments.md`, "Single use").
//!
//! One-time numbers are stored only as HMAC-SHA-256 under a dedicated key with its key id. The key file
//! holds a ring, one key per line as `<key id> <base64 of 32 bytes>` (a bare base64 line is key 1, the
//! format `hub keygen --secret` writes). The highest id is the current key: it hashes what the hub
//! records. Older keys stay in the ring and are checked too, until every number they could cover is
//! past its not-after; the hub refuses to start without a key that still guards a live number.
//!
//! During a rolling rotation a replica with the older ring misses hashes under the new key, but the
//! number's card and sequence are UNIQUE as well, so the number still cannot be used twice.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use card_protocol::{
    IssuerId,
    number::{CardNumber, NumberHash, number_hash},
};
use chrono::{DateTime, Utc};
use entities::number_use;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::auth::KeyError;

/// The ring: the current key and the older ones, by key id. Never printed.
#[derive(Clone)]
pub struct NumberHashKeys {
    current_id: u32,
    current: [u8; 32],
    older: BTreeMap<u32, [u8; 32]>,
}

impl std::fmt::Debug for NumberHashKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberHashKeys")
            .field("current_id", &self.current_id)
            .field("older_ids", &self.older.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A number's hashes: under the current key (recorded) and under each older key (checked).
#[derive(Debug, Clone)]
pub struct NumberHashes {
    pub current: NumberHash,
    pub older: Vec<NumberHash>,
}

impl NumberHashes {
    pub fn all(&self) -> impl Iterator<Item = &NumberHash> {
        std::iter::once(&self.current).chain(&self.older)
    }
}

/// Why the ring cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    File(#[from] KeyError),
    #[error("number-hash key file {path}, line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error(
        "number-hash key {key_id} is missing from the key file, but numbers hashed under it stay valid \
         until {until}; keep the key in the file until then"
    )]
    StillNeeded { key_id: i32, until: String },
    #[error("checking the number-hash keys against the database failed: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl NumberHashKeys {
    /// Parses a ring file's text. Ids are 1 to 2^31 - 1 (they are stored as a database integer).
    pub fn parse(path: &Path, text: &str) -> Result<Self, KeyRingError> {
        let malformed = |line: usize, reason: &'static str| KeyRingError::Malformed {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut keys = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, encoded) = match line.split_once(char::is_whitespace) {
                Some((id, encoded)) => (
                    id.parse::<u32>()
                        .ok()
                        .filter(|id| (1..=i32::MAX as u32).contains(id))
                        .ok_or_else(|| {
                            malformed(line_number, "the key id must be 1 to 2147483647")
                        })?,
                    encoded.trim(),
                ),
                None => (1, line),
            };
            let secret = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
                .ok_or_else(|| malformed(line_number, "the key must be base64 of 32 bytes"))?;
            if keys.insert(id, secret).is_some() {
                return Err(malformed(line_number, "the key id appears twice"));
            }
        }
        let Some((current_id, current)) = keys.pop_last() else {
            return Err(malformed(0, "the file holds no key"));
        };
        Ok(Self {
            current_id,
            current,
            older: keys,
        })
    }

    /// Reads the ring; when missing, creates a one-key ring only if `generate_if_missing` (embedded
    /// mode). Returns whether it was generated.
    pub fn load(path: &Path, generate_if_missing: bool) -> Result<(Self, bool), KeyRingError> {
        let mut generated = false;
        if !path.exists() {
            if !generate_if_missing {
                return Err(KeyError::Missing(path.to_owned()).into());
            }
            crate::auth::generate_secret_file(path)?;
            generated = true;
        }
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok((Self::parse(path, &text)?, generated))
    }

    /// The id of the key that hashes what the hub records.
    pub fn current_id(&self) -> u32 {
        self.current_id
    }

    /// The number's hash under every key of the ring, the newest first.
    pub fn hashes(&self, issuer: &IssuerId, number: &CardNumber) -> NumberHashes {
        NumberHashes {
            current: number_hash(&self.current, self.current_id, issuer, number),
            older: self
                .older
                .iter()
                .rev()
                .map(|(id, secret)| number_hash(secret, *id, issuer, number))
                .collect(),
        }
    }

    /// Refuses a ring that lacks an older key still guarding live numbers: without it, a number used
    /// under that key could be used again (its card sequence would still stop it, but the design wants
    /// the hash checked). One index probe per missing id below the current one.
    pub async fn check_coverage(&self, db: &DatabaseConnection) -> Result<(), KeyRingError> {
        if self.current_id == 1 {
            // Nothing older than the first key: nothing to check.
            return Ok(());
        }
        let now = crate::db::database_now(db)
            .await
            .map_err(|err| sea_orm::DbErr::Custom(err.to_string()))?;
        for key_id in 1..self.current_id() {
            if self.older.contains_key(&key_id) {
                continue;
            }
            if let Some(until) = live_until(db, key_id as i32, now).await? {
                return Err(KeyRingError::StillNeeded {
                    key_id: key_id as i32,
                    until,
                });
            }
        }
        for key_id in self.older.keys() {
            match live_until(db, *key_id as i32, now).await? {
                Some(until) => tracing::info!(
                    key_id,
                    %until,
                    "an older number-hash key still guards used numbers; keep it until then"
                ),
                None => tracing::info!(
                    key_id,
                    "an older number-hash key guards no live number any more; it may leave the key file"
                ),
            }
        }
        Ok(())
    }
}

/// The latest not-after of a number used under `key_id` that is still live ("unknown" for rows
/// recorded before not-afters were kept), or None. One aggregate over the (key id, not-after) index.
async fn live_until<C: ConnectionTrait>(
    db: &C,
    key_id: i32,
    now: DateTime<Utc>,
) -> Result<Option<String>, sea_orm::DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Live {
        rows: i64,
        with_not_after: i64,
        latest: Option<DateTime<Utc>>,
    }
    let live = number_use::Entity::find()
        .select_only()
        .column_as(
            Expr::col(number_use::Column::NotAfter).count(),
            "with_not_after",
        )
        .column_as(Expr::cust("COUNT(*)"), "rows")
        .column_as(Expr::col(number_use::Column::NotAfter).max(), "latest")
        .filter(number_use::Column::HashKeyId.eq(key_id))
        .filter(
            Condition::any()
                .add(number_use::Column::NotAfter.gt(now))
                .add(number_use::Column::NotAfter.is_null()),
        )
        .into_model::<Live>()
        .one(db)
        .await?;
    Ok(match live {
        None => None,
        Some(live) if live.rows == 0 => None,
        Some(live) if live.with_not_after < live.rows => {
            Some("an unknown time (numbers used before not-afters were recorded)".to_owned())
        }
        Some(live) => live.latest.map(|latest| latest.to_rfc3339()),
    })
}

/// Appends a new key to the ring file (id one above the highest), rewriting the file atomically with
/// owner-only permissions. Returns the new key id.
pub fn rotate_file(path: &Path) -> Result<u32, KeyRingError> {
    let (ring, _) = NumberHashKeys::load(path, false)?;
    let new_id = ring.current_id() + 1;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|err| KeyError::Random(err.to_string()))?;
    let mut text = String::from(
        "# number-hash key ring: <key id> <base64 key>; the highest id hashes new numbers\n",
    );
    let ids_and_keys = ring
        .older
        .iter()
        .chain([(&ring.current_id, &ring.current), (&new_id, &secret)]);
    for (id, key) in ids_and_keys {
        text.push_str(&format!("{id} {}\n", STANDARD.encode(key)));
    }
    let staging = path.with_extension("rotating");
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let _ = fs::remove_file(&staging);
    crate::auth::keys::write_private_file(&staging, text.as_bytes()).map_err(io)?;
    fs::rename(&staging, path).map_err(io)?;
    Ok(new_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn a_bare_line_is_key_one() {
        let ring = NumberHashKeys::parse(Path::new("k"), &format!("{}\n", key(7)));
        assert_eq!(ring.map(|r| r.current_id()).ok(), Some(1));
    }

    #[test]
    fn the_highest_id_is_current_and_every_key_hashes() {
        let text = format!("# ring\n1 {}\n\n3 {}\n2 {}\n", key(1), key(3), key(2));
        let Ok(ring) = NumberHashKeys::parse(Path::new("k"), &text) else {
            panic!("the ring parses");
        };
        assert_eq!(ring.current_id(), 3);
        let Ok(number) = CardNumber::parse(b"4000000000000002") else {
            panic!("a Luhn-valid number");
        };
        let hashes = ring.hashes(&IssuerId::from_bytes([9; 16]), &number);
        assert_eq!(
            hashes.all().map(|h| h.key_id).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert_eq!(
            hashes.current,
            number_hash(&[3; 32], 3, &IssuerId::from_bytes([9; 16]), &number)
        );
        assert_eq!(
            hashes.older[1],
            number_hash(&[1; 32], 1, &IssuerId::from_bytes([9; 16]), &number)
        );
        assert_ne!(hashes.current.hash, hashes.older[0].hash);
    }

    #[test]
    fn malformed_rings_are_refused_with_the_line() {
        for (text, line) in [
            (String::new(), 0),
            ("# only a comment\n".to_owned(), 0),
            (format!("1 {}\n1 {}\n", key(1), key(2)), 2),
            (format!("0 {}\n", key(1)), 1),
            (format!("x {}\n", key(1)), 1),
            ("1 not-base64!\n".to_owned(), 1),
            (format!("1 {}\n", STANDARD.encode([1u8; 16])), 1),
        ] {
            match NumberHashKeys::parse(Path::new("k"), &text) {
                Err(KeyRingError::Malformed { line: at, .. }) => assert_eq!(at, line, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn rotation_appends_a_key_and_keeps_the_old_ones() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("temporary directory");
        };
        let path = dir.path().join("number-hash.key");
        assert!(crate::auth::generate_secret_file(&path).is_ok());
        let Ok((before, _)) = NumberHashKeys::load(&path, false) else {
            panic!("the generated ring loads");
        };
        assert_eq!(rotate_file(&path).ok(), Some(2));
        let Ok((after, _)) = NumberHashKeys::load(&path, false) else {
            panic!("the rotated ring loads");
        };
        assert_eq!(after.current_id(), 2);
        assert_eq!(after.older.get(&1), Some(&before.current));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .ok();
            assert_eq!(mode, Some(0o600));
        }
    }
}
