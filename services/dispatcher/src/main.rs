//! `hookstream-dispatcher`: sends the webhooks.

mod classify;
mod config;
mod consumer;
mod lanes;
mod metrics;
mod sender;
mod webhook;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rdkafka::consumer::Consumer;

use hookstream_kafka::{Topics, ensure_topics};
use hookstream_runtime::ops::{self, ReadinessCheck};
use hookstream_runtime::{logging, shutdown};

use crate::config::DispatcherConfig;
use crate::consumer::{ConsumeLoop, RebalanceListener};
use crate::sender::Sender;
use crate::worker::Worker;

/// Leaves the consumer group. librdkafka's close blocks while the broker is unreachable, so it
/// runs off the async workers and is given a bounded time; the group evicts a member that left
/// without saying so after its session timeout.
async fn close_consumer(consumer: Arc<rdkafka::consumer::StreamConsumer<RebalanceListener>>) {
    let close = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(Duration::from_secs(10), close)
        .await
        .is_err()
    {
        tracing::warn!("leaving the consumer group timed out; exiting anyway");
        std::process::exit(0);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = DispatcherConfig::parse();
    logging::init("dispatcher");
    let shutdown = shutdown::on_signal();

    let store = config.store.open().await.context("opening the store")?;
    let topics = Topics::new(&config.kafka);
    ensure_topics(&config.kafka, &[topics.deliveries_spec(&config.kafka)])
        .await
        .context("creating topics")?;

    let (listener, revoked) = RebalanceListener::new();
    let consumer = Arc::new(
        hookstream_kafka::consumer(&config.kafka, &config.group_id, listener)
            .context("creating the Kafka consumer")?,
    );
    consumer
        .subscribe(&[&topics.deliveries()])
        .context("subscribing to the deliveries topic")?;
    // Readiness asks the broker through a producer, which the retry tiers will use as well.
    let producer =
        hookstream_kafka::producer(&config.kafka).context("creating the Kafka producer")?;

    let worker = Arc::new(Worker {
        store: Arc::clone(&store),
        sender: Sender::new(config.request_timeout, config.response_snippet_bytes)
            .context("building the HTTP client")?,
        destinations: config.destinations.policy(),
        shutdown: shutdown.clone(),
    });

    let readiness = vec![
        ReadinessCheck::broker(producer),
        ReadinessCheck::store(Arc::clone(&store)),
    ];
    let ops_listener = tokio::net::TcpListener::bind(config.ops_addr)
        .await
        .with_context(|| format!("binding the ops endpoints to {}", config.ops_addr))?;
    let ops_server = tokio::spawn(
        axum::serve(ops_listener, ops::router(readiness))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(ops_addr = %config.ops_addr, topic = %topics.deliveries(), "dispatcher running");

    ConsumeLoop {
        consumer: Arc::clone(&consumer),
        revoked,
        topic: topics.deliveries(),
        worker,
        max_in_flight: config.max_in_flight,
        drain_timeout: config.drain_timeout,
        shutdown: shutdown.clone(),
    }
    .run()
    .await;

    shutdown.cancel();
    close_consumer(consumer).await;
    ops_server
        .await
        .context("ops server task")?
        .context("serving ops endpoints")?;
    tracing::info!("dispatcher stopped");
    Ok(())
}
