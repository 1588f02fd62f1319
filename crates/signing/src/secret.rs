use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SECRET_KEY_LENGTH, SigningKey};

use crate::PublicKey;

const HMAC_PREFIX: &str = "whsec_";
const ED25519_PREFIX: &str = "whsk_";
/// Accepted HMAC key lengths in bytes; generated keys use [`GENERATED_LEN`].
const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;
const GENERATED_LEN: usize = 32;
/// An ed25519 secret key as libsodium and NaCl write it: the 32-byte seed, then the public key.
const KEYPAIR_LEN: usize = 64;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with `whsec_` (HMAC-SHA256) or `whsk_` (ed25519)")]
    MissingPrefix,
    #[error("the part after the prefix is not valid base64")]
    NotBase64,
    #[error("the key must be 24 to 64 bytes, got {0}")]
    BadLength(usize),
    #[error("an ed25519 secret key is 32 bytes (the seed) or 64 (seed and public key), got {0}")]
    BadKeypairLength(usize),
    #[error("the public half of the ed25519 secret key does not belong to its seed")]
    MismatchedKeypair,
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// How an endpoint's webhooks are signed: the two schemes of Standard Webhooks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SigningScheme {
    /// `v1`: HMAC-SHA256 with a secret both sides hold (`whsec_`).
    #[default]
    HmacSha256,
    /// `v1a`: ed25519; the receiver verifies with the public key (`whpk_`) alone.
    Ed25519,
}

impl SigningScheme {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The scheme named `text` as the API spells it, if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hmac-sha256" => Some(Self::HmacSha256),
            "ed25519" => Some(Self::Ed25519),
            _ => None,
        }
    }
}

/// The key behind a secret.
#[derive(Clone)]
pub(crate) enum Key {
    Hmac(Vec<u8>),
    Ed25519(SigningKey),
}

/// An endpoint's signing secret: `whsec_` + base64 of 24–64 random bytes (HMAC-SHA256), or
/// `whsk_` + base64 of an ed25519 secret key.
///
/// `Debug` does not show it, so it cannot leak into logs by accident; [`SigningSecret::expose`]
/// is the one way to read it.
#[derive(Clone)]
pub struct SigningSecret {
    text: String,
    key: Key,
}

impl SigningSecret {
    /// A new HMAC-SHA256 secret from the operating system's random number generator.
    pub fn generate() -> Result<Self, SecretError> {
        Self::generate_for(SigningScheme::HmacSha256)
    }

    /// A new secret of `scheme` from the operating system's random number generator.
    pub fn generate_for(scheme: SigningScheme) -> Result<Self, SecretError> {
        match scheme {
            SigningScheme::HmacSha256 => {
                let mut key = vec![0u8; GENERATED_LEN];
                getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
                Ok(Self {
                    text: format!("{HMAC_PREFIX}{}", STANDARD.encode(&key)),
                    key: Key::Hmac(key),
                })
            }
            SigningScheme::Ed25519 => {
                let mut seed = [0u8; SECRET_KEY_LENGTH];
                getrandom::fill(&mut seed).map_err(|e| SecretError::Random(e.to_string()))?;
                let key = SigningKey::from_bytes(&seed);
                Ok(Self {
                    text: format!(
                        "{ED25519_PREFIX}{}",
                        STANDARD.encode(key.to_keypair_bytes())
                    ),
                    key: Key::Ed25519(key),
                })
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        if let Some(encoded) = text.strip_prefix(HMAC_PREFIX) {
            let key = decode(encoded)?;
            if !KEY_LEN.contains(&key.len()) {
                return Err(SecretError::BadLength(key.len()));
            }
            return Ok(Self {
                text: text.to_owned(),
                key: Key::Hmac(key),
            });
        }
        let encoded = text
            .strip_prefix(ED25519_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let bytes = decode(encoded)?;
        let key = match bytes.len() {
            SECRET_KEY_LENGTH => {
                let seed: [u8; SECRET_KEY_LENGTH] = bytes[..]
                    .try_into()
                    .map_err(|_| SecretError::BadKeypairLength(bytes.len()))?;
                SigningKey::from_bytes(&seed)
            }
            KEYPAIR_LEN => {
                let pair: [u8; KEYPAIR_LEN] = bytes[..]
                    .try_into()
                    .map_err(|_| SecretError::BadKeypairLength(bytes.len()))?;
                SigningKey::from_keypair_bytes(&pair).map_err(|_| SecretError::MismatchedKeypair)?
            }
            other => return Err(SecretError::BadKeypairLength(other)),
        };
        Ok(Self {
            text: text.to_owned(),
            key: Key::Ed25519(key),
        })
    }

    /// The secret in its `whsec_…` or `whsk_…` form, for storing (and, for HMAC, showing to the
    /// endpoint's owner).
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn scheme(&self) -> SigningScheme {
        match self.key {
            Key::Hmac(_) => SigningScheme::HmacSha256,
            Key::Ed25519(_) => SigningScheme::Ed25519,
        }
    }

    /// The public key receivers verify with, for an ed25519 secret.
    pub fn public_key(&self) -> Option<PublicKey> {
        match &self.key {
            Key::Hmac(_) => None,
            Key::Ed25519(key) => Some(PublicKey::from_verifying_key(key.verifying_key())),
        }
    }

    pub(crate) fn key(&self) -> &Key {
        &self.key
    }
}

fn decode(encoded: &str) -> Result<Vec<u8>, SecretError> {
    STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)
}

/// Two secrets are the same when they are written the same.
impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for SigningSecret {}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme() {
            SigningScheme::HmacSha256 => f.write_str("SigningSecret(whsec_…)"),
            SigningScheme::Ed25519 => f.write_str("SigningSecret(whsk_…)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_and_differ() {
        for scheme in [SigningScheme::HmacSha256, SigningScheme::Ed25519] {
            let a = SigningSecret::generate_for(scheme).unwrap();
            let b = SigningSecret::generate_for(scheme).unwrap();
            assert_eq!(a.scheme(), scheme);
            assert_eq!(SigningSecret::parse(a.expose()).unwrap(), a);
            assert_ne!(a, b);
        }
        let hmac = SigningSecret::generate().unwrap();
        assert!(hmac.expose().starts_with("whsec_"));
        assert!(matches!(hmac.key(), Key::Hmac(key) if key.len() == GENERATED_LEN));
        assert!(hmac.public_key().is_none());
        let ed25519 = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        assert!(ed25519.expose().starts_with("whsk_"));
        assert!(ed25519.public_key().unwrap().expose().starts_with("whpk_"));
    }

    #[test]
    fn an_ed25519_seed_alone_is_the_same_key_as_seed_and_public_key() {
        let pair = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        let bytes = STANDARD.decode(&pair.expose()[5..]).unwrap();
        let seed_only =
            SigningSecret::parse(&format!("whsk_{}", STANDARD.encode(&bytes[..32]))).unwrap();
        assert_eq!(seed_only.public_key(), pair.public_key());
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(SigningSecret::parse("abc"), Err(SecretError::MissingPrefix));
        assert_eq!(
            SigningSecret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        );
        let short = format!("whsec_{}", STANDARD.encode([1u8; 23]));
        assert_eq!(
            SigningSecret::parse(&short),
            Err(SecretError::BadLength(23))
        );
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        assert_eq!(SigningSecret::parse(&long), Err(SecretError::BadLength(65)));
        let odd = format!("whsk_{}", STANDARD.encode([1u8; 48]));
        assert_eq!(
            SigningSecret::parse(&odd),
            Err(SecretError::BadKeypairLength(48))
        );
        // A seed followed by a public key that is not its own.
        let mut mismatched = [1u8; 64];
        mismatched[32..].copy_from_slice(
            SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .as_bytes(),
        );
        assert_eq!(
            SigningSecret::parse(&format!("whsk_{}", STANDARD.encode(mismatched))),
            Err(SecretError::MismatchedKeypair)
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        for scheme in [SigningScheme::HmacSha256, SigningScheme::Ed25519] {
            let secret = SigningSecret::generate_for(scheme).unwrap();
            let shown = format!("{secret:?}");
            assert!(!shown.contains(&secret.expose()[6..]), "{shown}");
        }
    }

    #[test]
    fn schemes_round_trip_through_their_api_names() {
        for scheme in [SigningScheme::HmacSha256, SigningScheme::Ed25519] {
            assert_eq!(SigningScheme::parse(scheme.as_str()), Some(scheme));
        }
        assert_eq!(SigningScheme::parse("rsa"), None);
    }
}
