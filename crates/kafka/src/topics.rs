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

    /// Delivery tasks the dispatcher could not process (undecodable, or refused by the store
    /// for good), as they were read, with the reason in a header: kept to be put back on the
    /// deliveries topic once the cause is fixed.
    pub fn quarantine(&self) -> String {
        format!("{}quarantine", self.prefix)
    }

    /// The Avro writer schemas in use, keyed by fingerprint (hex), compacted: every service
    /// registers the schema it writes at start, so an older reader can learn a newer writer's
    /// schema during a rolling upgrade.
    pub fn schemas(&self) -> String {
        format!("{}schemas", self.prefix)
    }

    /// The schemas topic as it is created: one partition, compacted (one record per schema).
    pub fn schemas_spec(&self, settings: &KafkaSettings) -> TopicSpec {
        TopicSpec {
            partitions: 1,
            compacted: true,
            ..TopicSpec::new(self.schemas(), settings, Duration::ZERO)
        }
    }

    /// What services that must agree record of their settings, one record per key, compacted:
    /// the retry tiers the retry tier reads, which the dispatchers check theirs against (see
    /// `agreement`).
    pub fn settings(&self) -> String {
        format!("{}settings", self.prefix)
    }

    /// The settings topic as it is created: one partition, compacted.
    pub fn settings_spec(&self, settings: &KafkaSettings) -> TopicSpec {
        TopicSpec {
            partitions: 1,
            compacted: true,
            ..TopicSpec::new(self.settings(), settings, Duration::ZERO)
        }
    }

    /// Operational events (CloudEvents, JSON), keyed by tenant: written by the dispatcher and
    /// replay, read by ingest, which sends each to the tenant's operator endpoints.
    pub fn ops_events(&self) -> String {
        format!("{}ops-events", self.prefix)
    }

    /// The operational events topic as it is created: kept as long as dead letters.
    pub fn ops_events_spec(&self, settings: &KafkaSettings) -> TopicSpec {
        TopicSpec::new(self.ops_events(), settings, settings.dlq_retention)
    }

    /// Source records that could not become events, with the reason in a header.
    pub fn ingest_rejected(&self) -> String {
        format!("{}ingest.rejected", self.prefix)
    }

    /// Every topic the delivery path uses: deliveries, each retry tier (its name and delay), the
    /// DLQ, the quarantine, the schemas, the operational events and the settings. Retry and DLQ topics get the deliveries topic's partition count, so an endpoint's
    /// tasks keep one partition wherever they wait.
    pub fn delivery_path_specs(
        &self,
        settings: &KafkaSettings,
        tiers: &[(String, Duration)],
    ) -> Vec<TopicSpec> {
        let mut specs = vec![
            self.deliveries_spec(settings),
            TopicSpec::new(self.dlq(), settings, settings.dlq_retention),
            TopicSpec::new(self.quarantine(), settings, settings.dlq_retention),
            self.schemas_spec(settings),
            self.ops_events_spec(settings),
            self.settings_spec(settings),
        ];
        specs.extend(tiers.iter().map(|(name, delay)| {
            TopicSpec::new(
                self.retry(name),
                settings,
                delay.saturating_add(settings.retry_retention_margin),
            )
        }));
        specs
    }

    /// The deliveries topic as it is created.
    pub fn deliveries_spec(&self, settings: &KafkaSettings) -> TopicSpec {
        TopicSpec::new(self.deliveries(), settings, settings.deliveries_retention)
    }
}

/// A topic a service needs, created at start-up if missing, with explicit settings rather than
/// the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `min.insync.replicas`: with acks=all, how many replicas hold a record before it counts.
    pub min_insync_replicas: i32,
    /// `retention.ms`: how long records are kept (deleted after), unless compacted.
    pub retention: Duration,
    /// Compacted: the newest record of each key is kept, however old.
    pub compacted: bool,
}

impl TopicSpec {
    /// A topic laid out as configured (partitions, replication, min ISR), keeping records for
    /// `retention`.
    pub fn new(name: String, settings: &KafkaSettings, retention: Duration) -> Self {
        Self {
            name,
            partitions: settings.deliveries_partitions,
            replication_factor: settings.replication_factor,
            min_insync_replicas: settings.min_insync_replicas(),
            retention,
            compacted: false,
        }
    }

    /// The topic-level configuration it is created with.
    pub fn config(&self) -> Vec<(&'static str, String)> {
        let retention_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let cleanup = if self.compacted {
            vec![("cleanup.policy", "compact".to_owned())]
        } else {
            vec![
                ("cleanup.policy", "delete".to_owned()),
                ("retention.ms", retention_ms.to_string()),
            ]
        };
        cleanup
            .into_iter()
            .chain([
                ("min.insync.replicas", self.min_insync_replicas.to_string()),
                // Record times are the writer's: the retry tier bounds a task's wait by when it was
                // written, which a broker appending its own time would shift by its clock's skew.
                ("message.timestamp.type", "CreateTime".to_owned()),
            ])
            .collect()
    }
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
    settings
        .check_topic_settings()
        .map_err(KafkaError::Settings)?;
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
    let configs: Vec<Vec<(&str, String)>> = specs.iter().map(TopicSpec::config).collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&configs)
        .map(|(spec, config)| {
            config.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
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
            // An existing topic keeps its settings: they are changed with Kafka's own tools.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse_for_test as settings;

    fn config_of(spec: &TopicSpec, key: &str) -> String {
        spec.config()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{} has no {key}", spec.name))
    }

    #[test]
    fn every_topic_is_created_with_explicit_settings() {
        let settings = settings(&[]);
        let topics = Topics::new(&settings);
        let mut specs = topics.delivery_path_specs(
            &settings,
            &[
                ("5s".into(), Duration::from_secs(5)),
                ("24h".into(), Duration::from_secs(86_400)),
            ],
        );
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "hookstream.deliveries",
                "hookstream.dlq",
                "hookstream.quarantine",
                "hookstream.schemas",
                "hookstream.ops-events",
                "hookstream.settings",
                "hookstream.retry.5s",
                "hookstream.retry.24h"
            ]
        );
        let recorded = specs.remove(5);
        assert_eq!(recorded.partitions, 1);
        assert_eq!(config_of(&recorded, "cleanup.policy"), "compact");
        let schemas = specs.remove(3);
        assert_eq!(schemas.partitions, 1);
        assert_eq!(config_of(&schemas, "cleanup.policy"), "compact");
        assert!(
            !schemas.config().iter().any(|(k, _)| *k == "retention.ms"),
            "a registered schema is kept however old"
        );
        let day_ms = 86_400_000_u64;
        for spec in &specs {
            assert_eq!(spec.partitions, 8);
            assert_eq!(spec.replication_factor, 1);
            assert_eq!(config_of(spec, "min.insync.replicas"), "1");
            assert_eq!(config_of(spec, "cleanup.policy"), "delete");
            assert_eq!(config_of(spec, "message.timestamp.type"), "CreateTime");
        }
        assert_eq!(
            config_of(&specs[0], "retention.ms"),
            (7 * day_ms).to_string()
        );
        for kept_long in [&specs[1], &specs[2], &specs[3]] {
            assert_eq!(
                config_of(kept_long, "retention.ms"),
                (30 * day_ms).to_string(),
                "dead letters, quarantined tasks and operational events are kept as long"
            );
        }
        // A tier keeps a task for its delay plus the margin.
        assert_eq!(
            config_of(&specs[4], "retention.ms"),
            (7 * day_ms + 5_000).to_string()
        );
        assert_eq!(
            config_of(&specs[5], "retention.ms"),
            (8 * day_ms).to_string()
        );
    }

    #[test]
    fn settings_that_would_lose_tasks_or_refuse_writes_are_refused() {
        assert_eq!(settings(&[]).check_topic_settings(), Ok(()));
        let too_many = settings(&["--min-insync-replicas", "2"]).check_topic_settings();
        assert!(
            too_many
                .as_ref()
                .is_err_and(|e| e.contains("HOOKSTREAM_MIN_INSYNC_REPLICAS (2)")),
            "{too_many:?}"
        );
        for (flag, name) in [
            ("--deliveries-retention", "HOOKSTREAM_DELIVERIES_RETENTION"),
            (
                "--retry-retention-margin",
                "HOOKSTREAM_RETRY_RETENTION_MARGIN",
            ),
            ("--dlq-retention", "HOOKSTREAM_DLQ_RETENTION"),
        ] {
            let short = settings(&[flag, "10m"]).check_topic_settings();
            assert!(
                short.as_ref().is_err_and(|e| e.starts_with(name)),
                "{short:?}"
            );
        }
        let none = settings(&["--deliveries-partitions", "0"]).check_topic_settings();
        assert!(none.is_err());
    }

    #[test]
    fn min_insync_follows_the_replication_factor_unless_set() {
        assert_eq!(
            settings(&["--replication-factor", "3"]).min_insync_replicas(),
            2
        );
        assert_eq!(
            settings(&["--replication-factor", "2"]).min_insync_replicas(),
            1
        );
        assert_eq!(
            settings(&["--replication-factor", "3", "--min-insync-replicas", "3"])
                .min_insync_replicas(),
            3
        );
        let custom = settings(&[
            "--dlq-retention",
            "90d",
            "--retry-retention-margin",
            "1h",
            "--deliveries-retention",
            "12h",
        ]);
        assert_eq!(custom.dlq_retention, Duration::from_secs(90 * 86_400));
        assert_eq!(custom.retry_retention_margin, Duration::from_secs(3600));
        assert_eq!(custom.deliveries_retention, Duration::from_secs(12 * 3600));
    }
}
