use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const PREFIX: &str = "whsec_";
/// Accepted key lengths in bytes; generated keys use [`GENERATED_LEN`].
const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;
const GENERATED_LEN: usize = 32;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with `whsec_`")]
    MissingPrefix,
    #[error("the part after `whsec_` is not valid base64")]
    NotBase64,
    #[error("the key must be 24 to 64 bytes, got {0}")]
    BadLength(usize),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// An endpoint's signing secret: `whsec_` + base64 of 24–64 random bytes.
///
/// `Debug` does not show it, so it cannot leak into logs by accident; [`SigningSecret::expose`]
/// is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: String,
    key: Vec<u8>,
}

impl SigningSecret {
    /// A new secret from the operating system's random number generator.
    pub fn generate() -> Result<Self, SecretError> {
        let mut key = vec![0u8; GENERATED_LEN];
        getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Self {
            text: format!("{PREFIX}{}", STANDARD.encode(&key)),
            key,
        })
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !KEY_LEN.contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The secret in its `whsec_…` form, for showing to the endpoint's owner or storing.
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(whsec_…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_and_differ() {
        let a = SigningSecret::generate().unwrap();
        let b = SigningSecret::generate().unwrap();
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(a.expose()).unwrap(), a);
        assert_ne!(a, b);
        assert_eq!(a.key().len(), GENERATED_LEN);
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
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let secret = SigningSecret::generate().unwrap();
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
    }
}
