//! The hub's ed25519 signing key, kept as a PKCS#8 PEM file (what `openssl genpkey -algorithm ed25519`
//! writes), so operators can create and inspect it with standard tools.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key file {0} does not exist; in production mode the hub never generates keys: \
         create it with `hub keygen --out {0}` (add `--secret` for the number-hash key) \
         and give every replica the same file"
    )]
    Missing(PathBuf),
    #[error("key file {path} is malformed (a PKCS#8 PEM ed25519 key, or base64 of 32 bytes)")]
    Malformed { path: PathBuf },
    #[error("signing key file {path} already exists; refusing to overwrite it")]
    AlreadyExists { path: PathBuf },
    #[error("cannot access signing key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system random generator failed: {0}")]
    Random(String),
}

/// The hub's token-signing key with its derived public half.
#[derive(Clone)]
pub struct SigningKey {
    pkcs8_der: Vec<u8>,
    public_key: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private half.
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the key; when `generate_if_missing`, creates it first (0600) if it does not exist.
    pub fn load(path: &Path, generate_if_missing: bool) -> Result<(Self, bool), KeyError> {
        let mut generated = false;
        if !path.exists() {
            if !generate_if_missing {
                return Err(KeyError::Missing(path.to_owned()));
            }
            generate_signing_key_file(path)?;
            generated = true;
        }
        let pem = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Malformed {
                path: path.to_owned(),
            })?;
        Ok((Self::from_dalek(&key)?, generated))
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey) -> Result<Self, KeyError> {
        let pkcs8_der = key
            .to_pkcs8_der()
            .map_err(|_| KeyError::Malformed {
                path: PathBuf::new(),
            })?
            .as_bytes()
            .to_vec();
        Ok(Self {
            pkcs8_der,
            public_key: key.verifying_key().to_bytes(),
        })
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// An ed25519 signature by this key (audit checkpoints).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(&self.pkcs8_der).map_err(|_| {
            KeyError::Malformed {
                path: PathBuf::new(),
            }
        })?;
        Ok(key.sign(message).to_bytes())
    }
}

/// Creates a new key file readable by its owner only; never overwrites an existing file.
pub fn generate_signing_key_file(path: &Path) -> Result<(), KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|err| KeyError::Random(err.to_string()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Malformed {
            path: path.to_owned(),
        })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| KeyError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    write_private_file(path, pem.as_bytes()).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => KeyError::Io {
            path: path.to_owned(),
            source,
        },
    })
}

/// Writes a new file with mode 0600 (created that way, never widened afterwards).
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Creates a new random 32-byte secret file (0600); never overwrites.
pub fn generate_secret_file(path: &Path) -> Result<(), KeyError> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    // Zeroized when dropped: this may be the master key.
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut_slice()).map_err(|err| KeyError::Random(err.to_string()))?;
    let text = zeroize::Zeroizing::new(format!("{}\n", STANDARD.encode(secret.as_slice())));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| KeyError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    write_private_file(path, text.as_bytes()).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => KeyError::Io {
            path: path.to_owned(),
            source,
        },
    })
}
