//! Typed, prefixed identifiers (`evt_…`, `ep_…`, `dlv_…`), so a log line says what an id is.
//!
//! The body is a ULID: unique without coordination and sortable by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::ValidationError;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id; ids sort by creation time to the millisecond.
            pub fn generate() -> Self {
                Self(Ulid::new())
            }

            /// When the id was generated, in milliseconds since the Unix epoch.
            pub fn created_at_millis(&self) -> i64 {
                i64::try_from(self.0.timestamp_ms()).unwrap_or(i64::MAX)
            }

            /// Parses `prefix_ULID`, naming `field` when it is not one.
            pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
                let body = text.strip_prefix(Self::PREFIX).ok_or_else(|| {
                    ValidationError::new(field, format!("must start with `{}`", Self::PREFIX))
                })?;
                Ulid::from_string(body).map(Self).map_err(|_| {
                    ValidationError::new(field, format!("`{text}` is not a valid {} id", Self::PREFIX))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text, "id")
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// Identifies one accepted event.
    EventId,
    "evt_"
);
prefixed_id!(
    /// Identifies one subscribed endpoint.
    EndpointId,
    "ep_"
);
prefixed_id!(
    /// Identifies one delivery: one event to one endpoint. Sent as `webhook-id`, so it is stable
    /// across every retry of that delivery.
    DeliveryId,
    "dlv_"
);
prefixed_id!(
    /// Identifies one replay batch (or its dry run).
    BatchId,
    "bat_"
);
prefixed_id!(
    /// Identifies one tenant API key (not the key itself, which only its holder has).
    ApiKeyId,
    "key_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = EventId::generate();
        let text = id.to_string();
        assert!(text.starts_with("evt_"));
        assert_eq!(text.len(), 4 + 26);
        assert_eq!(text.parse::<EventId>(), Ok(id));
    }

    #[test]
    fn an_id_of_another_kind_is_refused() {
        let endpoint = EndpointId::generate().to_string();
        let err = DeliveryId::parse(&endpoint, "delivery_id").unwrap_err();
        assert_eq!(err.field, "delivery_id");
        assert!(err.reason.contains("dlv_"));
    }

    #[test]
    fn a_malformed_body_is_refused() {
        assert!(EventId::parse("evt_not-a-ulid", "id").is_err());
        assert!(EventId::parse("evt_", "id").is_err());
        assert!(EventId::parse("", "id").is_err());
    }

    #[test]
    fn ids_serialize_as_their_text() {
        let id = EndpointId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<EndpointId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<EndpointId>("\"evt_01ARZ3NDEKTSV4RRFFQ69G5FAV\"").is_err());
    }
}
