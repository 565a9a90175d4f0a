//! The records behind each caller, kept in this replica so that authentication costs no database
//! round trip on the hot path.
//!
//! What may be served from here, and for how long:
//! - an entry is the member (or device) row and its organization's row, as last read;
//! - it lives at most [`AccessCache::ttl`] (one second by default), whatever else happens;
//! - a change that can take access away (a member removed, a device revoked or changed) drops the entry
//!   on the replica that made it *before the mutation answers*, and on every other replica as soon as
//!   the bus delivers the announcement ([`crate::events::Bus::access_changed`]), typically within
//!   milliseconds. A lost announcement (Redis or the LISTEN connection down) is covered by the TTL, and
//!   each (re)connection of the listener empties the cache, since announcements may have been missed.
//!
//! So the window in which another replica may still accept a removed member or a revoked device is the
//! bus's latency, and never more than the TTL.
//!
//! Only rows that exist are cached: a device id is read from an unverified token's `kid`, and caching
//! misses would let anyone fill memory with made-up ids.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use entities::{device, member, organization};
use uuid::Uuid;

/// The default lifetime of an entry: the longest any replica serves a record it was not told about.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);
/// Beyond this many entries, expired ones are swept; if all are fresh, the cache starts over.
const MAX_ENTRIES: usize = 100_000;

/// Whose access a change concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKey {
    Member(Uuid),
    Device(Uuid),
}

impl AccessKey {
    /// The announcement's text on the bus: `member:<uuid>` or `device:<uuid>`.
    pub fn encode(self) -> String {
        match self {
            AccessKey::Member(id) => format!("member:{id}"),
            AccessKey::Device(id) => format!("device:{id}"),
        }
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (kind, id) = text.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "member" => Some(AccessKey::Member(id)),
            "device" => Some(AccessKey::Device(id)),
            _ => None,
        }
    }
}

/// The rows a caller was authenticated with. Resolvers that need them (`me`) take them from the
/// request instead of reading them again.
#[derive(Debug, Clone)]
pub enum Credential {
    Member {
        member: member::Model,
        organization: organization::Model,
    },
    Device {
        device: device::Model,
        organization: organization::Model,
    },
}

/// Where a reader stood before its SELECT (see [`AccessCache::insert`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket {
    generation: u64,
    started: Instant,
}

struct Entry {
    credential: Arc<Credential>,
    loaded_at: Instant,
}

/// One replica's cache of [`Credential`]s.
pub struct AccessCache {
    ttl: Duration,
    entries: Mutex<HashMap<AccessKey, Entry>>,
    /// Bumped by every invalidation. A reader notes it before its SELECT and stores the result only if
    /// it has not moved, so a row read before a change committed is never put back after the change
    /// dropped it.
    generation: AtomicU64,
}

impl AccessCache {
    /// A TTL of zero turns the cache off (every request reads the database).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The fresh entry for `key`, if any.
    pub fn get(&self, key: AccessKey) -> Option<Arc<Credential>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.lock();
        let entry = entries.get(&key)?;
        (entry.loaded_at.elapsed() < self.ttl).then(|| entry.credential.clone())
    }

    /// Taken before a reader reads the database; pass it to [`Self::insert`].
    pub fn begin_read(&self) -> ReadTicket {
        ReadTicket {
            generation: self.generation.load(Ordering::Acquire),
            started: Instant::now(),
        }
    }

    /// Stores what was read, unless an invalidation happened since the ticket was taken: then the
    /// row may predate a change, and `false` tells the reader to read again. The entry's age counts
    /// from the start of the read, so no row is served longer than the TTL after it was read.
    pub fn insert(&self, ticket: ReadTicket, key: AccessKey, credential: Arc<Credential>) -> bool {
        let mut entries = self.lock();
        // Checked under the lock that invalidations take, so none can slip in between.
        if self.generation.load(Ordering::Acquire) != ticket.generation {
            return false;
        }
        if self.ttl.is_zero() {
            return true;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.loaded_at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                credential,
                loaded_at: ticket.started,
            },
        );
        true
    }

    /// Drops `key`: its next request reads the database.
    pub fn invalidate(&self, key: AccessKey) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&key);
    }

    /// Drops everything (the bus may have missed announcements).
    pub fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Applies an announcement received from the bus; an unreadable one empties the cache.
    pub fn apply(&self, announcement: &str) {
        match AccessKey::decode(announcement) {
            Some(key) => self.invalidate(key),
            None => {
                tracing::warn!("unreadable access announcement; emptying the access cache");
                self.clear();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccessKey, Entry>> {
        // The map holds no invariant a panicking holder could break: recover it.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_junk_is_refused() {
        let id = Uuid::now_v7();
        for key in [AccessKey::Member(id), AccessKey::Device(id)] {
            assert_eq!(AccessKey::decode(&key.encode()), Some(key));
        }
        assert_eq!(AccessKey::decode("member:not-a-uuid"), None);
        assert_eq!(AccessKey::decode(&format!("organization:{id}")), None);
        assert_eq!(AccessKey::decode(""), None);
    }
}
