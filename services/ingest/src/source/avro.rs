//! Avro records in the Confluent wire format: a zero magic byte, the writer schema's id in the
//! Schema Registry (4 bytes, big-endian), then the Avro binary datum. Schemas are fetched once
//! per id and kept: an id always names the same schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use serde_json::Value;
use tokio::sync::RwLock;

use super::avro_bounds::{Bounds, CheckedSchema};
use super::record::Rejection;

/// Why a value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The record itself is bad (or names a schema the registry does not have): reject it.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The registry could not be asked; the record is fine and must be tried again.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

/// A schema fetched from the registry: checked, or why it was refused.
type FetchedSchema = Result<Arc<CheckedSchema>, Rejection>;

/// A Schema Registry client that keeps every schema it fetched.
#[derive(Clone)]
pub struct SchemaRegistry {
    base: String,
    http: reqwest::Client,
    /// Every schema fetched, checked, or why it was refused (so a refused id is not fetched
    /// again for each of its records).
    schemas: Arc<RwLock<HashMap<u32, FetchedSchema>>>,
    /// How much one record may decode to.
    bounds: Bounds,
}

impl SchemaRegistry {
    pub fn new(base: &str, bounds: Bounds) -> Result<Self, reqwest::Error> {
        Ok(Self {
            bounds,
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            schemas: Arc::default(),
        })
    }

    /// Decodes a Confluent-framed Avro value into JSON.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Value, AvroError> {
        let (id, datum) = frame(bytes)?;
        let schema = self.schema(id).await?;
        schema
            .check_datum(datum, self.bounds)
            .map_err(|why| Rejection::new(format!("a record of schema {id}: {why}")))?;
        Ok(datum_to_json(schema.schema(), id, datum)?)
    }

    async fn schema(&self, id: u32) -> Result<Arc<CheckedSchema>, AvroError> {
        if let Some(known) = self.schemas.read().await.get(&id) {
            return Ok(known.clone()?);
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| AvroError::Unavailable(format!("GET {url}: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Rejection::new(format!("schema {id} is not in the registry")).into());
        }
        if !status.is_success() {
            return Err(AvroError::Unavailable(format!("GET {url}: HTTP {status}")));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| AvroError::Unavailable(format!("GET {url}: {e}")))?;
        if body
            .get("schemaType")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "AVRO")
        {
            return Err(Rejection::new(format!("schema {id} is not an Avro schema")).into());
        }
        let text = body.get("schema").and_then(Value::as_str).ok_or_else(|| {
            AvroError::Unavailable(format!("GET {url}: no `schema` in the answer"))
        })?;
        let checked = Schema::parse_str(text)
            .map_err(|e| Rejection::new(format!("schema {id} does not parse: {e}")))
            .and_then(|schema| {
                CheckedSchema::new(schema, self.bounds)
                    .map_err(|why| Rejection::new(format!("schema {id} is refused: {why}")))
            })
            .map(Arc::new);
        self.schemas.write().await.insert(id, checked.clone());
        Ok(checked?)
    }
}

/// Reads one Avro datum written with `schema` (id `id`, for messages) as JSON; the whole of
/// `datum` must be that one record.
pub fn datum_to_json(schema: &Schema, id: u32, datum: &[u8]) -> Result<Value, Rejection> {
    let mut reader = datum;
    let value = GenericDatumReader::builder(schema)
        .build()
        .and_then(|datums| datums.read_value(&mut reader))
        .map_err(|e| Rejection::new(format!("the value does not match schema {id}: {e}")))?;
    if !reader.is_empty() {
        return Err(Rejection::new(format!(
            "{} bytes left over after the record of schema {id}",
            reader.len()
        )));
    }
    Value::try_from(value)
        .map_err(|e| Rejection::new(format!("the record cannot be shown as JSON: {e}")))
}

/// Splits the Confluent framing off: the schema id and the Avro datum.
pub fn frame(bytes: &[u8]) -> Result<(u32, &[u8]), Rejection> {
    match bytes {
        [0, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [magic, ..] if *magic != 0 => Err(Rejection::new(format!(
            "not the Confluent wire format (magic byte {magic}, expected 0)"
        ))),
        _ => Err(Rejection::new("too short for the Confluent wire format")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use apache_avro::types::{Record, Value as AvroValue};
    use apache_avro::writer::datum::GenericDatumWriter;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::json;

    use super::*;

    const SCHEMA: &str = r#"{"type": "record", "name": "InvoicePaid", "fields": [
        {"name": "invoice", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": null}
    ]}"#;

    /// A Schema Registry on 127.0.0.1 that knows schema 7, and counts what it was asked.
    async fn registry() -> (String, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/schemas/ids/{id}",
                get(
                    |State(asked): State<Arc<AtomicUsize>>, Path(id): Path<u32>| async move {
                        asked.fetch_add(1, Ordering::SeqCst);
                        match id {
                            7 => axum::Json(json!({"schema": SCHEMA})).into_response(),
                            8 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                            _ => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(axum::body::Body::from(r#"{"error_code":40403}"#))
                                .expect("a valid response"),
                        }
                    },
                ),
            )
            .with_state(Arc::clone(&asked));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), asked)
    }

    fn framed(id: u32, invoice: &str, amount: i64) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut record = Record::new(&schema).unwrap();
        record.put("invoice", invoice);
        record.put("amount", amount);
        record.put("note", AvroValue::Union(0, Box::new(AvroValue::Null)));
        let mut out = vec![0];
        out.extend(id.to_be_bytes());
        out.extend(
            GenericDatumWriter::builder(&schema)
                .build()
                .unwrap()
                .write_value_to_vec(record)
                .unwrap(),
        );
        out
    }

    #[tokio::test]
    async fn records_decode_to_json_with_the_schema_fetched_once() {
        let (base, asked) = registry().await;
        let registry = SchemaRegistry::new(&base, Bounds::for_payload(256 * 1024)).unwrap();
        let first = registry.decode(&framed(7, "inv-1", 500)).await.unwrap();
        assert_eq!(
            first,
            json!({"invoice": "inv-1", "amount": 500, "note": null})
        );
        let second = registry.decode(&framed(7, "inv-2", 7)).await.unwrap();
        assert_eq!(second["invoice"], "inv-2");
        assert_eq!(asked.load(Ordering::SeqCst), 1, "the schema is cached");
    }

    #[tokio::test]
    async fn bad_values_are_rejected_and_a_failing_registry_is_not_their_fault() {
        let (base, _) = registry().await;
        let registry = SchemaRegistry::new(&base, Bounds::for_payload(256 * 1024)).unwrap();
        let rejected = |result: Result<Value, AvroError>| match result {
            Err(AvroError::Rejected(reason)) => reason.0,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert!(
            rejected(registry.decode(&framed(9, "x", 1)).await).contains("not in the registry")
        );
        assert!(rejected(registry.decode(b"{\"json\": 1}").await).contains("magic byte"));
        assert!(rejected(registry.decode(&[0, 0, 0]).await).contains("too short"));
        let mut truncated = framed(7, "inv-1", 500);
        truncated.truncate(truncated.len() - 2);
        assert!(rejected(registry.decode(&truncated).await).contains("schema 7"));
        assert!(matches!(
            registry.decode(&framed(8, "x", 1)).await,
            Err(AvroError::Unavailable(_))
        ));
        let unreachable =
            SchemaRegistry::new("http://127.0.0.1:9", Bounds::for_payload(256 * 1024)).unwrap();
        assert!(matches!(
            unreachable.decode(&framed(7, "x", 1)).await,
            Err(AvroError::Unavailable(_))
        ));
    }
}
