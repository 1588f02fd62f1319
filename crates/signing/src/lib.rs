//! Standard Webhooks signing: `v1` (HMAC-SHA256) and `v1a` (ed25519).
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`. A `whsec_` secret is the
//! base64 HMAC key, and its header entry is `v1,` + base64 of the MAC; a `whsk_` secret is a
//! base64 ed25519 secret key, its entry `v1a,` + base64 of the signature, verified with the
//! `whpk_` public key. Receivers verify with any Standard Webhooks library.

mod public_key;
mod secret;
mod signature;

pub use public_key::{PublicKey, PublicKeyError};
pub use secret::{SecretError, SigningScheme, SigningSecret};
pub use signature::{sign, verify};
