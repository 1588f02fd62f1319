//! The delivery task: what ingest writes to the deliveries topic and the dispatcher consumes.

use std::sync::LazyLock;

use apache_avro::types::Value;
use time::OffsetDateTime;

use crate::codec::{CodecError, RecordFields, SchemaVersions, from_millis, to_millis};
use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::names::{EventType, Tenant};

static SCHEMAS: LazyLock<SchemaVersions> = LazyLock::new(|| {
    SchemaVersions::new(&[
        include_str!("../../../schemas/avro/delivery_task.v1.avsc"),
        include_str!("../../../schemas/avro/delivery_task.v2.avsc"),
    ])
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
    /// Not to be attempted before this time (set on the retry tiers); `None`: at once.
    pub due_at: Option<OffsetDateTime>,
}

impl DeliveryTask {
    /// The Kafka record key: the endpoint id.
    pub fn key(&self) -> String {
        self.endpoint_id.to_string()
    }

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let due_at = self.due_at.map_or(Ok(0), |at| to_millis(at, "due_at"))?;
        let mut fields = self.common_fields()?;
        fields.push(("due_at".into(), Value::TimestampMillis(due_at)));
        SCHEMAS.encode(Value::Record(fields))
    }

    /// Every schema version this build reads, and the one it writes.
    pub fn schemas() -> &'static SchemaVersions {
        &SCHEMAS
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut fields = RecordFields::new(SCHEMAS.decode(bytes)?)?;
        let due_at = fields.timestamp_millis("due_at")?;
        let due_at = (due_at != 0)
            .then(|| from_millis(due_at, "due_at"))
            .transpose()?;
        Self::from_common_fields(&mut fields, due_at)
    }

    /// The fields every record that carries a task shares (the task and the dead letter), in
    /// schema order, without `due_at`.
    pub(crate) fn common_fields(&self) -> Result<Vec<(String, Value)>, CodecError> {
        let attempts = i32::try_from(self.attempts_made).map_err(|_| CodecError::Field {
            field: "attempts_made",
            reason: "out of range".into(),
        })?;
        Ok(vec![
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
            (
                "event_created_at".into(),
                Value::TimestampMillis(to_millis(self.event_created_at, "event_created_at")?),
            ),
            ("payload".into(), Value::String(self.payload.clone())),
            ("attempts_made".into(), Value::Int(attempts)),
        ])
    }

    /// Reads the fields written by [`DeliveryTask::common_fields`].
    pub(crate) fn from_common_fields(
        fields: &mut RecordFields,
        due_at: Option<OffsetDateTime>,
    ) -> Result<Self, CodecError> {
        let invalid = |field: &'static str| {
            move |e: crate::ValidationError| CodecError::Field {
                field,
                reason: e.reason,
            }
        };
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
            event_created_at: from_millis(
                fields.timestamp_millis("event_created_at")?,
                "event_created_at",
            )?,
            payload: fields.string("payload")?,
            attempts_made: u32::try_from(fields.int("attempts_made")?).map_err(|_| {
                CodecError::Field {
                    field: "attempts_made",
                    reason: "negative".into(),
                }
            })?,
            due_at,
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
            due_at: None,
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
    fn a_retry_task_keeps_its_due_time() {
        let mut retry = task();
        retry.attempts_made = 2;
        retry.due_at = Some(OffsetDateTime::from_unix_timestamp(1_700_000_030).unwrap());
        assert_eq!(
            DeliveryTask::decode(&retry.encode().unwrap()).unwrap(),
            retry
        );
    }

    #[test]
    fn a_task_written_with_schema_v1_still_reads() {
        use apache_avro::types::Value;
        let v1 =
            SchemaVersions::new(&[include_str!("../../../schemas/avro/delivery_task.v1.avsc")]);
        let original = task();
        let bytes = v1
            .encode(Value::Record(vec![
                (
                    "delivery_id".into(),
                    Value::String(original.delivery_id.to_string()),
                ),
                (
                    "event_id".into(),
                    Value::String(original.event_id.to_string()),
                ),
                (
                    "endpoint_id".into(),
                    Value::String(original.endpoint_id.to_string()),
                ),
                ("tenant".into(), Value::String("acme".into())),
                ("event_type".into(), Value::String("order.created".into())),
                (
                    "event_created_at".into(),
                    Value::TimestampMillis(1_700_000_000_123),
                ),
                ("payload".into(), Value::String(original.payload.clone())),
                ("attempts_made".into(), Value::Int(0)),
            ]))
            .unwrap();
        assert_eq!(
            DeliveryTask::decode(&bytes).unwrap(),
            original,
            "due_at defaults to none"
        );
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
