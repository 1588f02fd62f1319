//! Portal links: short-lived, signed tokens the admin issues for one tenant, so a platform can
//! let its customer into the console's tenant pages (linked or embedded) without handing out
//! an API key. A link is `hsp_<claims>.<mac>`: the claims (tenant, expiry, a nonce) in base64,
//! and their HMAC-SHA256 under a key derived from the admin token. Nothing is stored when one
//! is issued: every ingest replica checks a link alone, a link ends at its expiry, and changing
//! the admin token ends every link at once. One link is ended early by revoking its id, which
//! the store keeps until no link could still be live (see [`MOST_LIFETIME`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use hookstream_model::names::Tenant;

/// What every portal link starts with, so secret scanners can recognise a leaked one.
pub const PREFIX: &str = "hsp_";
/// The claims' format; another version is refused, not misread.
const VERSION: &str = "v1";
/// Separates the derived key from any other use of the admin token.
const KEY_CONTEXT: &[u8] = b"hookstream portal link v1";
const NONCE_BYTES: usize = 12;

/// The longest a link may live: a revocation is kept this long, and [`CLOCK_MARGIN`] more.
pub const MOST_LIFETIME: time::Duration = time::Duration::hours(24);

/// How far the replicas' clocks may disagree: a link that claims to live longer than
/// [`MOST_LIFETIME`] by more than this is refused, so no link outlives its revocation's row.
pub const CLOCK_MARGIN: time::Duration = time::Duration::hours(1);

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks portal links; the key is derived from the admin token.
#[derive(Clone)]
pub struct PortalLinks {
    key: [u8; 32],
}

/// What a valid link lets in: one tenant, until a time. `link_id` (from its nonce) tells
/// links apart in what they create and in the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalClaims {
    pub tenant: Tenant,
    pub expires_at: OffsetDateTime,
    pub link_id: String,
}

/// What starts a link's id.
const LINK_ID_PREFIX: &str = "pl_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error(
        "this portal link is not valid (mistyped, altered, or issued under another admin token)"
    )]
    Invalid,
    #[error("this portal link expired at {0}: ask for a new one")]
    Expired(String),
    #[error("cannot make a portal link: {0}")]
    Random(String),
}

impl std::fmt::Debug for PortalLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortalLinks(..)")
    }
}

impl PortalLinks {
    pub fn new(admin_token: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(admin_token.as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(KEY_CONTEXT);
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }

    /// A link for `tenant`, valid until `expires_at`, and its id.
    pub fn issue(
        &self,
        tenant: &Tenant,
        expires_at: OffsetDateTime,
    ) -> Result<(String, String), LinkError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| LinkError::Random(e.to_string()))?;
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let claims = format!("{VERSION}|{tenant}|{}|{nonce}", expires_at.unix_timestamp());
        let encoded = URL_SAFE_NO_PAD.encode(claims.as_bytes());
        let mut mac = self.mac();
        mac.update(encoded.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok((
            format!("{PREFIX}{encoded}.{signature}"),
            format!("{LINK_ID_PREFIX}{nonce}"),
        ))
    }

    /// Whether `id` has the shape of a link's id (`pl_` and its nonce).
    pub fn is_link_id(id: &str) -> bool {
        id.strip_prefix(LINK_ID_PREFIX).is_some_and(|nonce| {
            URL_SAFE_NO_PAD
                .decode(nonce)
                .is_ok_and(|bytes| bytes.len() == NONCE_BYTES)
        })
    }

    /// Whether `token` has a link's shape (so it is checked here, not as an API key).
    pub fn looks_like_link(token: &str) -> bool {
        token.starts_with(PREFIX)
    }

    /// The claims of a link this key signed and that has not expired at `now`.
    pub fn check(&self, token: &str, now: OffsetDateTime) -> Result<PortalClaims, LinkError> {
        let (encoded, signature) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(LinkError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Invalid)?;
        let mut mac = self.mac();
        mac.update(encoded.as_bytes());
        // Constant time: a forger learns nothing from how long a refusal took.
        mac.verify_slice(&signature)
            .map_err(|_| LinkError::Invalid)?;
        let claims = URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(LinkError::Invalid)?;
        let mut fields = claims.split('|');
        let (Some(VERSION), Some(tenant), Some(expiry), Some(nonce), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(LinkError::Invalid);
        };
        let tenant = Tenant::parse(tenant, "tenant").map_err(|_| LinkError::Invalid)?;
        let expires_at = expiry
            .parse::<i64>()
            .ok()
            .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
            .ok_or(LinkError::Invalid)?;
        if expires_at <= now {
            return Err(LinkError::Expired(
                expires_at.format(&Rfc3339).unwrap_or_default(),
            ));
        }
        // Never issued so: a clock far behind, or a key misused.
        if expires_at > now + MOST_LIFETIME + CLOCK_MARGIN {
            return Err(LinkError::Invalid);
        }
        Ok(PortalClaims {
            tenant,
            expires_at,
            link_id: format!("{LINK_ID_PREFIX}{nonce}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn acme() -> Tenant {
        Tenant::parse("acme", "tenant").expect("a tenant")
    }

    #[test]
    fn a_link_lets_in_its_tenant_until_it_expires() {
        let links = PortalLinks::new("admin-token");
        let now = OffsetDateTime::now_utc();
        let expires_at = (now + Duration::minutes(15))
            .replace_nanosecond(0)
            .expect("whole seconds");
        let (link, link_id) = links.issue(&acme(), expires_at).expect("a link");
        assert!(PortalLinks::looks_like_link(&link));
        assert!(link_id.starts_with("pl_"), "{link_id}");
        assert_eq!(
            links.check(&link, now),
            Ok(PortalClaims {
                tenant: acme(),
                expires_at,
                link_id,
            })
        );
        assert!(matches!(
            links.check(&link, expires_at),
            Err(LinkError::Expired(_))
        ));
        // Two links for the same tenant and time still differ (the nonce).
        assert_ne!(link, links.issue(&acme(), expires_at).expect("a link").0);
    }

    #[test]
    fn an_issued_links_id_has_the_shape_a_revocation_takes() {
        let links = PortalLinks::new("admin-token");
        let expires_at = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let (_, link_id) = links.issue(&acme(), expires_at).expect("a link");
        assert!(PortalLinks::is_link_id(&link_id), "{link_id}");
        // One claiming a life longer than any link is given is refused.
        let (too_long, _) = links
            .issue(
                &acme(),
                OffsetDateTime::now_utc() + time::Duration::hours(30),
            )
            .expect("a link");
        assert_eq!(
            links.check(&too_long, OffsetDateTime::now_utc()),
            Err(LinkError::Invalid)
        );
        for not_one in [
            "pl_",
            "pl_short",
            "key_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "pl_!!!!!!!!!!!!!!!!",
        ] {
            assert!(!PortalLinks::is_link_id(not_one), "{not_one}");
        }
    }

    #[test]
    fn an_altered_or_foreign_link_is_refused() {
        let links = PortalLinks::new("admin-token");
        let now = OffsetDateTime::now_utc();
        let (link, _) = links
            .issue(&acme(), now + Duration::minutes(15))
            .expect("a link");
        // Signed under another admin token.
        assert_eq!(
            PortalLinks::new("another-token").check(&link, now),
            Err(LinkError::Invalid)
        );
        // Another tenant's claims under this link's signature.
        let (_, signature) = link.split_once('.').expect("claims.signature");
        let forged_claims = URL_SAFE_NO_PAD.encode(format!(
            "v1|globex|{}|nonce",
            (now + Duration::days(365)).unix_timestamp()
        ));
        assert_eq!(
            links.check(&format!("{PREFIX}{forged_claims}.{signature}"), now),
            Err(LinkError::Invalid)
        );
        for broken in ["hsp_", "hsp_abc", "hsp_abc.def", "hsk_abc.def", ""] {
            assert_eq!(
                links.check(broken, now),
                Err(LinkError::Invalid),
                "{broken}"
            );
        }
    }
}
