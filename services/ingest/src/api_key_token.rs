//! Tenant API keys as their holders see them: `hsk_<key id>_<secret>`. The key id lets a
//! request's key be found without a search; the 256-bit secret is what proves it. The store
//! keeps only the SHA-256 of the whole key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hookstream_model::api_key::ApiKey;
use hookstream_model::ids::ApiKeyId;

/// What every tenant key starts with, so secret scanners can recognise a leaked one.
const PREFIX: &str = "hsk_";
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("cannot generate an API key: {0}")]
pub struct KeyGenerationError(String);

/// A newly issued key: the text for its holder (shown once) and its hash for the store.
pub struct IssuedKey {
    pub id: ApiKeyId,
    pub token: String,
    pub hash: [u8; 32],
}

pub fn issue() -> Result<IssuedKey, KeyGenerationError> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| KeyGenerationError(e.to_string()))?;
    let id = ApiKeyId::generate();
    let body = id.to_string();
    let ulid = body.strip_prefix(ApiKeyId::PREFIX).unwrap_or(&body);
    let token = format!("{PREFIX}{ulid}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&token);
    Ok(IssuedKey { id, token, hash })
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The key id a presented token names, if it has the shape of a tenant key.
pub fn key_id_of(token: &str) -> Option<ApiKeyId> {
    let (ulid, _secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    ApiKeyId::parse(&format!("{}{ulid}", ApiKeyId::PREFIX), "key").ok()
}

/// Whether `token` is the key `stored` holds the hash of (in constant time).
pub fn matches(stored: &ApiKey, token: &str) -> bool {
    bool::from(hash(token).ct_eq(&stored.key_hash))
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use hookstream_model::names::Tenant;

    use super::*;

    fn stored(issued: &IssuedKey) -> ApiKey {
        ApiKey {
            id: issued.id,
            tenant: Tenant::parse("acme", "tenant").unwrap(),
            name: "ci".into(),
            key_hash: issued.hash,
            created_at: OffsetDateTime::now_utc(),
            revoked_at: None,
        }
    }

    #[test]
    fn an_issued_key_names_its_id_and_matches_its_hash() {
        let issued = issue().unwrap();
        assert!(issued.token.starts_with("hsk_"));
        assert_eq!(key_id_of(&issued.token), Some(issued.id));
        assert!(matches(&stored(&issued), &issued.token));
    }

    #[test]
    fn a_changed_secret_does_not_match() {
        let issued = issue().unwrap();
        let mut forged = issued.token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(key_id_of(&forged), Some(issued.id));
        assert!(!matches(&stored(&issued), &forged));
    }

    #[test]
    fn other_text_names_no_key() {
        for text in ["", "hsk_", "hsk_nope", "admin-token-1234567890", "hsk__x"] {
            assert_eq!(key_id_of(text), None, "{text}");
        }
    }
}
