use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{PUBLIC_KEY_LENGTH, VerifyingKey};

use crate::signature::verify_ed25519;

const PREFIX: &str = "whpk_";

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("a public key starts with `whpk_`")]
    MissingPrefix,
    #[error("the part after `whpk_` is not valid base64")]
    NotBase64,
    #[error("an ed25519 public key is 32 bytes, got {0}")]
    BadLength(usize),
    #[error("the bytes are not an ed25519 public key")]
    NotAKey,
}

/// An endpoint's ed25519 public key, `whpk_` + base64 of its 32 bytes: what a receiver of
/// `v1a` signatures verifies with. Public: shown in the API, safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    text: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self {
            text: format!("{PREFIX}{}", STANDARD.encode(key.as_bytes())),
            key,
        }
    }

    pub fn parse(text: &str) -> Result<Self, PublicKeyError> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or(PublicKeyError::MissingPrefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| PublicKeyError::NotBase64)?;
        let bytes: [u8; PUBLIC_KEY_LENGTH] = bytes[..]
            .try_into()
            .map_err(|_| PublicKeyError::BadLength(bytes.len()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::NotAKey)?;
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The key in its `whpk_…` form.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Whether a `webhook-signature` header holds a `v1a` signature by this key's secret.
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        verify_ed25519(&self.key, msg_id, timestamp, body, header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningScheme, SigningSecret};

    #[test]
    fn public_keys_parse_back() {
        let secret = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        let key = secret.public_key().unwrap();
        assert_eq!(PublicKey::parse(key.expose()).unwrap(), key);
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        assert_eq!(
            PublicKey::parse("whsk_AAAA"),
            Err(PublicKeyError::MissingPrefix)
        );
        assert_eq!(PublicKey::parse("whpk_!!"), Err(PublicKeyError::NotBase64));
        assert_eq!(
            PublicKey::parse(&format!("whpk_{}", STANDARD.encode([0u8; 31]))),
            Err(PublicKeyError::BadLength(31))
        );
    }
}
