//! `hookstream-replay`: keeps dead letters queryable and runs replay batches.

mod config;
mod indexer;
mod metrics;
mod ops_events;
mod runner;

use std::sync::Arc;

use anyhow::Context;
use rdkafka::consumer::{Consumer, DefaultConsumerContext};

use hookstream_kafka::ops_events::OpsEventPublisher;
use hookstream_kafka::task_publisher::TaskPublisher;
use hookstream_kafka::{Topics, commit_and_close, ensure_topics, register_schemas};
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::ops::{OpsServer, ReadinessCheck};
use hookstream_runtime::{lag, logging, shutdown};

use crate::config::ReplayConfig;
use crate::indexer::Indexer;
use crate::ops_events::Teller;
use crate::runner::Runner;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: ReplayConfig = hookstream_config::load(hookstream_config::Service::Replay);
    let telemetry = logging::init("replay");
    config.metrics.install();
    metrics::register();
    let shutdown = shutdown::on_signal();

    let store = config.store.open().await.context("opening the store")?;
    let checked = hookstream_store::agree_on_topic_prefix(
        store.as_ref(),
        &config.kafka.topic_prefix,
        hookstream_store::PrefixRole::Checks,
    )
    .await?;
    if !checked {
        tracing::warn!(
            prefix = %config.kafka.topic_prefix,
            "no topic prefix recorded in the store yet (ingest records it when it starts): replay's was not checked"
        );
    }
    // Fails at once on a store that cannot hold dead letters, rather than on the first one.
    store
        .running_batches()
        .await
        .context("reading replay batches from the store")?;
    let topics = Topics::new(&config.kafka);
    ensure_topics(
        &config.kafka,
        &topics.delivery_path_specs(&config.kafka, &[]),
    )
    .await
    .context("creating topics")?;
    let producer =
        hookstream_kafka::producer(&config.kafka).context("creating the Kafka producer")?;
    // Registered before any replayed task is written with it, for older dispatchers.
    register_schemas(
        &producer,
        &topics.schemas(),
        &[DeliveryTask::schemas().current_schema()],
        config.kafka.produce_timeout,
    )
    .await
    .context("registering the delivery task schema")?;
    let consumer = Arc::new(
        hookstream_kafka::consumer(&config.kafka, &config.group_id, DefaultConsumerContext)
            .context("creating the Kafka consumer")?,
    );
    consumer
        .subscribe(&[&topics.dlq()])
        .context("subscribing to the dead-letter topic")?;

    let readiness = vec![
        ReadinessCheck::broker(producer.clone()),
        ReadinessCheck::store(Arc::clone(&store)),
    ];
    let ops_server = OpsServer::spawn(config.ops_addr, readiness, shutdown.clone())
        .await
        .with_context(|| format!("binding the ops endpoints to {}", config.ops_addr))?;
    lag::spawn(
        &config.kafka,
        &config.group_id,
        vec![topics.dlq()],
        config.metrics.lag_interval,
        shutdown.clone(),
    )
    .context("creating the consumer lag reader")?;
    tracing::info!(ops_addr = %config.ops_addr, dlq = %topics.dlq(), rate_per_endpoint = config.rate_per_endpoint, "replay running");

    let teller = Teller::new(OpsEventPublisher::new(
        producer.clone(),
        topics.ops_events(),
    ));
    let runner = Runner::new(
        Arc::clone(&store),
        TaskPublisher::new(producer.clone(), topics.deliveries()),
        teller.clone(),
        config.rate_per_endpoint,
        shutdown.clone(),
    );
    let runs = tokio::spawn(runner.run());
    Indexer {
        consumer: Arc::clone(&consumer),
        store,
        ops_events: teller,
        shutdown: shutdown.clone(),
    }
    .run()
    .await;

    shutdown.cancel();
    runs.await.context("replay batch runner")?;
    if !commit_and_close(consumer).await {
        // Exits without dropping anything: the buffered log lines are written first.
        telemetry.shutdown();
        std::process::exit(0);
    }
    ops_server
        .stopped()
        .await
        .context("serving ops endpoints")?;
    tracing::info!("replay stopped");
    telemetry.shutdown();
    Ok(())
}
