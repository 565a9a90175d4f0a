//! Files that hold secret keys (card and issuer state): written atomically and privately (the `files`
//! feature), and the hex encoding of ids inside them.

use crate::{ProtocolError, Result};

/// Why a state file could not be loaded or saved: the file system (with its cause), or the content.
#[cfg(feature = "files")]
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid state file {}: {reason}", path.display())]
    Content {
        path: std::path::PathBuf,
        #[source]
        reason: ProtocolError,
    },
}

#[cfg(feature = "files")]
impl FileError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn content(path: &std::path::Path, reason: ProtocolError) -> Self {
        Self::Content {
            path: path.to_owned(),
            reason,
        }
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync), mode 0600: a
/// crash leaves either the old or the new file, never half of one.
#[cfg(feature = "files")]
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{fs, io::Write};
    let staging = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&staging)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&staging, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub(crate) fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N]> {
    let malformed = || ProtocolError::Malformed(what);
    if text.len() != N * 2 {
        return Err(malformed());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(i * 2..i * 2 + 2).ok_or_else(malformed)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
    }
    Ok(out)
}
