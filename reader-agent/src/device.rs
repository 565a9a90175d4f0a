//! The device's identity: its ed25519 key file, the short-lived tokens it signs for itself, and the key
//! that seals its outbox.
//!
//! The key file is PKCS#8 PEM, mode 0600, created once by `reader-agent init`; only its public half ever
//! leaves the tablet (an ADMIN registers it with `registerDevice`). Tokens follow the hub's device-token
//! rules (`device-token` crate) and are renewed well before they expire.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::AgentError;

/// What `init` writes, and what every other command reads.
pub struct DeviceKey {
    key: SigningKey,
}

impl DeviceKey {
    /// Creates a new key at `path`; refuses to replace an existing one (a registered device would lose
    /// its identity, and its sealed outbox with it).
    pub fn create(path: &Path) -> Result<Self, AgentError> {
        if path.exists() {
            return Err(AgentError::Setup(format!(
                "{} already exists: a device keeps its key (delete it only to re-register the device)",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice())
            .map_err(|err| AgentError::Setup(format!("no OS randomness: {err}")))?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|err| AgentError::Setup(format!("cannot encode the key: {err}")))?;
        card_protocol::write_private(path, pem.as_bytes())
            .map_err(|err| AgentError::Setup(format!("cannot write {}: {err}", path.display())))?;
        Ok(Self { key })
    }

    /// Reads the key; refuses a file that others may read (a copied key impersonates the till).
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let unreadable = |reason: String| {
            AgentError::Setup(format!(
                "cannot use the device key {}: {reason} (create one with `reader-agent init`)",
                path.display()
            ))
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|err| unreadable(err.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(unreadable(format!(
                    "its mode is {:o}; it must be readable by its owner only (chmod 600)",
                    mode & 0o777
                )));
            }
        }
        let pem =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?);
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| unreadable("not a PKCS#8 ed25519 private key".into()))?;
        Ok(Self { key })
    }

    /// The public key as `registerDevice` takes it (standard base64 of 32 bytes).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// The key that seals this device's outbox: derived from the device key (HKDF-SHA-256), so a copied
    /// outbox is useless without the key file.
    pub fn outbox_key(&self) -> Zeroizing<[u8; 32]> {
        let seed = Zeroizing::new(self.key.to_bytes());
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"ICH/agent-outbox/v1"), seed.as_slice());
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA-256's limit of 255 blocks: expand cannot fail.
        hkdf.expand(b"outbox sealing key", key.as_mut_slice())
            .expect("32 bytes is a valid HKDF output length");
        key
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// Creates a directory (and its parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), AgentError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|err| AgentError::Setup(format!("cannot create {}: {err}", dir.display())))
}

/// Where the agent keeps its state: `device.key`, `device.id`, `agent.lock` and `outbox/`.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn key_path(&self) -> PathBuf {
        self.0.join("device.key")
    }
    pub fn outbox_path(&self) -> PathBuf {
        self.0.join("outbox")
    }

    /// The device this directory was first used for, if any.
    pub fn recorded_device(&self) -> Option<Uuid> {
        std::fs::read_to_string(self.0.join("device.id"))
            .ok()
            .and_then(|text| Uuid::parse_str(text.trim()).ok())
    }

    /// Binds the state directory to `device` the first time it is used, and refuses another device
    /// afterwards: the outbox is sealed for one device, and a mistyped `--device` must not make every
    /// waiting tap look damaged.
    pub fn check_device(&self, device: Uuid) -> Result<(), AgentError> {
        let path = self.0.join("device.id");
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim() == device.to_string() => Ok(()),
            Ok(text) => Err(AgentError::Setup(format!(
                "this state directory belongs to device {}, not {device}: check --device (or use another --state-dir)",
                text.trim()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                card_protocol::write_private(&path, device.to_string().as_bytes()).map_err(|err| {
                    AgentError::Setup(format!("cannot write {}: {err}", path.display()))
                })
            }
            Err(err) => Err(AgentError::Setup(format!(
                "cannot read {}: {err}",
                path.display()
            ))),
        }
    }

    /// Takes the directory for this process: one agent (`run` or `pay`) at a time writes an outbox.
    pub fn lock(&self) -> Result<StateLock, AgentError> {
        let path = self.0.join("agent.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| AgentError::Setup(format!("cannot open {}: {err}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Setup(format!(
                "another reader-agent is using {} (one process per state directory)",
                self.0.display()
            ))),
            Err(std::fs::TryLockError::Error(err)) => Err(AgentError::Setup(format!(
                "cannot lock {}: {err}",
                path.display()
            ))),
        }
    }
}

/// Held while a process uses a state directory; the OS releases it when the process ends, however.
pub struct StateLock {
    _file: std::fs::File,
}

/// Tokens the device signs for itself, reused until a fifth of their life is left.
pub struct TokenSource {
    device: Uuid,
    key: DeviceKey,
    audience: String,
    lifetime: Duration,
    current: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    /// Refuses a lifetime the hub would refuse (over 300 s), or one too short to renew in time.
    pub fn new(
        device: Uuid,
        key: DeviceKey,
        audience: String,
        lifetime: Duration,
    ) -> Result<Self, AgentError> {
        let allowed = 30..=device_token::MAX_DEVICE_TOKEN_LIFETIME_SECS as u64;
        if !allowed.contains(&lifetime.as_secs()) {
            return Err(AgentError::Setup(format!(
                "--token-lifetime must be between 30 s and {} s",
                device_token::MAX_DEVICE_TOKEN_LIFETIME_SECS
            )));
        }
        Ok(Self {
            device,
            key,
            audience,
            lifetime,
            current: Mutex::new(None),
        })
    }

    pub fn device(&self) -> Uuid {
        self.device
    }

    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// How long a token is used before a fresh one is signed (a WebSocket reconnects at that point too).
    pub fn renew_after(&self) -> Duration {
        self.lifetime.mul_f32(0.8)
    }

    /// A token with at least a fifth of its lifetime left.
    pub fn token(&self) -> Result<String, AgentError> {
        {
            let current = self
                .current
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((token, signed_at)) = current.as_ref()
                && signed_at.elapsed() < self.renew_after()
            {
                return Ok(token.clone());
            }
        }
        self.fresh_token()
    }

    /// A token signed now (a WebSocket session starts with one, and renews at [`Self::renew_after`]).
    pub fn fresh_token(&self) -> Result<String, AgentError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let token = device_token::sign(
            self.device,
            self.key.signing_key(),
            &self.audience,
            self.lifetime.as_secs() as i64,
        )
        .map_err(|err| AgentError::Setup(format!("cannot sign a device token: {err}")))?;
        *current = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_private_key_that_loads_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state/device.key");
        let created = DeviceKey::create(&path).expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = DeviceKey::load(&path).expect("loads");
        assert_eq!(loaded.public_key_base64(), created.public_key_base64());
        assert_eq!(*loaded.outbox_key(), *created.outbox_key());
        assert!(DeviceKey::create(&path).is_err(), "an existing key is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let refused = DeviceKey::load(&path).err().expect("refused");
            assert!(refused.to_string().contains("chmod 600"), "{refused}");
        }
    }

    #[test]
    fn tokens_verify_with_the_public_key_and_are_reused_until_renewal() {
        let dir = tempfile::tempdir().expect("dir");
        let key = DeviceKey::create(&dir.path().join("k")).expect("key");
        let public = STANDARD.decode(key.public_key_base64()).expect("b64");
        let device = Uuid::new_v4();
        let tokens = TokenSource::new(device, key, "hub".into(), Duration::from_secs(120))
            .expect("a valid lifetime");
        let first = tokens.token().expect("token");
        assert_eq!(tokens.token().expect("token"), first, "reused");
        let claims = device_token::verify(&first, device, &public, "hub").expect("verifies");
        assert_eq!(claims.exp - claims.iat, 120);
    }
}
