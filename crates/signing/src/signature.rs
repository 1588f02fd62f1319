use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::SigningSecret;
use crate::secret::Key;

type HmacSha256 = Hmac<Sha256>;

const HMAC_VERSION: &str = "v1,";
const ED25519_VERSION: &str = "v1a,";

/// What both schemes sign: `{msg_id}.{timestamp}.{body}`.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` entry for one message: `v1,` + base64(HMAC-SHA256) for a `whsec_`
/// secret, `v1a,` + base64(ed25519 signature) for a `whsk_` one.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    match secret.key() {
        Key::Hmac(key) => format!(
            "{HMAC_VERSION}{}",
            STANDARD.encode(mac(key, msg_id, timestamp, body))
        ),
        Key::Ed25519(key) => {
            let signature = key.sign(&signed_content(msg_id, timestamp, body));
            format!("{ED25519_VERSION}{}", STANDARD.encode(signature.to_bytes()))
        }
    }
}

/// Whether a `webhook-signature` header (space-separated entries) holds a valid signature by
/// `secret`: a `v1` one for HMAC (compared in constant time), a `v1a` one for ed25519.
pub fn verify(
    secret: &SigningSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    match secret.key() {
        Key::Hmac(key) => {
            let expected = mac(key, msg_id, timestamp, body);
            entries(header, HMAC_VERSION).any(|candidate| candidate.ct_eq(&expected).into())
        }
        Key::Ed25519(key) => verify_ed25519(&key.verifying_key(), msg_id, timestamp, body, header),
    }
}

pub(crate) fn verify_ed25519(
    key: &VerifyingKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let content = signed_content(msg_id, timestamp, body);
    entries(header, ED25519_VERSION)
        .filter_map(|bytes| Signature::from_slice(&bytes).ok())
        .any(|signature| key.verify_strict(&content, &signature).is_ok())
}

/// The decoded signatures of one version in a header.
fn entries<'a>(header: &'a str, version: &'a str) -> impl Iterator<Item = Vec<u8>> + 'a {
    header
        .split(' ')
        .filter_map(move |entry| entry.strip_prefix(version))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;
    use crate::SigningScheme;

    /// The published Standard Webhooks test vectors, kept in the shared folder beside the project.
    fn vectors() -> Vec<Value> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/standard-webhooks.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("vectors file is JSON");
        doc["vectors"].as_array().expect("a vectors array").clone()
    }

    #[test]
    fn signatures_match_the_published_vectors() {
        let vectors = vectors();
        assert!(!vectors.is_empty());
        for v in vectors {
            let secret = SigningSecret::parse(v["secret"].as_str().unwrap()).unwrap();
            let msg_id = v["msg_id"].as_str().unwrap();
            let timestamp = v["timestamp"].as_i64().unwrap();
            let payload = v["payload"].as_str().unwrap().as_bytes();
            let expected = v["signature"].as_str().unwrap();
            assert_eq!(
                sign(&secret, msg_id, timestamp, payload),
                expected,
                "{msg_id}"
            );
            assert!(verify(&secret, msg_id, timestamp, payload, expected));
        }
    }

    #[test]
    fn verification_fails_for_any_change() {
        let secret = SigningSecret::generate().unwrap();
        let header = sign(&secret, "dlv_1", 1_700_000_000, b"{}");
        assert!(verify(&secret, "dlv_1", 1_700_000_000, b"{}", &header));
        assert!(!verify(&secret, "dlv_2", 1_700_000_000, b"{}", &header));
        assert!(!verify(&secret, "dlv_1", 1_700_000_001, b"{}", &header));
        assert!(!verify(&secret, "dlv_1", 1_700_000_000, b"{ }", &header));
        let other = SigningSecret::generate().unwrap();
        assert!(!verify(&other, "dlv_1", 1_700_000_000, b"{}", &header));
        assert!(!verify(
            &secret,
            "dlv_1",
            1_700_000_000,
            b"{}",
            "v1,not base64!"
        ));
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let old = SigningSecret::generate().unwrap();
        let new = SigningSecret::generate().unwrap();
        let header = format!("{} {}", sign(&old, "m", 1, b"x"), sign(&new, "m", 1, b"x"));
        assert!(verify(&old, "m", 1, b"x", &header));
        assert!(verify(&new, "m", 1, b"x", &header));
    }

    /// The ed25519 vector beside the README's verifiers, signed by the Python `cryptography`
    /// package: ed25519 is deterministic, so our signature must be the same bytes.
    #[test]
    fn ed25519_signatures_match_the_vector_signed_elsewhere() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/verify/ed25519-vector.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text).expect("the vector is JSON");
        let secret = SigningSecret::parse(v["secret_key"].as_str().unwrap()).unwrap();
        let public_key = crate::PublicKey::parse(v["public_key"].as_str().unwrap()).unwrap();
        assert_eq!(secret.public_key(), Some(public_key.clone()));
        let (msg_id, timestamp) = (
            v["msg_id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
        );
        let payload = v["payload"].as_str().unwrap().as_bytes();
        let expected = v["signature"].as_str().unwrap();
        assert_eq!(sign(&secret, msg_id, timestamp, payload), expected);
        assert!(verify(&secret, msg_id, timestamp, payload, expected));
        assert!(public_key.verify(msg_id, timestamp, payload, expected));
    }

    #[test]
    fn ed25519_verification_fails_for_any_change() {
        let secret = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        let key = secret.public_key().unwrap();
        let header = sign(&secret, "dlv_1", 1_700_000_000, b"{}");
        assert!(header.starts_with("v1a,"));
        assert!(key.verify("dlv_1", 1_700_000_000, b"{}", &header));
        assert!(!key.verify("dlv_2", 1_700_000_000, b"{}", &header));
        assert!(!key.verify("dlv_1", 1_700_000_001, b"{}", &header));
        assert!(!key.verify("dlv_1", 1_700_000_000, b"{ }", &header));
        let other = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        assert!(
            !other
                .public_key()
                .unwrap()
                .verify("dlv_1", 1_700_000_000, b"{}", &header)
        );
        // A `v1a` verifier reads `v1a` entries only: the same bytes labelled `v1` do not count.
        let relabelled = header.replacen("v1a,", "v1,", 1);
        assert!(!key.verify("dlv_1", 1_700_000_000, b"{}", &relabelled));
        assert!(!key.verify("dlv_1", 1_700_000_000, b"{}", "v1a,AAAA v1a"));
    }

    /// During a rotation from HMAC to ed25519 both entries go out; each side finds its own.
    #[test]
    fn hmac_and_ed25519_entries_verify_side_by_side() {
        let old = SigningSecret::generate().unwrap();
        let new = SigningSecret::generate_for(SigningScheme::Ed25519).unwrap();
        let header = format!("{} {}", sign(&new, "m", 1, b"x"), sign(&old, "m", 1, b"x"));
        assert!(verify(&old, "m", 1, b"x", &header));
        assert!(verify(&new, "m", 1, b"x", &header));
        assert!(new.public_key().unwrap().verify("m", 1, b"x", &header));
        let other_hmac = SigningSecret::generate().unwrap();
        assert!(!verify(&other_hmac, "m", 1, b"x", &header));
    }
}
