//! Reading delivery tasks, including those written with a schema newer than this build: during
//! a rolling upgrade with ingest ahead, the writer's schema is looked up on the schemas topic
//! and, when Avro resolution allows, learned; what still cannot be read is for the quarantine.

use std::time::{Duration, Instant};

use hookstream_kafka::SchemaRegistry;
use hookstream_model::codec::CodecError;
use hookstream_model::task::DeliveryTask;

use crate::blocking::blocking;

/// How long a lookup on the schemas topic may hold the consumer loop (and every endpoint).
const LOOKUP_PATIENCE: Duration = Duration::from_secs(2);
/// After a lookup failed (Kafka slow or the topic unreadable), how long unknown schemas go
/// straight to the quarantine instead of holding the loop again.
const AFTER_A_FAILED_LOOKUP: Duration = Duration::from_secs(30);

pub struct TaskDecoder {
    registry: SchemaRegistry,
    failed_at: Option<Instant>,
}

impl TaskDecoder {
    pub fn new(registry: SchemaRegistry) -> Self {
        Self {
            registry,
            failed_at: None,
        }
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
        if self
            .failed_at
            .is_some_and(|at| at.elapsed() < AFTER_A_FAILED_LOOKUP)
        {
            return Err(format!(
                "{unknown}, and the schemas topic could not be read just now"
            ));
        }
        // The lookup reads Kafka synchronously: the loop's other work waits, bounded. (It
        // reads only when the topic grew since the last look, so it is quick when it finds
        // nothing new.)
        let registry = &mut self.registry;
        let looked_up = blocking(|| registry.lookup(fingerprint, LOOKUP_PATIENCE));
        let found = match looked_up {
            Ok(found) => {
                self.failed_at = None;
                found
            }
            Err(err) => {
                self.failed_at = Some(Instant::now());
                return Err(format!(
                    "{unknown}, and the schemas topic could not be read: {err}"
                ));
            }
        }
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
