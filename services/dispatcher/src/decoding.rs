//! Reading delivery tasks, including those written with a schema newer than this build: during
//! a rolling upgrade with ingest ahead, the writer's schema is looked up on the schemas topic
//! and, when Avro resolution allows, learned; what still cannot be read is for the quarantine.

use std::time::Duration;

use hookstream_kafka::SchemaRegistry;
use hookstream_model::codec::CodecError;
use hookstream_model::task::DeliveryTask;

/// How long a lookup on the schemas topic may hold the consumer loop.
const LOOKUP_PATIENCE: Duration = Duration::from_secs(10);

pub struct TaskDecoder {
    registry: SchemaRegistry,
}

impl TaskDecoder {
    pub fn new(registry: SchemaRegistry) -> Self {
        Self { registry }
    }

    /// The task in `payload`, or why it cannot be read (the quarantine's reason).
    pub fn decode(&mut self, payload: Option<&[u8]>) -> Result<DeliveryTask, String> {
        let payload = payload.ok_or_else(|| "undecodable: empty message".to_owned())?;
        match DeliveryTask::decode(payload) {
            Err(CodecError::UnknownSchema(fingerprint)) => {
                self.learn(fingerprint)
                    .map_err(|why| format!("undecodable: {why}"))?;
                DeliveryTask::decode(payload).map_err(|err| format!("undecodable: {err}"))
            }
            other => other.map_err(|err| format!("undecodable: {err}")),
        }
    }

    /// Looks `fingerprint` up on the schemas topic and learns it.
    fn learn(&mut self, fingerprint: [u8; 8]) -> Result<(), String> {
        let unknown = CodecError::UnknownSchema(fingerprint).to_string();
        // The lookup reads Kafka synchronously: the loop's other work waits, bounded.
        let found =
            tokio::task::block_in_place(|| self.registry.lookup(fingerprint, LOOKUP_PATIENCE))
                .map_err(|err| {
                    format!("{unknown}, and the schemas topic could not be read: {err}")
                })?
                .ok_or_else(|| format!("{unknown}, nor is it registered"))?;
        DeliveryTask::schemas()
            .learn(fingerprint, &found)
            .map_err(|err| format!("{unknown}: registered, but {err}"))?;
        tracing::info!(
            fingerprint = %hookstream_kafka::schema_key(fingerprint),
            "learned a newer delivery task schema from the schemas topic"
        );
        Ok(())
    }
}
