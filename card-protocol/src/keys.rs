//! Strict ed25519 public keys: canonical encodings of points that are not of small order.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::{ProtocolError, Result};

/// Parses a public key, refusing non-canonical encodings and weak (small-order) points, with which a
/// signature could be forged or made to verify for many messages.
pub fn parse_public_key(bytes: &[u8; 32]) -> Result<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes)
        .map_err(|_| ProtocolError::InvalidKey("not a curve point"))?;
    if key.to_bytes() != *bytes {
        return Err(ProtocolError::InvalidKey("non-canonical encoding"));
    }
    if key.is_weak() {
        return Err(ProtocolError::InvalidKey("small-order point"));
    }
    Ok(key)
}

/// Verifies `signature` over `domain || message` with `verify_strict`.
pub(crate) fn verify(
    key: &VerifyingKey,
    domain: &[u8],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<()> {
    let mut signed = Vec::with_capacity(domain.len() + message.len());
    signed.extend_from_slice(domain);
    signed.extend_from_slice(message);
    key.verify_strict(&signed, &Signature::from_bytes(signature))
        .map_err(|_| ProtocolError::BadSignature)
}

pub(crate) fn sign(key: &ed25519_dalek::SigningKey, domain: &[u8], message: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    let mut signed = Vec::with_capacity(domain.len() + message.len());
    signed.extend_from_slice(domain);
    signed.extend_from_slice(message);
    key.sign(&signed).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_non_canonical_keys_are_refused() {
        let good = ed25519_dalek::SigningKey::from_bytes(&[1; 32])
            .verifying_key()
            .to_bytes();
        assert!(parse_public_key(&good).is_ok());
        // The identity point (order 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            parse_public_key(&identity).err(),
            Some(ProtocolError::InvalidKey("small-order point"))
        );
        // y = p + 1 encodes the identity non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(parse_public_key(&non_canonical).is_err());
    }
}
