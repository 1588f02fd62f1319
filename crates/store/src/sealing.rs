//! Signing secrets at rest: sealed with AES-256-GCM under a key from configuration, bound to
//! their endpoint (its id is the associated data, so a sealed secret copied into another
//! endpoint's row does not open).
//!
//! **Keys and their ids.** A single key (`HOOKSTREAM_SECRET_KEY`) has no id and seals as
//! `enc:v1:` + base64(nonce ‖ ciphertext). A key ring (`HOOKSTREAM_SECRET_KEYS`, `id=key,…`)
//! seals with its first key as `enc:v2:<id>:` + base64(…) and opens with any of its keys, so a
//! key can be rotated: add the new key after the current one everywhere, then put it first
//! everywhere; the secrets sealed under older keys are re-sealed in the background
//! ([`SecretSealer::reseal_stored`]); once none is left, remove the old key. An `enc:v1:`
//! secret opens with whichever key of the ring sealed it (AES-GCM tells), and an id-less key
//! opens any `enc:v2:` secret it sealed, so services can move from one form to the other one
//! at a time.
//!
//! Without a key, secrets are stored as they are (the service warns at start-up). With a key, a
//! secret in plain text is refused: anyone who can write the database could have planted it to
//! forge webhooks. Secrets stored before a key was configured are sealed when the operator asks
//! for it (`HOOKSTREAM_SEAL_PLAIN_SECRETS`, one start): nothing in the database can ask for it,
//! so a planted secret is never sealed unless an operator turns the pass on.

use std::sync::Arc;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use hookstream_model::ids::EndpointId;
use hookstream_signing::SigningSecret;

use crate::StoreError;

const SEALED_V1: &str = "enc:v1:";
const SEALED_V2: &str = "enc:v2:";
const NONCE_BYTES: usize = 12;
/// Longest key id: it is written into every sealed secret.
const MAX_ID_LEN: usize = 32;
/// How the census names the single key, which has no id.
pub const UNNAMED: &str = "unnamed";

/// One sealing key; `id` is `None` for the single id-less key.
struct SealingKey {
    id: Option<String>,
    cipher: Aes256Gcm,
}

/// How a stored secret is sealed, as seen by this sealer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealState {
    /// Under the key that seals now (or stored in plain text with no key configured).
    Current,
    /// Under another key of the ring: re-sealed by the background pass.
    OlderKey,
    /// In plain text although a key is configured (refused when read).
    Plain,
    /// Under no key this sealer has, or altered (refused when read).
    Unopenable,
}

/// What a re-sealing pass ([`crate::Store::reseal_secrets`]) found and did, over the live
/// endpoints (a deleted endpoint's secret is never read again). Each endpoint's current and
/// previous secret count once each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealingCensus {
    /// Re-sealed under the sealing key by this pass.
    pub resealed: u64,
    /// After the pass: under the sealing key.
    pub current: u64,
    /// After the pass: still under an older key (changed while the pass ran, by a secret
    /// rotation or another replica's pass; the next pass looks again).
    pub older_key: u64,
    /// In plain text although a key is configured.
    pub plain: u64,
    /// Under no configured key, or altered.
    pub unopenable: u64,
    /// After the pass: the secrets each configured key opens, by key id ([`UNNAMED`] for the
    /// single key). Whatever this sealer seals with, a key with none here can be removed.
    pub by_key: std::collections::BTreeMap<String, u64>,
}

/// A secret a pass re-seals: its new stored form, and the key that opened the old one.
pub(crate) struct Reseal {
    pub new: String,
    pub from: String,
}

impl SealingCensus {
    /// One stored secret of a pass: counts it, logs one that no key opens, and returns it
    /// re-sealed when it is to be replaced (then [`Self::resealed`] counts it).
    pub(crate) fn survey(
        &mut self,
        sealer: &SecretSealer,
        endpoint: &str,
        column: &str,
        stored: &str,
    ) -> Option<Reseal> {
        let (state, key) = sealer.inspect(endpoint, stored);
        let refused = match (state, key) {
            (SealState::OlderKey, Some(from)) => match sealer.reseal_stored(endpoint, stored) {
                Ok(Some(new)) => return Some(Reseal { new, from }),
                Ok(None) => {
                    self.count(SealState::Current, Some(from));
                    return None;
                }
                Err(err) => err.to_string(),
            },
            (SealState::Plain, _) => "stored in plain text although a key is configured".to_owned(),
            (SealState::Current, key) => {
                self.count(SealState::Current, key);
                return None;
            }
            _ => "no configured key opens it".to_owned(),
        };
        tracing::warn!(endpoint, column, reason = %refused, "a stored secret does not open; its endpoint's deliveries wait (see HookstreamSecretsUnopenable)");
        self.count(
            if state == SealState::Plain {
                SealState::Plain
            } else {
                SealState::Unopenable
            },
            None,
        );
        None
    }

    /// A secret [`Self::survey`] re-sealed: `replaced` when the write found it as read (else
    /// it changed meanwhile, and the next pass looks again).
    pub(crate) fn resealed(&mut self, sealer: &SecretSealer, reseal: Reseal, replaced: bool) {
        if replaced {
            self.resealed += 1;
            let sealing = sealer.sealing_key_id().unwrap_or(UNNAMED).to_owned();
            self.count(SealState::Current, Some(sealing));
        } else {
            self.count(SealState::OlderKey, Some(reseal.from));
        }
    }

    fn count(&mut self, state: SealState, key: Option<String>) {
        *match state {
            SealState::Current => &mut self.current,
            SealState::OlderKey => &mut self.older_key,
            SealState::Plain => &mut self.plain,
            SealState::Unopenable => &mut self.unopenable,
        } += 1;
        if let Some(key) = key {
            *self.by_key.entry(key).or_default() += 1;
        }
    }
}

/// Seals and opens signing secrets. Cheap to clone.
#[derive(Clone, Default)]
pub struct SecretSealer {
    /// The first one seals; all of them open. Empty: no key, plain text.
    keys: Arc<Vec<SealingKey>>,
    /// Seal the secrets stored in plain text when a store opens (see the module docs).
    seal_plain_on_open: bool,
}

fn invalid(location: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidLocation {
        location: location.into(),
        reason: reason.into(),
    }
}

fn cipher_of(location: &str, key: &str) -> Result<Aes256Gcm, StoreError> {
    let bytes = STANDARD
        .decode(key.trim())
        .map_err(|_| invalid(location, "not base64"))?;
    Aes256Gcm::new_from_slice(&bytes)
        .map_err(|_| invalid(location, "must be 32 bytes (base64 of 32 random bytes)"))
}

impl SecretSealer {
    /// No key: secrets are stored as they are.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// A key of 32 bytes, base64-encoded (`openssl rand -base64 32`), without an id.
    pub fn from_base64_key(key: &str) -> Result<Self, StoreError> {
        let cipher = cipher_of("HOOKSTREAM_SECRET_KEY", key)?;
        Ok(Self {
            keys: Arc::new(vec![SealingKey { id: None, cipher }]),
            seal_plain_on_open: false,
        })
    }

    /// A key ring, `id=key,id=key,…` (keys as for [`Self::from_base64_key`]); the first key
    /// seals. Ids are 1 to 32 letters, digits, `.`, `_` or `-`, each once.
    pub fn from_key_ring(ring: &str) -> Result<Self, StoreError> {
        let mut keys: Vec<SealingKey> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        for (n, entry) in ring.split(',').map(str::trim).enumerate() {
            let location = format!("HOOKSTREAM_SECRET_KEYS (entry {})", n + 1);
            let (id, key) = entry
                .split_once('=')
                .ok_or_else(|| invalid(&location, "not `id=key`"))?;
            let id = id.trim();
            if !valid_id(id) {
                // Not shown: a key given without its id would be printed.
                return Err(invalid(
                    &location,
                    format!(
                        "not `id=key`, or the key id is not 1 to {MAX_ID_LEN} letters, digits, `.`, `_` or `-`"
                    ),
                ));
            }
            if keys.iter().any(|k| k.id.as_deref() == Some(id)) {
                return Err(invalid(
                    &location,
                    format!("the key id `{id}` is given twice"),
                ));
            }
            if texts.contains(&key.trim()) {
                return Err(invalid(
                    &location,
                    format!("the key of `{id}` is given twice, under another id"),
                ));
            }
            texts.push(key.trim());
            let cipher = cipher_of(&location, key)?;
            keys.push(SealingKey {
                id: Some(id.to_owned()),
                cipher,
            });
        }
        Ok(Self {
            keys: Arc::new(keys),
            seal_plain_on_open: false,
        })
    }

    /// The same keys, and stores opened with them seal the secrets stored in plain text.
    pub fn sealing_plain_secrets_on_open(self) -> Self {
        Self {
            seal_plain_on_open: true,
            ..self
        }
    }

    pub fn seals(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether a store opened with this sealer seals the secrets it holds in plain text.
    pub fn seals_plain_on_open(&self) -> bool {
        self.seals() && self.seal_plain_on_open
    }

    /// The id of the key that seals (`None` for an id-less key, or none).
    pub fn sealing_key_id(&self) -> Option<&str> {
        self.keys.first().and_then(|key| key.id.as_deref())
    }

    /// The stored form of `secret` for `endpoint`.
    pub fn seal(&self, endpoint: EndpointId, secret: &SigningSecret) -> Result<String, StoreError> {
        let Some(key) = self.keys.first() else {
            return Ok(secret.expose().to_owned());
        };
        let nonce = Nonce::generate();
        let aad = endpoint.to_string();
        let sealed = key
            .cipher
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
        let body = STANDARD.encode(bytes);
        Ok(match &key.id {
            Some(id) => format!("{SEALED_V2}{id}:{body}"),
            None => format!("{SEALED_V1}{body}"),
        })
    }

    /// The sealed form of a secret stored in plain text, for the sealing pass; `None`
    /// when it is sealed already (or there is no key).
    pub fn seal_stored(&self, endpoint: &str, stored: &str) -> Result<Option<String>, StoreError> {
        if !self.seals() || is_sealed(stored) {
            return Ok(None);
        }
        let id =
            EndpointId::parse(endpoint, "id").map_err(|e| StoreError::corrupt("endpoint id", e))?;
        let secret =
            SigningSecret::parse(stored).map_err(|e| StoreError::corrupt("endpoint secret", e))?;
        self.seal(id, &secret).map(Some)
    }

    /// How `stored` is sealed, as this sealer's keys see it.
    pub fn state_of(&self, endpoint: &str, stored: &str) -> SealState {
        self.inspect(endpoint, stored).0
    }

    /// How `stored` is sealed, and the key that opens it (its id, `unnamed` for the single
    /// key; `None` when none does).
    pub(crate) fn inspect(&self, endpoint: &str, stored: &str) -> (SealState, Option<String>) {
        if !is_sealed(stored) {
            let state = if self.seals() {
                SealState::Plain
            } else {
                SealState::Current
            };
            return (state, None);
        }
        let Ok((_, key)) = self.opening(endpoint, stored) else {
            return (SealState::Unopenable, None);
        };
        let label = key.id.clone().unwrap_or_else(|| UNNAMED.to_owned());
        let sealing = std::ptr::eq(key, &self.keys[0]);
        // Under the sealing key and naming it (the single key names none): nothing to do.
        // Under it but naming no key, or another one: re-sealed to name it.
        let names_it = key.id.is_none()
            || split_sealed(stored).is_some_and(|(named, _)| named == key.id.as_deref());
        let state = if sealing && names_it {
            SealState::Current
        } else {
            SealState::OlderKey
        };
        (state, Some(label))
    }

    /// The stored form under the sealing key of a secret sealed under an older one, for the
    /// background re-sealing pass; `None` when there is nothing to do (sealed under the
    /// sealing key already, plain text: see [`Self::seal_stored`]). A secret that does not
    /// open is an error.
    pub fn reseal_stored(
        &self,
        endpoint: &str,
        stored: &str,
    ) -> Result<Option<String>, StoreError> {
        match self.state_of(endpoint, stored) {
            SealState::Current | SealState::Plain => Ok(None),
            SealState::OlderKey | SealState::Unopenable => {
                let secret = self.open(endpoint, stored)?;
                let id = EndpointId::parse(endpoint, "id")
                    .map_err(|e| StoreError::corrupt("endpoint id", e))?;
                self.seal(id, &secret).map(Some)
            }
        }
    }

    /// The secret of `endpoint` from its stored form: sealed with a key, plain without one.
    pub fn open(&self, endpoint: &str, stored: &str) -> Result<SigningSecret, StoreError> {
        if !is_sealed(stored) {
            if self.seals() {
                return Err(StoreError::corrupt(
                    "endpoint secret",
                    "stored in plain text although secrets are sealed (a secret key is \
                     configured): refused, as it may have been planted; rotate the secret",
                ));
            }
            return SigningSecret::parse(stored)
                .map_err(|e| StoreError::corrupt("endpoint secret", e));
        }
        self.opening(endpoint, stored).map(|(secret, _)| secret)
    }

    /// Opens a sealed secret; also which key opened it. The key the stored form names is
    /// tried first, then the others: AES-GCM tells which key sealed it, so a key given
    /// another id by mistake still opens its secrets.
    fn opening(
        &self,
        endpoint: &str,
        stored: &str,
    ) -> Result<(SigningSecret, &SealingKey), StoreError> {
        let corrupt = |reason: String| StoreError::corrupt("endpoint secret", reason);
        if self.keys.is_empty() {
            return Err(corrupt(
                "the secret is sealed but no secret key is configured".into(),
            ));
        }
        let (named, body) = split_sealed(stored).ok_or_else(|| corrupt("no key id".into()))?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| corrupt("not base64".into()))?;
        if bytes.len() <= NONCE_BYTES {
            return Err(corrupt("too short".into()));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| corrupt("bad nonce".into()))?;
        let is_named = |key: &SealingKey| named.is_some() && key.id.as_deref() == named;
        let candidates = self
            .keys
            .iter()
            .filter(|key| is_named(key))
            .chain(self.keys.iter().filter(|key| !is_named(key)));
        for key in candidates {
            let payload = Payload {
                msg: ciphertext,
                aad: endpoint.as_bytes(),
            };
            if let Ok(plain) = key.cipher.decrypt(&nonce, payload) {
                let text = String::from_utf8(plain).map_err(|_| corrupt("not text".into()))?;
                let secret = SigningSecret::parse(&text)
                    .map_err(|e| StoreError::corrupt("endpoint secret", e))?;
                return Ok((secret, key));
            }
        }
        match named {
            Some(id) if !self.keys.iter().any(|key| key.id.as_deref() == Some(id)) => {
                Err(corrupt(format!(
                    "sealed under the key `{}`, which is not configured (add it to \
                     HOOKSTREAM_SECRET_KEYS until the secrets are re-sealed)",
                    shown_id(id)
                )))
            }
            _ => Err(corrupt(
                "does not open with the configured secret keys (wrong key, or altered)".into(),
            )),
        }
    }
}

/// The key id a sealed form names (`None` for `enc:v1:`) and its base64 body; `None` for a
/// form that is not sealed or names no id.
fn split_sealed(stored: &str) -> Option<(Option<&str>, &str)> {
    if let Some(body) = stored.strip_prefix(SEALED_V1) {
        return Some((None, body));
    }
    let (id, body) = stored.strip_prefix(SEALED_V2)?.split_once(':')?;
    Some((Some(id), body))
}

/// A key id read from the store, fit for a message: a well-formed id as it is, anything else
/// (a row altered, or too long to show) not at all.
fn shown_id(id: &str) -> &str {
    if valid_id(id) { id } else { "(malformed id)" }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_V1) || stored.starts_with(SEALED_V2)
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
        assert!(stored.starts_with(SEALED_V1));
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

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn a_key_ring_seals_with_its_first_key_and_opens_with_any() {
        let endpoint = EndpointId::generate();
        let id = endpoint.to_string();
        let secret = SigningSecret::generate().unwrap();
        let old = SecretSealer::from_key_ring(&format!("2026-06={}", key(1))).unwrap();
        assert_eq!(old.sealing_key_id(), Some("2026-06"));
        let under_old = old.seal(endpoint, &secret).unwrap();
        assert!(under_old.starts_with("enc:v2:2026-06:"), "{under_old}");
        assert_eq!(old.state_of(&id, &under_old), SealState::Current);
        assert_eq!(old.reseal_stored(&id, &under_old).unwrap(), None);

        // Step one of a rotation: the new key is added after the current one.
        let both_old_first =
            SecretSealer::from_key_ring(&format!("2026-06={}, 2026-12={}", key(1), key(2)))
                .unwrap();
        assert_eq!(both_old_first.open(&id, &under_old).unwrap(), secret);
        // Step two: the new key seals; secrets under the old one are re-sealed.
        let both =
            SecretSealer::from_key_ring(&format!("2026-12={},2026-06={}", key(2), key(1))).unwrap();
        assert_eq!(both.open(&id, &under_old).unwrap(), secret);
        assert_eq!(both.state_of(&id, &under_old), SealState::OlderKey);
        let resealed = both.reseal_stored(&id, &under_old).unwrap().unwrap();
        assert!(resealed.starts_with("enc:v2:2026-12:"), "{resealed}");
        assert_eq!(both.state_of(&id, &resealed), SealState::Current);
        assert_eq!(both_old_first.open(&id, &resealed).unwrap(), secret);
        // Step three: the old key is removed; what was re-sealed opens, what was not does not
        // and says which key it needs.
        let new = SecretSealer::from_key_ring(&format!("2026-12={}", key(2))).unwrap();
        assert_eq!(new.open(&id, &resealed).unwrap(), secret);
        let refused = new.open(&id, &under_old).unwrap_err().to_string();
        assert!(refused.contains("`2026-06`"), "{refused}");
        assert_eq!(new.state_of(&id, &under_old), SealState::Unopenable);
        assert!(new.reseal_stored(&id, &under_old).is_err());
        assert_eq!(new.state_of(&id, secret.expose()), SealState::Plain);
        assert_eq!(new.reseal_stored(&id, secret.expose()).unwrap(), None);
        // A key given another id by mistake still opens what it sealed (AES-GCM tells), and
        // the secret is re-sealed to name the sealing key.
        let renamed = SecretSealer::from_key_ring(&format!("typo={}", key(2))).unwrap();
        assert_eq!(renamed.open(&id, &resealed).unwrap(), secret);
        assert_eq!(renamed.state_of(&id, &resealed), SealState::OlderKey);
        let altered_id = resealed.replacen("2026-12", &"x".repeat(500), 1);
        let refused = old.open(&id, &altered_id).unwrap_err().to_string();
        assert!(refused.contains("(malformed id)"), "{refused}");
        assert_eq!(
            new.open(&id, &resealed.replacen("2026-12", "gone", 1))
                .unwrap(),
            secret
        );
        // A secret under a key of the same id but another key (or altered) does not open.
        let impostor = SecretSealer::from_key_ring(&format!("2026-12={}", key(3))).unwrap();
        assert!(impostor.open(&id, &resealed).is_err());
        assert_eq!(impostor.state_of(&id, &resealed), SealState::Unopenable);
    }

    #[test]
    fn the_single_key_and_a_ring_holding_it_open_each_others_secrets() {
        let endpoint = EndpointId::generate();
        let id = endpoint.to_string();
        let secret = SigningSecret::generate().unwrap();
        let single = SecretSealer::from_base64_key(&key(1)).unwrap();
        assert_eq!(single.sealing_key_id(), None);
        let v1 = single.seal(endpoint, &secret).unwrap();
        assert!(v1.starts_with("enc:v1:"));
        // A ring that holds the single key opens its secrets, and re-seals them with an id.
        let ring = SecretSealer::from_key_ring(&format!("new={},old={}", key(2), key(1))).unwrap();
        assert_eq!(ring.open(&id, &v1).unwrap(), secret);
        assert_eq!(ring.state_of(&id, &v1), SealState::OlderKey);
        let same_key = SecretSealer::from_key_ring(&format!("old={}", key(1))).unwrap();
        assert_eq!(
            same_key.state_of(&id, &v1),
            SealState::OlderKey,
            "re-sealed to carry its key id"
        );
        let v2 = same_key.reseal_stored(&id, &v1).unwrap().unwrap();
        // A service still on the single key opens what a ring sealed with that key.
        assert_eq!(single.open(&id, &v2).unwrap(), secret);
        assert_eq!(single.state_of(&id, &v2), SealState::Current);
        assert_eq!(single.state_of(&id, &v1), SealState::Current);
        let under_new = ring.seal(endpoint, &secret).unwrap();
        assert!(single.open(&id, &under_new).is_err());
    }

    #[test]
    fn a_key_ring_that_does_not_parse_is_refused_naming_the_entry() {
        let refused = |ring: &str| {
            SecretSealer::from_key_ring(ring)
                .err()
                .unwrap_or_else(|| panic!("{ring} was accepted"))
                .to_string()
        };
        let no_id = refused(&key(1));
        assert!(no_id.contains("entry 1"), "{no_id}");
        assert!(
            !no_id.contains(&key(1)[..20]),
            "a key given without its id is not printed: {no_id}"
        );
        let twice = refused(&format!("a={},a={}", key(1), key(2)));
        assert!(
            twice.contains("entry 2") && twice.contains("twice"),
            "{twice}"
        );
        let same_key = refused(&format!("a={},b={}", key(1), key(1)));
        assert!(same_key.contains("twice"), "{same_key}");
        let bad_id = refused(&format!("a b={}", key(1)));
        assert!(bad_id.contains("letters, digits"), "{bad_id}");
        let long_id = refused(&format!("{}={}", "k".repeat(33), key(1)));
        assert!(long_id.contains("1 to 32"), "{long_id}");
        let short = refused("a=c2hvcnQ=");
        assert!(short.contains("32 bytes"), "{short}");
        assert!(refused("").contains("entry 1"));
        assert!(refused(&format!("a={},", key(1))).contains("entry 2"));
    }
}
