//! The schemas topic: the Avro writer schemas in use, one record per schema, keyed by its
//! fingerprint in hex. Every service registers the schema it writes before it writes, so a
//! reader that meets a fingerprint it was not built with (a rolling upgrade with the writer
//! ahead) can look the schema up and, if Avro resolution allows, read the record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaSettings;
use crate::clients::{KafkaError, base_config, create};

/// A schema's registry key: its 8-byte fingerprint in lower-case hex.
pub fn schema_key(fingerprint: [u8; 8]) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

fn fingerprint_of(key: &[u8]) -> Option<[u8; 8]> {
    let text = std::str::from_utf8(key).ok()?;
    if text.len() != 16 {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Registers the schemas a service writes, acknowledged by Kafka before it returns.
/// Registering again is harmless: the topic is compacted by key.
pub async fn register_schemas(
    producer: &FutureProducer,
    topic: &str,
    schemas: &[([u8; 8], &str)],
    patience: Duration,
) -> Result<(), KafkaError> {
    for (fingerprint, text) in schemas {
        let key = schema_key(*fingerprint);
        producer
            .send(FutureRecord::to(topic).key(&key).payload(*text), patience)
            .await
            .map_err(|(e, _)| KafkaError::Client(format!("registering schema {key}: {e}")))?;
    }
    Ok(())
}

/// Reads the schemas topic on demand. A lookup reads only what was registered since the last
/// one, and only if the topic grew, so meeting many unknown fingerprints stays cheap.
pub struct SchemaRegistry {
    consumer: BaseConsumer,
    topic: String,
    next_offset: i64,
    registered: HashMap<[u8; 8], String>,
}

impl SchemaRegistry {
    pub fn new(settings: &KafkaSettings, topic: String) -> Result<Self, KafkaError> {
        let mut config = base_config(settings);
        config
            .set("group.id", "hookstream-schema-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        Ok(Self {
            consumer: create(config, settings, "schema registry reader")?,
            topic,
            next_offset: 0,
            registered: HashMap::new(),
        })
    }

    /// The schema text registered under `fingerprint`, if any. Blocks for up to `patience`.
    pub fn lookup(
        &mut self,
        fingerprint: [u8; 8],
        patience: Duration,
    ) -> Result<Option<String>, KafkaError> {
        if let Some(text) = self.registered.get(&fingerprint) {
            return Ok(Some(text.clone()));
        }
        let deadline = Instant::now() + patience;
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, 0, patience)
            .map_err(|e| KafkaError::Client(format!("reading {}: {e}", self.topic)))?;
        if high <= self.next_offset {
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, 0, Offset::Offset(self.next_offset.max(low)))
            .map_err(|e| KafkaError::Client(format!("reading {}: {e}", self.topic)))?;
        self.consumer
            .assign(&assignment)
            .map_err(|e| KafkaError::Client(format!("reading {}: {e}", self.topic)))?;
        while self.next_offset < high {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KafkaError::Client(format!(
                    "reading {}: not at offset {high} after {patience:?}",
                    self.topic
                )));
            }
            match self.consumer.poll(left.min(Duration::from_millis(200))) {
                Some(Ok(message)) => {
                    self.next_offset = message.offset() + 1;
                    let key = message.key().and_then(fingerprint_of);
                    let text = message.payload().map(String::from_utf8_lossy);
                    if let (Some(key), Some(text)) = (key, text) {
                        self.remember(key, text.into_owned());
                    }
                }
                Some(Err(e)) => {
                    return Err(KafkaError::Client(format!("reading {}: {e}", self.topic)));
                }
                // Compaction can leave gaps: the position says where the reader really is.
                None => {
                    if let Ok(position) = self.consumer.position()
                        && let Some(Offset::Offset(at)) =
                            position.find_partition(&self.topic, 0).map(|p| p.offset())
                    {
                        self.next_offset = self.next_offset.max(at);
                    }
                }
            }
        }
        Ok(self.registered.get(&fingerprint).cloned())
    }

    /// The first text registered under a key is the one kept: a later, different one under the
    /// same key (a fingerprint collision, made on purpose or not) is refused loudly.
    fn remember(&mut self, key: [u8; 8], text: String) {
        match self.registered.get(&key) {
            None => {
                self.registered.insert(key, text);
            }
            Some(first) if *first != text => tracing::error!(
                key = %schema_key(key),
                "a different schema was registered under a key already taken; kept the first"
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fingerprints_in_hex_and_others_are_ignored() {
        let fp = [0x01, 0xab, 0, 0xff, 0x10, 0x20, 0x30, 0x7f];
        assert_eq!(schema_key(fp), "01ab00ff1020307f");
        assert_eq!(fingerprint_of(schema_key(fp).as_bytes()), Some(fp));
        for bad in [
            &b""[..],
            b"01ab",
            b"zzab00ff1020307f",
            b"01ab00ff1020307f00",
        ] {
            assert_eq!(fingerprint_of(bad), None);
        }
    }
}
