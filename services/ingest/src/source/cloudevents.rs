//! CloudEvents over Kafka (the Kafka protocol binding of CloudEvents 1.0), both modes:
//! - binary: attributes in `ce_*` headers, the data in the value (`content-type` says its format);
//! - structured: the whole event as JSON in the value, `content-type: application/cloudevents+json`.
//!
//! `ce_id` + `ce_source` identify an event, so they make its idempotency key: a record read
//! twice (after a crash) is the same request again.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::record::{Rejection, SourceRecord};

/// The attributes Hookstream uses, and the data still in its wire form.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub tenant: String,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Already JSON (structured mode, or binary mode with a JSON content type).
    Json(Value),
    /// Bytes whose format the topic's configuration names (Avro).
    Bytes(Vec<u8>),
    /// No data: the payload is `null`.
    Empty,
}

impl CloudEvent {
    /// The idempotency key of the event: `ce-` and the SHA-256 of its source and id
    /// (length-prefixed, so no two pairs share a key), which always fits the key's rules.
    pub fn idempotency_key(&self) -> String {
        self.idempotency_key_in("ce-")
    }

    /// The same digest under another prefix (operational events have their own).
    pub fn idempotency_key_in(&self, prefix: &str) -> String {
        let mut hash = Sha256::new();
        hash.update((self.source.len() as u64).to_be_bytes());
        hash.update(self.source.as_bytes());
        hash.update(self.id.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}{hex}")
    }
}

const STRUCTURED: &str = "application/cloudevents+json";

/// How a binary-mode value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryData {
    /// As its `content-type` says: JSON (or none), else kept as bytes.
    ByContentType,
    /// Always as bytes (an Avro topic: the value is framed Avro whatever the header says).
    Bytes,
}

/// Reads a record in either mode. `tenant_attribute` names the extension attribute that
/// carries the tenant (`tenant` reads the `ce_tenant` header, or `"tenant"` in structured mode).
pub fn decode(
    record: &SourceRecord,
    tenant_attribute: &str,
    data: BinaryData,
) -> Result<CloudEvent, Rejection> {
    let content_type = record.header("content-type")?.unwrap_or_default();
    if media_type(content_type) == STRUCTURED {
        structured(record, tenant_attribute)
    } else if data == BinaryData::Bytes {
        binary(record, "application/octet-stream", tenant_attribute)
    } else {
        binary(record, content_type, tenant_attribute)
    }
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn binary(
    record: &SourceRecord,
    content_type: &str,
    tenant_attribute: &str,
) -> Result<CloudEvent, Rejection> {
    let attribute = |name: &str| -> Result<String, Rejection> {
        record
            .header(&format!("ce_{name}"))?
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Rejection::new(format!("missing CloudEvents header `ce_{name}`")))
    };
    check_specversion(&attribute("specversion")?)?;
    let data = match (record.value.as_deref(), media_type(content_type).as_str()) {
        (None | Some([]), _) => Data::Empty,
        (Some(bytes), "" | "application/json") => Data::Json(
            serde_json::from_slice(bytes)
                .map_err(|e| Rejection::new(format!("the value is not JSON: {e}")))?,
        ),
        (Some(bytes), media) if media.ends_with("+json") => Data::Json(
            serde_json::from_slice(bytes)
                .map_err(|e| Rejection::new(format!("the value is not JSON: {e}")))?,
        ),
        (Some(bytes), _) => Data::Bytes(bytes.to_vec()),
    };
    Ok(CloudEvent {
        id: attribute("id")?,
        source: attribute("source")?,
        event_type: attribute("type")?,
        tenant: attribute(tenant_attribute)?,
        data,
    })
}

fn structured(record: &SourceRecord, tenant_attribute: &str) -> Result<CloudEvent, Rejection> {
    let value = record
        .value
        .as_deref()
        .ok_or_else(|| Rejection::new("a structured CloudEvent needs a value"))?;
    let Value::Object(mut event) = serde_json::from_slice(value)
        .map_err(|e| Rejection::new(format!("the value is not JSON: {e}")))?
    else {
        return Err(Rejection::new(
            "a structured CloudEvent must be a JSON object",
        ));
    };
    let mut attribute = |name: &str| -> Result<String, Rejection> {
        match event.remove(name) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text),
            Some(_) => Err(Rejection::new(format!(
                "attribute `{name}` must be a non-empty string"
            ))),
            None => Err(Rejection::new(format!(
                "missing CloudEvents attribute `{name}`"
            ))),
        }
    };
    check_specversion(&attribute("specversion")?)?;
    let (id, source, event_type, tenant) = (
        attribute("id")?,
        attribute("source")?,
        attribute("type")?,
        attribute(tenant_attribute)?,
    );
    if event.contains_key("data_base64") {
        return Err(Rejection::new(
            "`data_base64` is not supported: send JSON `data`, or binary mode",
        ));
    }
    let data = event.remove("data").map_or(Data::Empty, Data::Json);
    Ok(CloudEvent {
        id,
        source,
        event_type,
        tenant,
        data,
    })
}

fn check_specversion(version: &str) -> Result<(), Rejection> {
    if version == "1.0" {
        Ok(())
    } else {
        Err(Rejection::new(format!(
            "CloudEvents specversion `{version}` is not supported (only 1.0)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn binary_record(value: &[u8], extra: &[(&str, &str)]) -> SourceRecord {
        let mut headers: Vec<(String, Vec<u8>)> = [
            ("ce_specversion", "1.0"),
            ("ce_id", "order-1"),
            ("ce_source", "/shop"),
            ("ce_type", "order.created"),
            ("ce_tenant", "acme"),
            ("content-type", "application/json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        for (k, v) in extra {
            headers.retain(|(key, _)| key != k);
            headers.push((k.to_string(), v.as_bytes().to_vec()));
        }
        SourceRecord {
            headers,
            value: Some(value.to_vec()),
        }
    }

    #[test]
    fn binary_mode_reads_headers_and_json_data() {
        let event = decode(
            &binary_record(br#"{"order":1}"#, &[]),
            "tenant",
            BinaryData::ByContentType,
        )
        .unwrap();
        assert_eq!(
            (
                event.id.as_str(),
                event.source.as_str(),
                event.event_type.as_str(),
                event.tenant.as_str()
            ),
            ("order-1", "/shop", "order.created", "acme")
        );
        assert_eq!(event.data, Data::Json(json!({"order": 1})));
    }

    #[test]
    fn binary_mode_keeps_other_formats_as_bytes() {
        let record = binary_record(&[0, 0, 0, 0, 7, 2], &[("content-type", "application/avro")]);
        assert_eq!(
            decode(&record, "tenant", BinaryData::ByContentType)
                .unwrap()
                .data,
            Data::Bytes(vec![0, 0, 0, 0, 7, 2])
        );
    }

    #[test]
    fn structured_mode_reads_the_json_envelope() {
        let value = json!({
            "specversion": "1.0", "id": "inv-9", "source": "billing", "type": "invoice.paid",
            "org": "acme", "time": "2026-11-23T10:00:00Z", "data": {"amount": 5}
        });
        let record = SourceRecord {
            headers: vec![(
                "content-type".into(),
                b"application/cloudevents+json; charset=UTF-8".to_vec(),
            )],
            value: Some(value.to_string().into_bytes()),
        };
        let event = decode(&record, "org", BinaryData::ByContentType).unwrap();
        assert_eq!(
            (event.id.as_str(), event.tenant.as_str()),
            ("inv-9", "acme")
        );
        assert_eq!(event.data, Data::Json(json!({"amount": 5})));
    }

    #[test]
    fn bad_records_are_rejected_with_a_reason() {
        let missing = SourceRecord {
            headers: vec![("ce_specversion".into(), b"1.0".to_vec())],
            value: None,
        };
        assert_eq!(
            decode(&missing, "tenant", BinaryData::ByContentType)
                .unwrap_err()
                .0,
            "missing CloudEvents header `ce_id`"
        );
        let old = binary_record(b"{}", &[("ce_specversion", "0.3")]);
        assert!(
            decode(&old, "tenant", BinaryData::ByContentType)
                .unwrap_err()
                .0
                .contains("0.3")
        );
        let not_json = binary_record(b"{oops", &[]);
        assert!(
            decode(&not_json, "tenant", BinaryData::ByContentType)
                .unwrap_err()
                .0
                .starts_with("the value is not JSON")
        );
        let no_tenant = binary_record(b"{}", &[]);
        assert!(
            decode(&no_tenant, "org", BinaryData::ByContentType)
                .unwrap_err()
                .0
                .contains("ce_org")
        );
        let structured_array = SourceRecord {
            headers: vec![("content-type".into(), STRUCTURED.as_bytes().to_vec())],
            value: Some(b"[1]".to_vec()),
        };
        assert!(decode(&structured_array, "tenant", BinaryData::ByContentType).is_err());
    }

    #[test]
    fn idempotency_keys_follow_source_and_id_and_never_collide_by_concatenation() {
        let event = |source: &str, id: &str| CloudEvent {
            id: id.into(),
            source: source.into(),
            event_type: "t".into(),
            tenant: "acme".into(),
            data: Data::Empty,
        };
        let key = event("/shop", "1").idempotency_key();
        assert_eq!(key, event("/shop", "1").idempotency_key());
        assert!(key.starts_with("ce-") && key.len() == 67);
        assert_ne!(
            event("a/b", "c").idempotency_key(),
            event("a", "b/c").idempotency_key()
        );
        assert!(hookstream_model::names::IdempotencyKey::parse(&key, "k").is_ok());
    }
}
