use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaSettings;
use crate::clients::{KafkaError, base_config, create};

/// The names of Hookstream's topics, under the configured prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(settings: &KafkaSettings) -> Self {
        Self {
            prefix: settings.topic_prefix.clone(),
        }
    }

    /// Delivery tasks, keyed by endpoint id.
    pub fn deliveries(&self) -> String {
        format!("{}deliveries", self.prefix)
    }

    /// Tasks waiting `tier` before their next attempt (`<prefix>retry.5s`), keyed by endpoint id.
    pub fn retry(&self, tier_name: &str) -> String {
        format!("{}retry.{tier_name}", self.prefix)
    }

    /// Dead letters: deliveries that will not be tried again, keyed by endpoint id.
    pub fn dlq(&self) -> String {
        format!("{}dlq", self.prefix)
    }

    /// Source records that could not become events, with the reason in a header.
    pub fn ingest_rejected(&self) -> String {
        format!("{}ingest.rejected", self.prefix)
    }

    /// Every topic the delivery path uses: deliveries, each retry tier, the DLQ. Retry and DLQ
    /// topics get the deliveries topic's partition count, so an endpoint's tasks keep one
    /// partition wherever they wait.
    pub fn delivery_path_specs(
        &self,
        settings: &KafkaSettings,
        tier_names: &[String],
    ) -> Vec<TopicSpec> {
        let spec = |name: String| TopicSpec {
            name,
            partitions: settings.deliveries_partitions,
            replication_factor: settings.replication_factor,
        };
        let mut specs = vec![spec(self.deliveries()), spec(self.dlq())];
        specs.extend(tier_names.iter().map(|tier| spec(self.retry(tier))));
        specs
    }

    /// The deliveries topic as it is created, with the configured partitions and replication.
    pub fn deliveries_spec(&self, settings: &KafkaSettings) -> TopicSpec {
        TopicSpec {
            name: self.deliveries(),
            partitions: settings.deliveries_partitions,
            replication_factor: settings.replication_factor,
        }
    }
}

/// A topic a service needs, created at start-up if missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// How long start-up waits for the broker to answer before giving up.
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// Creates the topics that do not exist yet. Idempotent: topics that exist are left as they are
/// (their partition count is not changed), so every instance of every service can call it.
/// A broker that is still starting is waited for, up to a minute, backing off between tries.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<(), KafkaError> {
    if !settings.create_topics {
        tracing::info!("topic creation is off; expecting the topics to exist");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match create_missing(settings, specs).await {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() < STARTUP_PATIENCE => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot create topics yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

async fn create_missing(settings: &KafkaSettings, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        create(base_config(settings), settings, "admin client")?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| KafkaError::Client(format!("creating topics: {e}")))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists");
            }
            Err((name, code)) => {
                return Err(KafkaError::Client(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}
