use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::SigningSecret;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.key()).expect("HMAC accepts any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` value for one message: `v1,` + base64(HMAC-SHA256).
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(secret, msg_id, timestamp, body))
    )
}

/// Whether a `webhook-signature` header (space-separated `v1,…` entries) holds a valid signature.
/// Compares in constant time.
pub fn verify(
    secret: &SigningSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = mac(secret, msg_id, timestamp, body);
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|candidate| candidate.ct_eq(&expected).into())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;

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
}
