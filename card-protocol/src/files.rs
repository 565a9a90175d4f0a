//! Files that hold secret keys (card and issuer state): written atomically and privately, and the hex
//! encoding of ids inside them.

use std::{fs, io::Write, path::Path};

use crate::{ProtocolError, Result};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync), mode 0600: a
/// crash leaves either the old or the new file, never half of one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
