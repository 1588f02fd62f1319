//! The delivery task: what ingest writes to the deliveries topic and the dispatcher consumes.

use std::sync::LazyLock;

use apache_avro::types::Value;
use time::OffsetDateTime;

use crate::codec::{CodecError, RecordFields, SchemaVersions};
use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::names::{EventType, Tenant};

static SCHEMAS: LazyLock<SchemaVersions> = LazyLock::new(|| {
    SchemaVersions::new(&[include_str!("../../../schemas/avro/delivery_task.v1.avsc")])
});

/// One event to send to one endpoint. The Kafka key is `endpoint_id`, so every task of an
/// endpoint lands on one partition, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryTask {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub tenant: Tenant,
    pub event_type: EventType,
    /// When ingest accepted the event; the webhook's `timestamp`.
    pub event_created_at: OffsetDateTime,
    /// The event payload as JSON text.
    pub payload: String,
    /// Attempts already made before this task was written.
    pub attempts_made: u32,
}

impl DeliveryTask {
    /// The Kafka record key: the endpoint id.
    pub fn key(&self) -> String {
        self.endpoint_id.to_string()
    }

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let millis = i64::try_from(self.event_created_at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| CodecError::Field {
                field: "event_created_at",
                reason: "out of range".into(),
            })?;
        let attempts = i32::try_from(self.attempts_made).map_err(|_| CodecError::Field {
            field: "attempts_made",
            reason: "out of range".into(),
        })?;
        SCHEMAS.encode(Value::Record(vec![
            (
                "delivery_id".into(),
                Value::String(self.delivery_id.to_string()),
            ),
            ("event_id".into(), Value::String(self.event_id.to_string())),
            (
                "endpoint_id".into(),
                Value::String(self.endpoint_id.to_string()),
            ),
            ("tenant".into(), Value::String(self.tenant.to_string())),
            (
                "event_type".into(),
                Value::String(self.event_type.to_string()),
            ),
            ("event_created_at".into(), Value::TimestampMillis(millis)),
            ("payload".into(), Value::String(self.payload.clone())),
            ("attempts_made".into(), Value::Int(attempts)),
        ]))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut fields = RecordFields::new(SCHEMAS.decode(bytes)?)?;
        let invalid = |field: &'static str| {
            move |e: crate::ValidationError| CodecError::Field {
                field,
                reason: e.reason,
            }
        };
        let millis = fields.timestamp_millis("event_created_at")?;
        Ok(Self {
            delivery_id: DeliveryId::parse(&fields.string("delivery_id")?, "delivery_id")
                .map_err(invalid("delivery_id"))?,
            event_id: EventId::parse(&fields.string("event_id")?, "event_id")
                .map_err(invalid("event_id"))?,
            endpoint_id: EndpointId::parse(&fields.string("endpoint_id")?, "endpoint_id")
                .map_err(invalid("endpoint_id"))?,
            tenant: Tenant::parse(&fields.string("tenant")?, "tenant")
                .map_err(invalid("tenant"))?,
            event_type: EventType::parse(&fields.string("event_type")?, "event_type")
                .map_err(invalid("event_type"))?,
            event_created_at: OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(millis) * 1_000_000,
            )
            .map_err(|e| CodecError::Field {
                field: "event_created_at",
                reason: e.to_string(),
            })?,
            payload: fields.string("payload")?,
            attempts_made: u32::try_from(fields.int("attempts_made")?).map_err(|_| {
                CodecError::Field {
                    field: "attempts_made",
                    reason: "negative".into(),
                }
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
            tenant: Tenant::parse("acme", "t").unwrap(),
            event_type: EventType::parse("order.created", "t").unwrap(),
            event_created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
                + time::Duration::milliseconds(123),
            payload: r#"{"order":42,"name":"Zoë"}"#.into(),
            attempts_made: 0,
        }
    }

    #[test]
    fn a_task_round_trips_through_avro() {
        let original = task();
        let bytes = original.encode().unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(DeliveryTask::decode(&bytes).unwrap(), original);
    }

    #[test]
    fn the_key_is_the_endpoint() {
        let t = task();
        assert_eq!(t.key(), t.endpoint_id.to_string());
    }

    #[test]
    fn a_task_with_a_malformed_id_is_refused_naming_the_field() {
        let mut bytes = task().encode().unwrap();
        // The first field is the delivery id: a length byte, then "dlv_…". Corrupt its prefix.
        let at = bytes.windows(4).position(|w| w == b"dlv_").unwrap();
        bytes[at] = b'x';
        let err = DeliveryTask::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("delivery_id"), "{err}");
    }
}
