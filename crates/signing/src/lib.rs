//! Standard Webhooks signing (v1, HMAC-SHA256).
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64-decoded
//! part of the secret after `whsec_`; the header value is `v1,` + base64 of the MAC. Receivers
//! verify with any Standard Webhooks library.

mod secret;
mod signature;

pub use secret::{SecretError, SigningSecret};
pub use signature::{sign, verify};
