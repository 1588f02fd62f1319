//! `hookstream-ingest`: the HTTP API and the way events come in.

mod api;
mod config;
mod fanout;
mod intake;
mod metrics;
mod outbox;
mod publisher;
mod retention;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use hookstream_kafka::{Topics, ensure_topics};
use hookstream_model::event::IdempotencyWindow;
use hookstream_runtime::ops::{self, ReadinessCheck};
use hookstream_runtime::{logging, shutdown};

use crate::api::{ApiToken, AppState};
use crate::config::IngestConfig;
use crate::intake::Intake;
use crate::publisher::TaskPublisher;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = IngestConfig::parse();
    logging::init("ingest");
    if config.api_token.trim().len() < 16 {
        anyhow::bail!("HOOKSTREAM_API_TOKEN must be at least 16 characters");
    }
    let shutdown = shutdown::on_signal();

    let store = config.store.open().await.context("opening the store")?;
    let topics = Topics::new(&config.kafka);
    ensure_topics(&config.kafka, &[topics.deliveries_spec(&config.kafka)])
        .await
        .context("creating topics")?;
    let producer =
        hookstream_kafka::producer(&config.kafka).context("creating the Kafka producer")?;

    let intake = Intake {
        store: Arc::clone(&store),
        publisher: TaskPublisher::new(producer.clone(), topics.deliveries()),
        window: IdempotencyWindow(config.idempotency_window),
    };
    let state = AppState {
        intake: intake.clone(),
        destinations: Arc::new(config.destinations.policy()),
        max_body_bytes: config.max_body_bytes,
        max_batch_body_bytes: config.max_batch_body_bytes,
    };
    let readiness = vec![
        ReadinessCheck::broker(producer),
        ReadinessCheck::store(Arc::clone(&store)),
    ];
    let app =
        api::router(state, ApiToken(config.api_token.trim().into())).merge(ops::router(readiness));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the API to {}", config.http_addr))?;
    tracing::info!(addr = %config.http_addr, "ingest API listening");

    let outbox = tokio::spawn(outbox::run(intake, config.outbox_grace, shutdown.clone()));
    let retention = tokio::spawn(retention::run(
        Arc::clone(&store),
        config.store.retention,
        shutdown.clone(),
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving the API")?;
    shutdown.cancel();
    outbox.await.context("outbox sweep task")?;
    retention.await.context("retention task")?;
    tracing::info!("ingest stopped");
    Ok(())
}
