//! The keys a running hub seals and opens fields with: the data-key ring and the blind-index key, read
//! from the `encryption_key` table and unwrapped with the master key once, then kept in memory.
//!
//! Every replica refreshes its ring from the table (every few seconds, and at once when it meets a value
//! sealed under a key it does not know), so a data key rotated by `hub keys rotate-data` becomes every
//! replica's primary within the refresh interval, and values sealed by a replica that already knows it
//! open everywhere at first sight. After `hub keys rotate-master`, a replica still running with the old
//! master key keeps the keys it holds (its reads and writes go on) but cannot learn newer ones until it
//! is restarted with the new master key; it says so in its log.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use entities::encryption_key;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use zeroize::Zeroizing;

use super::{
    CryptoError, DataKey, FieldPlace, KeyId, KeyPurpose, KeyRing, MasterKey, blind_index,
    normalize_email,
};

/// Why the vault could not start or change its keys. Names keys by id and fingerprint only.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the master key given (fingerprint {given}) is not the one the data keys are wrapped with \
         (fingerprint {expected}); start the hub with the master key it was last given, or the one \
         `hub keys rotate-master` moved the keys to"
    )]
    WrongMasterKey { given: String, expected: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the key table cannot be read or written: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// How long a replica waits before it looks again for a key it did not find.
const UNKNOWN_KEY_RECHECK: Duration = Duration::from_millis(500);

/// Advisory lock key serializing changes of the key table (rotations) across processes.
pub const KEY_TABLE_LOCK: i64 = 0x4943_485f_4b45_5953; // "ICH_KEYS"

/// A ring snapshot that seals all fields of one row under the same key (its id goes in the row's
/// `key_id`), and opens them.
pub struct RowSealer {
    ring: Arc<KeyRing>,
}

impl RowSealer {
    pub fn key_id(&self) -> KeyId {
        self.ring.primary().0
    }

    pub fn seal(&self, place: FieldPlace, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        super::seal(&self.ring, place, plaintext)
    }
}

struct Inner {
    db: DatabaseConnection,
    master: MasterKey,
    ring: RwLock<Arc<KeyRing>>,
    blind: DataKey,
    /// One refresh at a time (others wait for it and then see its result), and when the last began.
    refreshing: tokio::sync::Mutex<Instant>,
    /// Said once per process: the table moved to another master key than ours.
    warned_master_moved: AtomicBool,
}

/// The hub's field-encryption keys (cheap to clone).
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault(master {})", self.inner.master.fingerprint())
    }
}

impl Vault {
    /// Reads and unwraps the keys, creating the first data key and the blind-index key on a database
    /// that has none (callers hold the migration lock, so replicas starting together agree). A master
    /// key other than the one the table names is refused before anything is read with it.
    pub async fn load(db: DatabaseConnection, master: MasterKey) -> Result<Self, VaultError> {
        // The master key is checked before anything is added under it, so a wrong key never leaves
        // a table wrapped by two masters.
        let existing = encryption_key::Entity::find().all(&db).await?;
        ensure_master(&existing, &master)?;
        for purpose in [KeyPurpose::Field, KeyPurpose::BlindIndex] {
            if !existing.iter().any(|row| row.purpose == purpose.as_str()) {
                insert_key(&db, &master, purpose, KeyId(1)).await?;
            }
        }
        let rows = encryption_key::Entity::find()
            .order_by_asc(encryption_key::Column::Id)
            .all(&db)
            .await?;
        ensure_master(&rows, &master)?;
        let mut field_keys = Vec::new();
        let mut blind = None;
        for row in &rows {
            let id = key_id(row)?;
            match purpose_of(row)? {
                KeyPurpose::Field => {
                    field_keys.push((id, master.unwrap_key(KeyPurpose::Field, id, &row.wrapped)?))
                }
                KeyPurpose::BlindIndex => {
                    blind = Some(master.unwrap_key(KeyPurpose::BlindIndex, id, &row.wrapped)?)
                }
            }
        }
        let blind = blind
            .ok_or_else(|| CryptoError::MasterKey("the key table has no blind-index key".into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                master,
                ring: RwLock::new(Arc::new(KeyRing::new(field_keys)?)),
                blind,
                refreshing: tokio::sync::Mutex::new(Instant::now()),
                warned_master_moved: AtomicBool::new(false),
            }),
        })
    }

    fn ring(&self) -> Arc<KeyRing> {
        // A poisoned lock only means a panic while swapping an Arc: the value inside is whole.
        self.inner
            .ring
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The primary data key's id and every id this replica holds.
    pub fn key_ids(&self) -> (KeyId, Vec<KeyId>) {
        let ring = self.ring();
        (ring.primary().0, ring.ids().collect())
    }

    /// The connection the keys are read from (for the status report).
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn master_fingerprint(&self) -> String {
        self.inner.master.fingerprint()
    }

    /// Seals the fields of one row under the current primary key.
    pub fn row_sealer(&self) -> RowSealer {
        RowSealer { ring: self.ring() }
    }

    /// Opens a sealed value; a value under a key this replica does not know yet makes it refresh its
    /// ring once (another replica may have rotated) before it answers UnknownKey.
    pub async fn open(
        &self,
        place: FieldPlace,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let met = Instant::now();
        match super::open(&self.ring(), place, sealed) {
            Err(CryptoError::UnknownKey { key_id, .. }) => {
                if let Err(err) = self.learn(key_id, met).await {
                    tracing::warn!(error = %err, %key_id, "cannot refresh the data keys");
                    // Not the value's fault: an error of ours, not DECRYPTION_FAILED.
                    return Err(CryptoError::MasterKey(
                        "the data keys cannot be read right now".into(),
                    ));
                }
                super::open(&self.ring(), place, sealed)
            }
            other => other,
        }
    }

    /// Opens a sealed UTF-8 text.
    pub async fn open_text(&self, place: FieldPlace, sealed: &[u8]) -> Result<String, CryptoError> {
        let mut bytes = self.open(place, sealed).await?;
        // The text leaves for the response anyway: move it out rather than copy it.
        String::from_utf8(std::mem::take(&mut *bytes)).map_err(|invalid| {
            // Not UTF-8 after all: wipe what was opened before refusing it.
            drop(Zeroizing::new(invalid.into_bytes()));
            CryptoError::Undecryptable {
                table: place.table,
                column: place.column,
            }
        })
    }

    /// The blind index of an email (normalized first: trimmed, case folded).
    pub fn email_index(&self, email: &str) -> Vec<u8> {
        blind_index(
            self.inner.blind.bytes(),
            "email",
            normalize_email(email).as_bytes(),
        )
        .to_vec()
    }

    /// A keyed digest (hex HMAC-SHA-256 under the blind-index key, in a domain of its own) of
    /// sensitive input, for fingerprints that must not be checkable against a guess.
    pub fn keyed_digest(&self, label: &str, message: &[u8]) -> String {
        let digest = blind_index(
            self.inner.blind.bytes(),
            &format!("digest/{label}"),
            message,
        );
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Learns data keys added since the ring was read (a rotation by another process).
    pub async fn refresh(&self) -> Result<(), VaultError> {
        self.refresh_older_than(Duration::ZERO).await
    }

    /// Refreshes unless the last refresh began less than `age` ago.
    async fn refresh_older_than(&self, age: Duration) -> Result<(), VaultError> {
        let mut last = self.inner.refreshing.lock().await;
        if age > Duration::ZERO && last.elapsed() < age {
            return Ok(());
        }
        *last = Instant::now();
        self.reload().await
    }

    /// Reads the key table for `wanted`, met in a value at `met`, unless a read that began after
    /// that already looked (readers meeting the same new key wait for one read, then all see it).
    ///
    /// A key is committed before any value sealed under it, so a read begun after the value was
    /// met finds the key if it exists. A newer id than any held (another replica rotated) is always
    /// looked up this way, or the first reads after a rotation would fail for up to the refresh
    /// interval; an older id that is missing (under another master key) is looked up at most once
    /// per interval, so such values cannot turn every read into a query of the key table.
    async fn learn(&self, wanted: KeyId, met: Instant) -> Result<(), VaultError> {
        let newer = self.ring().ids().all(|held| held < wanted);
        if !newer {
            return self.refresh_older_than(UNKNOWN_KEY_RECHECK).await;
        }
        let mut last = self.inner.refreshing.lock().await;
        if *last > met || self.ring().get(wanted).is_some() {
            return Ok(());
        }
        *last = Instant::now();
        self.reload().await
    }

    async fn reload(&self) -> Result<(), VaultError> {
        let rows = encryption_key::Entity::find()
            .filter(encryption_key::Column::Purpose.eq(KeyPurpose::Field.as_str()))
            .all(&self.inner.db)
            .await?;
        let current = self.ring();
        let known: Vec<KeyId> = current.ids().collect();
        let fingerprint = self.inner.master.fingerprint();
        let mut fresh = Vec::new();
        for row in &rows {
            let id = key_id(row)?;
            if known.contains(&id) {
                continue;
            }
            if row.master_fingerprint != fingerprint {
                if !self.inner.warned_master_moved.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        ours = %fingerprint,
                        table = %row.master_fingerprint,
                        "the data keys were moved to another master key: this replica keeps the keys \
                         it holds, and learns newer ones only when restarted with the new master key"
                    );
                }
                continue;
            }
            fresh.push((
                id,
                self.inner
                    .master
                    .unwrap_key(KeyPurpose::Field, id, &row.wrapped)?,
            ));
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let ids: Vec<KeyId> = fresh.iter().map(|(id, _)| *id).collect();
        let next = current.with_keys(fresh)?;
        tracing::info!(added = ?ids, primary = %next.primary().0, "data keys refreshed");
        *self
            .inner
            .ring
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Refreshes the ring every `interval` until the hub stops.
    pub fn spawn_refresh(&self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let vault = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(err) = vault.refresh().await {
                    tracing::warn!(error = %err, "cannot refresh the data keys");
                }
            }
        })
    }
}

fn key_id(row: &encryption_key::Model) -> Result<KeyId, CryptoError> {
    u32::try_from(row.id)
        .ok()
        .filter(|id| *id > 0)
        .map(KeyId)
        .ok_or_else(|| CryptoError::MasterKey(format!("the key table holds key id {}", row.id)))
}

/// Every key in `rows` is wrapped by `master`, or the hub was given another master key.
fn ensure_master(rows: &[encryption_key::Model], master: &MasterKey) -> Result<(), VaultError> {
    let given = master.fingerprint();
    match rows.iter().find(|row| row.master_fingerprint != given) {
        Some(other) => Err(VaultError::WrongMasterKey {
            given,
            expected: other.master_fingerprint.clone(),
        }),
        None => Ok(()),
    }
}

fn purpose_of(row: &encryption_key::Model) -> Result<KeyPurpose, CryptoError> {
    KeyPurpose::parse(&row.purpose).ok_or_else(|| {
        CryptoError::MasterKey(format!(
            "the key table holds a key of unknown purpose {:?}",
            row.purpose
        ))
    })
}

/// Generates a key, wraps it and inserts it; a key already there under that id is left alone.
async fn insert_key<C: ConnectionTrait>(
    db: &C,
    master: &MasterKey,
    purpose: KeyPurpose,
    id: KeyId,
) -> Result<(), VaultError> {
    let key = DataKey::generate()?;
    let row = encryption_key::ActiveModel {
        purpose: Set(purpose.as_str().to_owned()),
        id: Set(i32::try_from(id.0).map_err(|_| {
            CryptoError::MasterKey("no data key ids are left (2^31 rotations)".into())
        })?),
        wrapped: Set(master.wrap(purpose, id, &key)?),
        master_fingerprint: Set(master.fingerprint()),
        created_at: Set(Utc::now()),
    };
    encryption_key::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
    Ok(())
}

/// A write transaction that holds the key table's lock until it ends (an advisory lock on PostgreSQL;
/// SQLite's write transaction is the lock).
async fn lock_key_table(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, VaultError> {
    let locked = async {
        let txn = crate::db::begin_write(db).await?;
        crate::db::serialize_on(&txn, KEY_TABLE_LOCK).await?;
        Ok::<_, crate::error::ApiError>(txn)
    };
    locked
        .await
        .map_err(|err| CryptoError::MasterKey(format!("cannot lock the key table: {err}")).into())
}

/// `hub keys rotate-data`: a new data key becomes the primary (every replica picks it up within its
/// refresh interval; the re-encryption job then moves rows to it). Returns its id.
pub async fn rotate_data_key(
    db: &DatabaseConnection,
    master: &MasterKey,
) -> Result<KeyId, VaultError> {
    let txn = lock_key_table(db).await?;
    let rows = encryption_key::Entity::find().all(&txn).await?;
    if rows.is_empty() {
        return Err(CryptoError::MasterKey(
            "the key table is empty: start the hub once, it creates the first keys".into(),
        )
        .into());
    }
    ensure_master(&rows, master)?;
    let highest = rows
        .iter()
        .filter(|row| row.purpose == KeyPurpose::Field.as_str())
        .map(key_id)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(KeyId(0));
    let next = KeyId(
        highest
            .0
            .checked_add(1)
            .ok_or_else(|| CryptoError::MasterKey("no data key ids are left".into()))?,
    );
    insert_key(&txn, master, KeyPurpose::Field, next).await?;
    txn.commit().await?;
    Ok(next)
}

/// `hub keys rotate-master`: every wrapped key is unwrapped with `old` and wrapped again with `new`, in
/// one transaction; no field value changes. Returns how many keys were rewrapped.
pub async fn rotate_master_key(
    db: &DatabaseConnection,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, VaultError> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let txn = lock_key_table(db).await?;
    let rows = encryption_key::Entity::find().all(&txn).await?;
    ensure_master(&rows, old)?;
    let count = rows.len();
    for row in rows {
        let id = key_id(&row)?;
        let purpose = purpose_of(&row)?;
        let key = old.unwrap_key(purpose, id, &row.wrapped)?;
        let mut active = row.into_active_model();
        active.wrapped = Set(new.wrap(purpose, id, &key)?);
        active.master_fingerprint = Set(new.fingerprint());
        active.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(count)
}
