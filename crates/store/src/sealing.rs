//! Signing secrets at rest: sealed with AES-256-GCM under a key from configuration, bound to
//! their endpoint (its id is the associated data, so a sealed secret copied into another
//! endpoint's row does not open). Stored as `enc:v1:` + base64(nonce ‖ ciphertext).
//!
//! Without a key, secrets are stored as they are (the service warns at start-up). With a key, a
//! secret in plain text is refused: anyone who can write the database could have planted it to
//! forge webhooks. Secrets stored before a key was configured are sealed when the operator asks
//! for it (`HOOKSTREAM_SEAL_PLAIN_SECRETS`, one start): nothing in the database can ask for it,
//! so a planted secret is never sealed unless an operator turns the pass on.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use hookstream_model::ids::EndpointId;
use hookstream_signing::SigningSecret;

use crate::StoreError;

const SEALED: &str = "enc:v1:";
const NONCE_BYTES: usize = 12;

/// Seals and opens signing secrets. Cheap to clone.
#[derive(Clone, Default)]
pub struct SecretSealer {
    cipher: Option<Aes256Gcm>,
    /// Seal the secrets stored in plain text when a store opens (see the module docs).
    seal_plain_on_open: bool,
}

impl SecretSealer {
    /// No key: secrets are stored as they are.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// A key of 32 bytes, base64-encoded (`openssl rand -base64 32`).
    pub fn from_base64_key(key: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidLocation {
            location: "HOOKSTREAM_SECRET_KEY".into(),
            reason: reason.into(),
        };
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| invalid("not base64"))?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| invalid("must be 32 bytes (base64 of 32 random bytes)"))?;
        Ok(Self {
            cipher: Some(cipher),
            seal_plain_on_open: false,
        })
    }

    /// The same key, and stores opened with it seal the secrets stored in plain text.
    pub fn sealing_plain_secrets_on_open(self) -> Self {
        Self {
            seal_plain_on_open: true,
            ..self
        }
    }

    pub fn seals(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether a store opened with this sealer seals the secrets it holds in plain text.
    pub fn seals_plain_on_open(&self) -> bool {
        self.cipher.is_some() && self.seal_plain_on_open
    }

    /// The stored form of `secret` for `endpoint`.
    pub fn seal(&self, endpoint: EndpointId, secret: &SigningSecret) -> Result<String, StoreError> {
        let Some(cipher) = &self.cipher else {
            return Ok(secret.expose().to_owned());
        };
        let nonce = Nonce::generate();
        let aad = endpoint.to_string();
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Backend("sealing a signing secret failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{SEALED}{}", STANDARD.encode(bytes)))
    }

    /// The sealed form of a secret stored in plain text, for the sealing pass; `None`
    /// when it is sealed already (or there is no key).
    pub fn seal_stored(&self, endpoint: &str, stored: &str) -> Result<Option<String>, StoreError> {
        if self.cipher.is_none() || stored.starts_with(SEALED) {
            return Ok(None);
        }
        let id =
            EndpointId::parse(endpoint, "id").map_err(|e| StoreError::corrupt("endpoint id", e))?;
        let secret =
            SigningSecret::parse(stored).map_err(|e| StoreError::corrupt("endpoint secret", e))?;
        self.seal(id, &secret).map(Some)
    }

    /// The secret of `endpoint` from its stored form: sealed with a key, plain without one.
    pub fn open(&self, endpoint: &str, stored: &str) -> Result<SigningSecret, StoreError> {
        let corrupt = |reason: &str| StoreError::corrupt("endpoint secret", reason);
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            if self.cipher.is_some() {
                return Err(corrupt(
                    "stored in plain text although secrets are sealed (HOOKSTREAM_SECRET_KEY \
                     is set): refused, as it may have been planted; rotate the secret",
                ));
            }
            return SigningSecret::parse(stored)
                .map_err(|e| StoreError::corrupt("endpoint secret", e));
        };
        let cipher = self.cipher.as_ref().ok_or_else(|| {
            corrupt("the secret is sealed but no HOOKSTREAM_SECRET_KEY is configured")
        })?;
        let bytes = STANDARD.decode(sealed).map_err(|_| corrupt("not base64"))?;
        if bytes.len() <= NONCE_BYTES {
            return Err(corrupt("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| corrupt("bad nonce"))?;
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: endpoint.as_bytes(),
                },
            )
            .map_err(|_| {
                corrupt("does not open with HOOKSTREAM_SECRET_KEY (wrong key, or altered)")
            })?;
        let text = String::from_utf8(plain).map_err(|_| corrupt("not text"))?;
        SigningSecret::parse(&text).map_err(|e| StoreError::corrupt("endpoint secret", e))
    }
}

#[cfg(test)]
mod tests {
    use hookstream_signing::SigningScheme;

    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_endpoint() {
        let sealer = SecretSealer::from_base64_key(KEY).unwrap();
        let endpoint = EndpointId::generate();
        let ed25519 = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        let stored = sealer.seal(endpoint, &ed25519).unwrap();
        assert!(
            !stored.contains(&ed25519.expose()[5..]),
            "an ed25519 secret key is sealed too"
        );
        assert_eq!(
            sealer.open(&endpoint.to_string(), &stored).unwrap(),
            ed25519
        );
        let secret = SigningSecret::generate().unwrap();
        let stored = sealer.seal(endpoint, &secret).unwrap();
        assert!(stored.starts_with(SEALED));
        assert!(!stored.contains(secret.expose()));
        assert_ne!(
            stored,
            sealer.seal(endpoint, &secret).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open(&endpoint.to_string(), &stored).unwrap(), secret);

        let other_endpoint = EndpointId::generate().to_string();
        assert!(sealer.open(&other_endpoint, &stored).is_err());
        let other_key = SecretSealer::from_base64_key(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other_key.open(&endpoint.to_string(), &stored).is_err());
        assert!(
            SecretSealer::plaintext()
                .open(&endpoint.to_string(), &stored)
                .is_err()
        );
    }

    #[test]
    fn with_a_key_plain_secrets_are_refused_until_sealed_and_bad_keys_are_refused() {
        let secret = SigningSecret::generate().unwrap();
        let sealer = SecretSealer::from_base64_key(KEY).unwrap();
        let endpoint = EndpointId::generate().to_string();
        let refused = sealer.open(&endpoint, secret.expose()).unwrap_err();
        assert!(refused.to_string().contains("plain text"), "{refused}");
        let sealed = sealer
            .seal_stored(&endpoint, secret.expose())
            .unwrap()
            .unwrap();
        assert_eq!(sealer.open(&endpoint, &sealed).unwrap(), secret);
        assert_eq!(sealer.seal_stored(&endpoint, &sealed).unwrap(), None);
        assert_eq!(
            SecretSealer::plaintext()
                .open(&endpoint, secret.expose())
                .unwrap(),
            secret
        );
        assert_eq!(
            SecretSealer::plaintext()
                .seal(EndpointId::generate(), &secret)
                .unwrap(),
            secret.expose()
        );
        assert!(SecretSealer::from_base64_key("c2hvcnQ=").is_err());
        assert!(SecretSealer::from_base64_key("not base64!").is_err());
    }
}
