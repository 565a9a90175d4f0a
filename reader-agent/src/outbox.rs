//! The store-and-forward outbox: every tap is sealed here (and fsynced) before it is submitted, and
//! deleted only when the hub has given a final answer.
//!
//! One file per payment request, `<request uuid>.tap`, written atomically with mode 0600:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (1) |
//! | 12 | nonce (OS random) |
//! | rest | AES-256-GCM-SIV ciphertext of the tap (JSON) and its 16-byte tag |
//!
//! The key is derived from the device key (see [`crate::device::DeviceKey::outbox_key`]). The associated
//! data is `"ICH/agent-outbox/v1" || 0x00 || device id (16) || request id (16)`, the request id taken from
//! the file name: an entry renamed to another request, copied to another device, altered or truncated
//! fails to open. Such a file is moved to `outbox/rejected/` when the agent comes to submit it, and is
//! never submitted. A tap the hub refuses for good (its bytes can never be accepted) is moved to
//! `outbox/refused/` with the hub's code, for an operator to look at: a tap is never silently dropped.
//!
//! One process at a time writes a state directory (see [`crate::device::StateLock`]).

use std::path::{Path, PathBuf};

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{AgentError, device::create_private_dir};

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const AAD_DOMAIN: &[u8] = b"ICH/agent-outbox/v1\x00";
const EXTENSION: &str = "tap";

/// A tap waiting for the hub's final answer. Holds the card's token (a card number): never logged, and
/// on disk only sealed.
#[derive(Clone, Serialize, Deserialize)]
pub struct Tap {
    pub request_id: Uuid,
    /// The request's global ID, as `payWithOneTimeNumber` takes it.
    pub request: String,
    pub token: String,
    pub card_signature: String,
    pub idempotency_key: String,
    pub amount_minor: u64,
    pub currency: String,
    pub tapped_at: DateTime<Utc>,
    pub acceptance_deadline: DateTime<Utc>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("request_id", &self.request_id)
            .field("amount_minor", &self.amount_minor)
            .field("currency", &self.currency)
            .field("tapped_at", &self.tapped_at)
            .finish_non_exhaustive()
    }
}

/// What `reader-agent outbox` lists: a tap's public facts, or a file that does not open.
#[derive(Debug)]
pub enum Pending {
    Tap(Tap),
    Damaged(PathBuf),
}

pub struct Outbox {
    dir: PathBuf,
    device: Uuid,
    cipher: Aes256GcmSiv,
}

impl Outbox {
    /// Opens (creating, private) the outbox directory of `device`.
    pub fn open(dir: &Path, device: Uuid, key: &Zeroizing<[u8; 32]>) -> Result<Self, AgentError> {
        create_private_dir(dir)?;
        let cipher = Aes256GcmSiv::new_from_slice(key.as_slice())
            .map_err(|_| AgentError::Setup("the outbox key has the wrong length".into()))?;
        Ok(Self {
            dir: dir.to_owned(),
            device,
            cipher,
        })
    }

    fn path_of(&self, request: Uuid) -> PathBuf {
        self.dir.join(format!("{request}.{EXTENSION}"))
    }

    fn associated_data(&self, request: Uuid) -> Vec<u8> {
        let mut aad = AAD_DOMAIN.to_vec();
        aad.extend_from_slice(self.device.as_bytes());
        aad.extend_from_slice(request.as_bytes());
        aad
    }

    /// Seals `tap` to disk (atomic, fsynced). Returns only once the tap survives a crash. Never replaces
    /// the tap already waiting for the same request.
    pub fn store(&self, tap: &Tap) -> Result<(), AgentError> {
        if self.contains(tap.request_id) {
            return Err(AgentError::Setup(format!(
                "a tap for request {} is already waiting in the outbox",
                tap.request
            )));
        }
        let plaintext = Zeroizing::new(
            serde_json::to_vec(tap)
                .map_err(|err| AgentError::Setup(format!("cannot encode a tap: {err}")))?,
        );
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|err| AgentError::Setup(format!("no OS randomness: {err}")))?;
        let aad = self.associated_data(tap.request_id);
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| AgentError::Setup("cannot seal a tap".into()))?;
        let mut file = vec![FORMAT_VERSION];
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&ciphertext);
        let path = self.path_of(tap.request_id);
        card_protocol::write_private(&path, &file).map_err(|err| {
            AgentError::Setup(format!(
                "cannot write the outbox entry {}: {err}",
                path.display()
            ))
        })
    }

    pub fn contains(&self, request: Uuid) -> bool {
        self.path_of(request).exists()
    }

    /// Opens the entry of `request` to submit it; a damaged one is set aside and reported.
    pub fn load(&self, request: Uuid) -> Result<Option<Tap>, AgentError> {
        match self.read(request)? {
            None => Ok(None),
            Some(Pending::Tap(tap)) => Ok(Some(tap)),
            Some(Pending::Damaged(path)) => Err(self.set_aside(&path)),
        }
    }

    /// Reads the entry of `request` without changing anything.
    fn read(&self, request: Uuid) -> Result<Option<Pending>, AgentError> {
        let path = self.path_of(request);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(AgentError::Setup(format!(
                    "cannot read {}: {err}",
                    path.display()
                )));
            }
        };
        Ok(Some(match self.open_entry(request, &bytes) {
            Some(tap) => Pending::Tap(tap),
            None => Pending::Damaged(path),
        }))
    }

    fn open_entry(&self, request: Uuid, bytes: &[u8]) -> Option<Tap> {
        let (&version, rest) = bytes.split_first()?;
        if version != FORMAT_VERSION {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let aad = self.associated_data(request);
        let plaintext = Zeroizing::new(
            self.cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .ok()?,
        );
        let tap: Tap = serde_json::from_slice(&plaintext).ok()?;
        (tap.request_id == request).then_some(tap)
    }

    /// Moves a file that does not open to `rejected/`, so it is neither submitted nor retried.
    pub fn set_aside(&self, path: &Path) -> AgentError {
        let moved = self.move_to("rejected", path, None);
        let error = AgentError::OutboxDamaged(moved.unwrap_or_else(|| path.to_owned()));
        tracing::error!(%error, "outbox entry refused");
        error
    }

    /// Moves the entry of a tap the hub refused for good to `refused/`, named with the hub's code.
    pub fn refused(&self, request: Uuid, code: &str) {
        let path = self.path_of(request);
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if self.move_to("refused", &path, Some(&code)).is_none() {
            tracing::error!(path = %path.display(), "cannot move a refused tap to refused/");
        }
    }

    fn move_to(&self, folder: &str, path: &Path, suffix: Option<&str>) -> Option<PathBuf> {
        let target_dir = self.dir.join(folder);
        create_private_dir(&target_dir).ok()?;
        let mut name = path.file_name()?.to_os_string();
        if let Some(suffix) = suffix {
            name.push(format!(".{suffix}"));
        }
        let target = target_dir.join(name);
        std::fs::rename(path, &target).ok()?;
        Some(target)
    }

    /// Every entry, oldest tap first, then the files that do not open. Changes nothing.
    pub fn pending(&self) -> Result<Vec<Pending>, AgentError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|err| {
            AgentError::Setup(format!("cannot list {}: {err}", self.dir.display()))
        })?;
        let mut taps = Vec::new();
        let mut damaged = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue; // `rejected/`, or an atomic write's staging file
            }
            let Some(request) = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(|stem| Uuid::parse_str(stem).ok())
            else {
                damaged.push(path);
                continue;
            };
            match self.read(request)? {
                Some(Pending::Tap(tap)) => taps.push(tap),
                Some(Pending::Damaged(path)) => damaged.push(path),
                None => {} // submitted and deleted meanwhile
            }
        }
        taps.sort_by_key(|tap| tap.tapped_at);
        let mut pending: Vec<Pending> = taps.into_iter().map(Pending::Tap).collect();
        pending.extend(damaged.into_iter().map(Pending::Damaged));
        Ok(pending)
    }

    /// Files set aside (`rejected/`: did not open; `refused/`: the hub refused them for good), kept for
    /// an operator to look at, never submitted.
    pub fn set_aside_files(&self, folder: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(folder)) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        paths.sort();
        paths
    }

    /// Deletes the entry once the hub has answered for good.
    pub fn remove(&self, request: Uuid) -> Result<(), AgentError> {
        let path = self.path_of(request);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(AgentError::Setup(format!(
                "cannot delete {}: {err}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(request: Uuid) -> Tap {
        Tap {
            request_id: request,
            request: crate::ids::global_id(crate::ids::PAYMENT_REQUEST, request),
            token: "TOKEN-4000120000000006".into(),
            card_signature: "sig".into(),
            idempotency_key: "key".into(),
            amount_minor: 1000,
            currency: "EUR".into(),
            tapped_at: Utc::now(),
            acceptance_deadline: Utc::now(),
        }
    }

    fn outbox(dir: &Path, device: Uuid, key: u8) -> Outbox {
        Outbox::open(dir, device, &Zeroizing::new([key; 32])).expect("outbox")
    }

    #[test]
    fn a_sealed_tap_opens_only_for_its_device_and_request() {
        let dir = tempfile::tempdir().expect("dir");
        let device = Uuid::new_v4();
        let box_ = outbox(dir.path(), device, 1);
        let request = Uuid::new_v4();
        box_.store(&tap(request)).expect("stored");
        let bytes = std::fs::read(box_.path_of(request)).expect("file");
        assert!(
            !bytes.windows(16).any(|w| w == b"4000120000000006"),
            "no plaintext number on disk"
        );
        let opened = box_.load(request).expect("opens").expect("present");
        assert_eq!(opened.token, "TOKEN-4000120000000006");

        // Another device's key, or the same file under another request's name, does not open it.
        let other = Uuid::new_v4();
        std::fs::copy(box_.path_of(request), box_.path_of(other)).expect("copy");
        assert!(matches!(
            box_.load(other),
            Err(AgentError::OutboxDamaged(_))
        ));
        assert!(!box_.contains(other), "set aside");
        assert!(
            dir.path()
                .join("rejected")
                .join(format!("{other}.tap"))
                .exists()
        );
        let stranger = outbox(dir.path(), Uuid::new_v4(), 1);
        assert!(stranger.load(request).is_err());
    }

    #[test]
    fn tampered_and_truncated_entries_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let box_ = outbox(dir.path(), Uuid::new_v4(), 2);
        let (flipped, cut, kept) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for request in [flipped, cut, kept] {
            box_.store(&tap(request)).expect("stored");
        }
        let mut bytes = std::fs::read(box_.path_of(flipped)).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(box_.path_of(flipped), &bytes).expect("write");
        let bytes = std::fs::read(box_.path_of(cut)).expect("read");
        std::fs::write(box_.path_of(cut), &bytes[..bytes.len() - 5]).expect("write");

        let pending = box_.pending().expect("lists");
        assert_eq!(
            box_.pending().expect("lists").len(),
            3,
            "listing changes nothing"
        );
        let taps: Vec<Uuid> = pending
            .iter()
            .filter_map(|p| match p {
                Pending::Tap(tap) => Some(tap.request_id),
                Pending::Damaged(_) => None,
            })
            .collect();
        assert_eq!(taps, vec![kept]);
        assert_eq!(
            pending
                .iter()
                .filter(|p| matches!(p, Pending::Damaged(_)))
                .count(),
            2
        );
        for entry in pending {
            if let Pending::Damaged(path) = entry {
                box_.set_aside(&path);
            }
        }
        assert_eq!(box_.set_aside_files("rejected").len(), 2);
        box_.remove(kept).expect("removed");
        assert!(box_.pending().expect("lists").is_empty());
    }
}
