use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer};

use crate::KafkaSettings;

/// Why a Kafka client could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(String),
    #[error("kafka broker unreachable: {0}")]
    Unreachable(String),
    #[error("kafka settings: {0}")]
    Settings(String),
}

/// Settings every client shares; the role's own settings go on top, then the user's overrides.
pub(crate) fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", "hookstream");
    config
}

/// Applies the user's `HOOKSTREAM_KAFKA_PROPERTIES` last, so they can override anything.
fn with_overrides(mut config: ClientConfig, settings: &KafkaSettings) -> ClientConfig {
    for (key, value) in &settings.properties.0 {
        config.set(key, value);
    }
    config
}

pub(crate) fn create<T: FromClientConfig>(
    config: ClientConfig,
    settings: &KafkaSettings,
    what: &str,
) -> Result<T, KafkaError> {
    with_overrides(config, settings)
        .create()
        .map_err(|e| KafkaError::Client(format!("creating {what}: {e}")))
}

/// A producer that loses nothing it acknowledged: `acks=all`, idempotent (no duplicates from
/// its own retries), ordered per partition.
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    let mut config = base_config(settings);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            settings.produce_timeout.as_millis().to_string(),
        );
    create(config, settings, "producer")
}

/// A group consumer whose offsets are stored only by the caller (`enable.auto.offset.store=false`)
/// and committed in the background, so an offset is committed only once its work is finished.
pub fn consumer<C: ConsumerContext + 'static>(
    settings: &KafkaSettings,
    group_id: &str,
    context: C,
) -> Result<StreamConsumer<C>, KafkaError> {
    consumer_with_fetch_wait(settings, group_id, context, Duration::from_millis(100))
}

/// [`consumer`] whose fetch with nothing to return waits at most `fetch_wait`: a partition
/// resumed meanwhile (a retry tier head coming due, a held partition let go) joins the next
/// fetch, so this bounds how late it is read; shorter costs the broker more idle fetches.
pub fn consumer_with_fetch_wait<C: ConsumerContext + 'static>(
    settings: &KafkaSettings,
    group_id: &str,
    context: C,
    fetch_wait: Duration,
) -> Result<StreamConsumer<C>, KafkaError> {
    let mut config = base_config(settings);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Incremental rebalancing: a member joining or leaving moves only the partitions that
        // change owner; the others keep being consumed, and nothing is re-read from them.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string());
    StreamConsumer::from_config_and_context(&with_overrides(config, settings), context)
        .map_err(|e| KafkaError::Client(format!("creating consumer: {e}")))
}

/// Whether the brokers answer a metadata request within `timeout` (for readiness probes).
pub async fn broker_reachable(
    producer: &FutureProducer,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let producer = producer.clone();
    // fetch_metadata blocks the calling thread; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|e| KafkaError::Unreachable(e.to_string()))
    })
    .await
    .map_err(|e| KafkaError::Client(format!("metadata task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse_for_test;

    /// The librdkafka built in takes TLS and SASL (SCRAM) settings, as the Helm chart writes
    /// them; one built without OpenSSL refuses `SASL_SSL` when the client is created.
    #[tokio::test]
    async fn clients_accept_tls_and_sasl_settings() {
        let settings = parse_for_test(&[
            "--properties",
            "security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,sasl.username=u,sasl.password=p",
        ]);
        let producer = producer(&settings);
        assert!(producer.is_ok(), "{:?}", producer.err());
        let consumer = consumer(
            &settings,
            "group",
            rdkafka::consumer::DefaultConsumerContext,
        );
        assert!(consumer.is_ok(), "{:?}", consumer.err());
    }
}
