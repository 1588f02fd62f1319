//! Kafka-native ingest: events that producers publish on their own topics become events exactly
//! as `POST /v1/events` would make them (same validation, idempotency window and fan-out).

pub mod avro;
pub mod avro_bounds;
pub mod cloudevents;
pub mod consumer;
pub mod record;

use serde_json::Value;

use hookstream_model::names::{EventType, IdempotencyKey, Tenant};

use crate::intake::{EventRequest, EventSource};
use avro::{AvroError, SchemaRegistry};
use cloudevents::{BinaryData, Data};
use record::{Rejection, SourceRecord};

/// How a source topic's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CloudEvents, binary or structured mode, JSON data.
    CloudEvents,
    /// CloudEvents attributes in `ce_*` headers, the value in Confluent-framed Avro.
    Avro,
}

/// A topic to consume and its format, from `name:format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopic {
    pub name: String,
    pub format: Format,
}

impl SourceTopic {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, format) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}`: expected TOPIC:FORMAT (cloudevents or avro)"))?;
        let format = match format {
            "cloudevents" => Format::CloudEvents,
            "avro" => Format::Avro,
            other => {
                return Err(format!(
                    "`{other}` is not a source format (cloudevents, avro)"
                ));
            }
        };
        let valid_name = !name.is_empty()
            && name.len() <= 249
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_name {
            return Err(format!("`{name}` is not a Kafka topic name"));
        }
        Ok(Self {
            name: name.to_owned(),
            format,
        })
    }
}

/// Why a record did not become an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Something outside the record failed (the schema registry); try the record again.
    #[error("{0}")]
    Unavailable(String),
}

impl From<AvroError> for DecodeError {
    fn from(err: AvroError) -> Self {
        match err {
            AvroError::Rejected(rejection) => Self::Rejected(rejection),
            AvroError::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}

/// Turns source records into event requests.
#[derive(Clone)]
pub struct Decoder {
    pub tenant_attribute: String,
    pub registry: Option<SchemaRegistry>,
    pub max_value_bytes: usize,
}

impl Decoder {
    pub async fn decode(
        &self,
        record: &SourceRecord,
        format: Format,
    ) -> Result<EventRequest, DecodeError> {
        let size = record.value.as_ref().map_or(0, Vec::len);
        if size > self.max_value_bytes {
            return Err(Rejection::new(format!(
                "the value is {size} bytes; at most {} are accepted",
                self.max_value_bytes
            ))
            .into());
        }
        let binary = match format {
            Format::CloudEvents => BinaryData::ByContentType,
            Format::Avro => BinaryData::Bytes,
        };
        let event = cloudevents::decode(record, &self.tenant_attribute, binary)?;
        let payload = match (&event.data, format) {
            (Data::Json(value), _) => value.clone(),
            (Data::Empty, _) => Value::Null,
            (Data::Bytes(bytes), Format::Avro) => {
                let registry = self.registry.as_ref().ok_or_else(|| {
                    DecodeError::Unavailable("no HOOKSTREAM_SCHEMA_REGISTRY_URL is set".into())
                })?;
                registry.decode(bytes).await?
            }
            (Data::Bytes(_), Format::CloudEvents) => {
                return Err(Rejection::new(
                    "the data is not JSON (content-type); Avro data needs a topic configured as avro",
                )
                .into());
            }
        };
        let reject = |e: hookstream_model::ValidationError| Rejection::new(e.to_string());
        hookstream_model::event::check_payload_depth(&payload, "data").map_err(reject)?;
        Ok(EventRequest {
            tenant: Tenant::parse(&event.tenant, "tenant").map_err(reject)?,
            event_type: EventType::parse(&event.event_type, "type").map_err(reject)?,
            payload,
            idempotency_key: Some(
                IdempotencyKey::parse(&event.idempotency_key(), "idempotency_key")
                    .map_err(reject)?,
            ),
            source: EventSource::Kafka,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_topics_name_a_topic_and_a_format() {
        assert_eq!(
            SourceTopic::parse("domain-events:cloudevents").unwrap(),
            SourceTopic {
                name: "domain-events".into(),
                format: Format::CloudEvents
            }
        );
        assert_eq!(
            SourceTopic::parse(" billing:avro").unwrap().format,
            Format::Avro
        );
        assert!(SourceTopic::parse("billing").is_err());
        assert!(SourceTopic::parse("billing:protobuf").is_err());
        assert!(SourceTopic::parse("bad topic:avro").is_err());
    }

    #[tokio::test]
    async fn records_become_the_requests_the_api_would_make() {
        let decoder = Decoder {
            tenant_attribute: "tenant".into(),
            registry: None,
            max_value_bytes: 64,
        };
        let header = |k: &str, v: &str| (k.to_owned(), v.as_bytes().to_vec());
        let mut record = SourceRecord {
            headers: vec![
                header("ce_specversion", "1.0"),
                header("ce_id", "1"),
                header("ce_source", "/shop"),
                header("ce_type", "order.created"),
                header("ce_tenant", "acme"),
            ],
            value: Some(br#"{"order": 1}"#.to_vec()),
        };
        let request = decoder.decode(&record, Format::CloudEvents).await.unwrap();
        assert_eq!(request.tenant.as_str(), "acme");
        assert_eq!(request.payload, serde_json::json!({"order": 1}));
        assert!(request.idempotency_key.is_some());

        record
            .headers
            .push(header("content-type", "application/avro"));
        assert!(matches!(
            decoder.decode(&record, Format::CloudEvents).await,
            Err(DecodeError::Rejected(_))
        ));
        assert!(
            matches!(
                decoder.decode(&record, Format::Avro).await,
                Err(DecodeError::Unavailable(_))
            ),
            "an Avro topic without a registry waits for configuration, it does not drop records"
        );
        record.headers.retain(|(k, _)| k != "content-type");
        record.value = Some(vec![b' '; 65]);
        assert!(matches!(
            decoder.decode(&record, Format::CloudEvents).await,
            Err(DecodeError::Rejected(reason)) if reason.0.contains("65 bytes")
        ));
        record.value = Some(b"{}".to_vec());
        record.headers.retain(|(k, _)| k != "ce_tenant");
        record.headers.push(header("ce_tenant", "ac me"));
        assert!(matches!(
            decoder.decode(&record, Format::CloudEvents).await,
            Err(DecodeError::Rejected(reason)) if reason.0.contains("tenant")
        ));
    }
}
