//! The short names clients choose: tenants, event types, idempotency keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Checks a client-chosen name: 1..=`max` characters, each accepted by `allowed`.
fn check_name(
    text: &str,
    field: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    allowed_words: &str,
) -> Result<(), ValidationError> {
    if text.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if text.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        return Err(ValidationError::new(
            field,
            format!("contains {bad:?}; only {allowed_words} are allowed"),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text, stringify!($name)).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The customer an endpoint or event belongs to: `[A-Za-z0-9._-]`, at most 64 characters.
    Tenant
);

impl Tenant {
    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        check_name(
            text,
            field,
            64,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
            "letters, digits, '.', '_' and '-'",
        )?;
        Ok(Self(text.to_owned()))
    }
}

name_type!(
    /// What happened, as dotted words (`order.created`): `[A-Za-z0-9._:-]`, at most 128 characters.
    EventType
);

impl EventType {
    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        check_name(
            text,
            field,
            128,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'),
            "letters, digits, '.', '_', ':' and '-'",
        )?;
        Ok(Self(text.to_owned()))
    }
}

name_type!(
    /// A client's key for "this is the same request again": printable ASCII, at most 255 characters.
    IdempotencyKey
);

impl IdempotencyKey {
    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        check_name(
            text,
            field,
            255,
            |c| c.is_ascii_graphic(),
            "printable ASCII characters without spaces",
        )?;
        Ok(Self(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_accept_plain_names_and_refuse_the_rest() {
        assert!(Tenant::parse("acme", "tenant").is_ok());
        assert!(Tenant::parse("acme-eu_1.prod", "tenant").is_ok());
        assert_eq!(
            Tenant::parse("", "tenant").unwrap_err().reason,
            "must not be empty"
        );
        assert!(Tenant::parse("ac me", "tenant").is_err());
        assert!(Tenant::parse("acme/../x", "tenant").is_err());
        assert!(Tenant::parse(&"a".repeat(65), "tenant").is_err());
        assert!(Tenant::parse(&"a".repeat(64), "tenant").is_ok());
    }

    #[test]
    fn event_types_are_dotted_words_without_wildcards() {
        assert!(EventType::parse("order.created", "type").is_ok());
        assert!(EventType::parse("billing:invoice.paid-v2", "type").is_ok());
        let err = EventType::parse("order.*", "type").unwrap_err();
        assert_eq!(err.field, "type");
        assert!(err.reason.contains("'*'"), "{}", err.reason);
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("k-1", "idempotency_key").is_ok());
        assert!(IdempotencyKey::parse("550e8400-e29b-41d4-a716-446655440000", "k").is_ok());
        assert!(IdempotencyKey::parse("with space", "k").is_err());
        assert!(IdempotencyKey::parse("ключ", "k").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256), "k").is_err());
    }

    #[test]
    fn names_deserialize_through_their_validation() {
        assert!(serde_json::from_str::<Tenant>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<Tenant>("\"no spaces\"").is_err());
    }
}
