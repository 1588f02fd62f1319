//! Kafka-native ingest: events that producers publish on their own topics become events exactly
//! as `POST /v1/events` would make them (same validation, idempotency window and fan-out).

pub mod avro;
pub mod avro_bounds;
pub mod cloudevents;
pub mod consumer;
pub mod record;

use serde_json::Value;

use hookstream_model::names::{EventType, IdempotencyKey, Tenant};
use hookstream_model::ops_event;

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
    /// Hookstream's own operational events (structured CloudEvents, the `tenant` attribute),
    /// the only records whose types may be in the reserved namespace; always read.
    Operational,
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
    /// An operational event of no tenant (an admin's batch over every tenant): it is for
    /// the topic's readers only, there are no tenant operators to send it to.
    #[error("an operational event of no tenant")]
    NoTenant,
}

impl From<AvroError> for DecodeError {
    fn from(err: AvroError) -> Self {
        match err {
            AvroError::Rejected(rejection) => Self::Rejected(rejection),
            AvroError::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}

/// The attribute that carries an operational event's tenant (Hookstream writes it).
const OPERATIONAL_TENANT_ATTRIBUTE: &str = "tenant";

/// Whether a structured CloudEvent names a tenant; one that does not parse is left to the
/// decoder, which says why.
fn has_tenant(record: &SourceRecord) -> bool {
    let Some(Ok(Value::Object(event))) =
        record.value.as_deref().map(serde_json::from_slice::<Value>)
    else {
        return true;
    };
    event.contains_key(OPERATIONAL_TENANT_ATTRIBUTE)
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
        let (binary, tenant_attribute) = match format {
            Format::CloudEvents => (BinaryData::ByContentType, self.tenant_attribute.as_str()),
            Format::Avro => (BinaryData::Bytes, self.tenant_attribute.as_str()),
            Format::Operational => {
                if !has_tenant(record) {
                    return Err(DecodeError::NoTenant);
                }
                (BinaryData::ByContentType, OPERATIONAL_TENANT_ATTRIBUTE)
            }
        };
        let event = cloudevents::decode(record, tenant_attribute, binary)?;
        let payload = match (&event.data, format) {
            (Data::Json(value), _) => value.clone(),
            (Data::Empty, _) => Value::Null,
            (Data::Bytes(bytes), Format::Avro) => {
                let registry = self.registry.as_ref().ok_or_else(|| {
                    DecodeError::Unavailable("no HOOKSTREAM_SCHEMA_REGISTRY_URL is set".into())
                })?;
                registry.decode(bytes).await?
            }
            (Data::Bytes(_), Format::CloudEvents | Format::Operational) => {
                return Err(Rejection::new(
                    "the data is not JSON (content-type); Avro data needs a topic configured as avro",
                )
                .into());
            }
        };
        let reject = |e: hookstream_model::ValidationError| Rejection::new(e.to_string());
        hookstream_model::event::check_payload_depth(&payload, "data").map_err(reject)?;
        let (event_type, source, key) = if format == Format::Operational {
            // Any type of the namespace, also one a newer build writes (during an upgrade):
            // only endpoints that name it take it.
            let event_type = EventType::parse(&event.event_type, "type").map_err(reject)?;
            if !ops_event::is_operational(&event_type) {
                return Err(Rejection::new(format!(
                    "`{event_type}` is not an operational event type"
                ))
                .into());
            }
            let key = event.idempotency_key_in(ops_event::IDEMPOTENCY_PREFIX);
            (event_type, EventSource::Operational, key)
        } else {
            (
                ops_event::tenant_event_type(&event.event_type, "type").map_err(reject)?,
                EventSource::Kafka,
                event.idempotency_key(),
            )
        };
        Ok(EventRequest {
            tenant: Tenant::parse(&event.tenant, "tenant").map_err(reject)?,
            event_type,
            payload,
            idempotency_key: Some(IdempotencyKey::parse(&key, "idempotency_key").map_err(reject)?),
            source,
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
    async fn only_the_ops_events_topic_carries_operational_types() {
        let decoder = Decoder {
            tenant_attribute: "customer".into(),
            registry: None,
            max_value_bytes: 4096,
        };
        let structured = |event: serde_json::Value| SourceRecord {
            headers: vec![(
                "content-type".into(),
                b"application/cloudevents+json".to_vec(),
            )],
            value: Some(event.to_string().into_bytes()),
        };
        let mut event = serde_json::json!({
            "specversion": "1.0", "id": "x", "source": "/hookstream",
            "type": "hookstream.endpoint.disabled", "tenant": "acme", "customer": "acme",
            "data": {"endpoint_id": "ep_1"},
        });
        // Read with the fixed `tenant` attribute, whatever the installation's is.
        let request = decoder
            .decode(&structured(event.clone()), Format::Operational)
            .await
            .unwrap();
        assert_eq!(request.source, EventSource::Operational);
        assert_eq!(request.event_type.as_str(), "hookstream.endpoint.disabled");
        assert!(matches!(
            decoder.decode(&structured(event.clone()), Format::CloudEvents).await,
            Err(DecodeError::Rejected(reason)) if reason.0.contains("reserved")
        ));
        // Its key is out of the tenants' reach (their keys are `ce-…` from a topic).
        let key = request.idempotency_key.expect("a key");
        assert!(key.as_str().starts_with("hookstream-ops-"), "{key}");
        // A type a newer build writes is taken; one outside the namespace is not.
        event["type"] = "hookstream.endpoint.deleted".into();
        assert!(
            decoder
                .decode(&structured(event.clone()), Format::Operational)
                .await
                .is_ok()
        );
        event["type"] = "order.created".into();
        assert!(matches!(
            decoder
                .decode(&structured(event.clone()), Format::Operational)
                .await,
            Err(DecodeError::Rejected(_))
        ));
        event["type"] = "hookstream.batch.finished".into();
        event.as_object_mut().unwrap().remove("tenant");
        assert!(matches!(
            decoder
                .decode(&structured(event), Format::Operational)
                .await,
            Err(DecodeError::NoTenant)
        ));
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
