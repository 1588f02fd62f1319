//! Dead letters: deliveries that will not be tried again, with the reason, on the DLQ topic.

use std::sync::LazyLock;

use apache_avro::types::Value;
use time::OffsetDateTime;

use crate::codec::{CodecError, RecordFields, SchemaVersions, from_millis, to_millis};
use crate::delivery::{AttemptClass, Delivery};
use crate::ids::DeliveryId;
use crate::task::DeliveryTask;

static SCHEMAS: LazyLock<SchemaVersions> = LazyLock::new(|| {
    SchemaVersions::new(&[include_str!("../../../schemas/avro/dead_letter.v1.avsc")])
});

/// A delivery that died: everything needed to explain it and to replay it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The task as it stood at its last attempt (`attempts_made` counts that attempt).
    pub task: DeliveryTask,
    /// Why it died, in words.
    pub reason: String,
    pub last_class: AttemptClass,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_response_snippet: String,
    pub dead_lettered_at: OffsetDateTime,
}

impl DeadLetter {
    /// The Kafka record key: the endpoint id, like the task's.
    pub fn key(&self) -> String {
        self.task.key()
    }

    /// A new delivery of the same event to the same endpoint, to replay this one.
    pub fn replay_delivery(&self, id: DeliveryId, now: OffsetDateTime) -> Delivery {
        let task = &self.task;
        Delivery::pending(
            id,
            task.event_id,
            task.endpoint_id,
            task.tenant.clone(),
            task.event_type.clone(),
            now,
        )
    }

    /// The task that sends [`Self::replay_delivery`]: the same event, from its first attempt.
    pub fn replay_task(&self, id: DeliveryId) -> DeliveryTask {
        DeliveryTask {
            delivery_id: id,
            attempts_made: 0,
            due_at: None,
            ..self.task.clone()
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let optional_string = |v: &Option<String>| match v {
            Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let mut fields = self.task.common_fields()?;
        fields.extend([
            ("reason".into(), Value::String(self.reason.clone())),
            (
                "last_class".into(),
                Value::String(self.last_class.as_str().into()),
            ),
            (
                "last_status_code".into(),
                match self.last_status_code {
                    Some(code) => Value::Union(1, Box::new(Value::Int(i32::from(code)))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("last_error".into(), optional_string(&self.last_error)),
            (
                "last_response_snippet".into(),
                Value::String(self.last_response_snippet.clone()),
            ),
            (
                "dead_lettered_at".into(),
                Value::TimestampMillis(to_millis(self.dead_lettered_at, "dead_lettered_at")?),
            ),
        ]);
        SCHEMAS.encode(Value::Record(fields))
    }

    /// Every schema version this build reads, and the one it writes.
    pub fn schemas() -> &'static SchemaVersions {
        &SCHEMAS
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut f = RecordFields::new(SCHEMAS.decode(bytes)?)?;
        let task = DeliveryTask::from_common_fields(&mut f, None)?;
        let class = f.string("last_class")?;
        Ok(Self {
            task,
            reason: f.string("reason")?,
            last_class: AttemptClass::parse(&class).ok_or(CodecError::Field {
                field: "last_class",
                reason: format!("unknown class `{class}`"),
            })?,
            last_status_code: f
                .optional_int("last_status_code")?
                .and_then(|c| u16::try_from(c).ok()),
            last_error: f.optional_string("last_error")?,
            last_response_snippet: f.string("last_response_snippet")?,
            dead_lettered_at: from_millis(
                f.timestamp_millis("dead_lettered_at")?,
                "dead_lettered_at",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeliveryId, EndpointId, EventId};
    use crate::names::{EventType, Tenant};

    #[test]
    fn a_dead_letter_round_trips_through_avro() {
        let letter = DeadLetter {
            task: DeliveryTask {
                delivery_id: DeliveryId::generate(),
                event_id: EventId::generate(),
                endpoint_id: EndpointId::generate(),
                tenant: Tenant::parse("acme", "t").unwrap(),
                event_type: EventType::parse("order.created", "t").unwrap(),
                event_created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
                payload: r#"{"a":1}"#.into(),
                attempts_made: 1,
                due_at: None,
            },
            reason: "endpoint answered HTTP 400, which is permanent".into(),
            last_class: AttemptClass::Http4xxPermanent,
            last_status_code: Some(400),
            last_error: None,
            last_response_snippet: "bad request".into(),
            dead_lettered_at: OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap(),
        };
        assert_eq!(
            DeadLetter::decode(&letter.encode().unwrap()).unwrap(),
            letter
        );
        let mut no_answer = letter.clone();
        no_answer.last_status_code = None;
        no_answer.last_error = Some("connection refused".into());
        no_answer.last_class = AttemptClass::NetworkError;
        assert_eq!(
            DeadLetter::decode(&no_answer.encode().unwrap()).unwrap(),
            no_answer
        );
    }
}
