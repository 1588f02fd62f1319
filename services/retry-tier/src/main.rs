//! `hookstream-retry-tier`: puts retry tasks back on the deliveries topic when they are due.

mod config;
mod metrics;
mod tier_loop;
mod tiers;
mod waiting;

use std::sync::Arc;

use anyhow::Context;
use rdkafka::consumer::Consumer;

use hookstream_kafka::{
    Topics, commit_and_close, ensure_topics, existing_tiers, record_read_tiers,
};
use hookstream_runtime::ops::{OpsServer, ReadinessCheck};
use hookstream_runtime::{lag, logging, shutdown};

use crate::config::RetryTierConfig;
use crate::tier_loop::{AssignmentListener, TierLoop};
use crate::waiting::ReadAhead;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: RetryTierConfig = hookstream_config::load(hookstream_config::Service::RetryTier);
    let telemetry = logging::init("retry-tier");
    config.metrics.install();
    metrics::register();
    let shutdown = shutdown::on_signal();

    let retry = config.retry.policy().context("the retry schedule")?;
    let tiers: Vec<(String, std::time::Duration)> = retry
        .topic_tiers()
        .iter()
        .map(|t| (t.name(), t.0))
        .collect();
    let topics = Topics::new(&config.kafka);
    ensure_topics(
        &config.kafka,
        &topics.delivery_path_specs(&config.kafka, &tiers),
    )
    .await
    .context("creating topics")?;
    let existing = existing_tiers(&config.kafka, config.kafka.produce_timeout)
        .await
        .context("listing the retry tier topics")?;
    let (tiers, unread) = tiers::tiers_to_read(tiers, existing);
    for (name, reason) in unread {
        tracing::warn!(
            topic = %topics.retry(&name),
            %reason,
            "not a retry tier's topic: left unread"
        );
    }
    let tier_names: Vec<String> = tiers.iter().map(|(name, _)| name.clone()).collect();
    let tier_topics: Vec<String> = tier_names.iter().map(|t| topics.retry(t)).collect();

    let producer =
        hookstream_kafka::producer(&config.kafka).context("creating the Kafka producer")?;
    // What the dispatchers check their schedules against before they start.
    record_read_tiers(
        &config.kafka,
        &producer,
        &tier_names,
        config.kafka.produce_timeout,
    )
    .await
    .context("recording the retry tiers read")?;

    let (listener, revoked) = AssignmentListener::new();
    let consumer = Arc::new(
        hookstream_kafka::consumer(&config.kafka, &config.group_id, listener)
            .context("creating the Kafka consumer")?,
    );
    let subscription: Vec<&str> = tier_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&subscription)
        .context("subscribing to the retry tier topics")?;

    let readiness = vec![ReadinessCheck::broker(producer.clone())];
    let ops_server = OpsServer::spawn(config.ops_addr, readiness, shutdown.clone())
        .await
        .with_context(|| format!("binding the ops endpoints to {}", config.ops_addr))?;
    lag::spawn(
        &config.kafka,
        &config.group_id,
        tier_topics.clone(),
        config.metrics.lag_interval,
        shutdown.clone(),
    )
    .context("creating the consumer lag reader")?;
    tracing::info!(ops_addr = %config.ops_addr, topics = ?tier_topics, "retry tier running");

    TierLoop {
        consumer: Arc::clone(&consumer),
        revoked,
        producer,
        deliveries_topic: topics.deliveries(),
        tier_topics: tier_topics.clone(),
        tier_delays: tiers
            .iter()
            .map(|(name, delay)| (topics.retry(name), *delay))
            .collect(),
        read_ahead: ReadAhead {
            window: time::Duration::try_from(config.read_ahead)
                .context("the read-ahead window is too long")?,
            max_bytes: config.read_ahead_bytes,
        },
        shutdown: shutdown.clone(),
    }
    .run()
    .await;

    shutdown.cancel();
    if !commit_and_close(consumer).await {
        // Exits without dropping anything: the buffered log lines are written first.
        telemetry.shutdown();
        std::process::exit(0);
    }
    ops_server
        .stopped()
        .await
        .context("serving ops endpoints")?;
    tracing::info!("retry tier stopped");
    telemetry.shutdown();
    Ok(())
}
