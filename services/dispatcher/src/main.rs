//! `hookstream-dispatcher`: sends the webhooks.

mod batch;
mod blocking;
mod breaker;
mod claims_ahead;
mod classify;
mod concurrency;
mod config;
mod consumer;
mod decision;
mod decoding;
mod endpoint_health;
mod fetch_wakeup;
mod health;
mod held;
mod job;
mod kill_switch;
mod lane;
mod lanes;
mod metrics;
mod ops_events;
mod outcome;
mod ownership;
mod progress;
mod rate_limits;
mod rebalance;
mod requeue;
mod routing;
mod sender;
mod strict;
mod traffic_report;
mod unrecorded;
mod webhook;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use hookstream_kafka::{
    SchemaRegistry, Topics, check_written_tiers, commit_and_close, ensure_topics, register_schemas,
};
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::task::DeliveryTask;

use crate::decoding::TaskDecoder;
use hookstream_kafka::ops_events::OpsEventPublisher;
use hookstream_runtime::ops::{LivenessCheck, OpsServer, ReadinessCheck};
use hookstream_runtime::{lag, logging, shutdown};

use crate::breaker::Breakers;
use crate::classify::FailurePolicy;
use crate::config::DispatcherConfig;
use crate::consumer::ConsumeLoop;
use crate::endpoint_health::{HealthKeeper, OpenBreakers};
use crate::health::{Heartbeat, Sends};
use crate::ownership::Ownership;
use crate::rebalance::RebalanceListener;
use crate::routing::Routing;
use crate::sender::Sender;
use crate::strict::StrictQueues;
use crate::worker::Worker;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: DispatcherConfig = hookstream_config::load(hookstream_config::Service::Dispatcher);
    let telemetry = logging::init("dispatcher");
    config.metrics.install();
    metrics::register();
    let shutdown = shutdown::on_signal();

    let topics = Topics::new(&config.kafka);
    let retry = config.retry.policy().context("the retry schedule")?;
    let claim_lease = config.claim_lease().map_err(anyhow::Error::msg)?;
    let health_rules = config.health_rules.rules().map_err(anyhow::Error::msg)?;
    let lane_limits = config.lane_limits().map_err(anyhow::Error::msg)?;
    let tiers: Vec<(String, std::time::Duration)> = retry
        .topic_tiers()
        .iter()
        .map(|t| (t.name(), t.0))
        .collect();
    let specs = topics.delivery_path_specs(&config.kafka, &tiers);
    if config.create_topics_and_exit {
        // The topics Job: runs before the store may be reachable, and needs nothing of it.
        ensure_topics(&config.kafka, &specs)
            .await
            .context("creating topics")?;
        tracing::info!(tiers = ?tiers, "topics are in place");
        telemetry.shutdown();
        return Ok(());
    }
    // Before anything is created or moved under this prefix: it must be the installation's.
    let store = config.store.open().await.context("opening the store")?;
    check_topic_prefix(store.as_ref(), &config.kafka.topic_prefix).await?;
    ensure_topics(&config.kafka, &specs)
        .await
        .context("creating topics")?;
    if config.requeue_quarantine_and_exit {
        let requeued = requeue::requeue_quarantine(&config.kafka, &topics, &config.group_id)
            .await
            .context("requeuing the quarantine")?;
        println!(
            "requeued {requeued} quarantined tasks onto {}",
            topics.deliveries()
        );
        telemetry.shutdown();
        return Ok(());
    }
    // Writes retry tasks and dead letters; readiness asks the broker through it too.
    let producer =
        hookstream_kafka::producer(&config.kafka).context("creating the Kafka producer")?;
    // Before joining the consumer group: a dispatcher whose retries no retry tier would read
    // must not take a partition.
    let tier_names: Vec<String> = tiers.iter().map(|(name, _)| name.clone()).collect();
    check_written_tiers(&config.kafka, &tier_names, config.kafka.produce_timeout)
        .await
        .context("checking the retry schedule against the retry tier's")?;

    let sending_paused = kill_switch::watch(Arc::clone(&store), shutdown.clone());
    let ownership = Arc::new(Ownership::default());
    let fetch_paused = Arc::new(AtomicBool::new(false));
    // The hand-over holds the consumer's poll: kept well under `max.poll.interval.ms`.
    let (listener, rebalances) = RebalanceListener::new(
        Arc::clone(&ownership),
        config.drain_timeout.min(Duration::from_secs(10)),
        Arc::clone(&fetch_paused),
    );
    let consumer = Arc::new(
        hookstream_kafka::consumer_with_fetch_wait(
            &config.kafka,
            &config.group_id,
            listener,
            fetch_wakeup::FETCH_WAIT,
        )
        .context("creating the Kafka consumer")?,
    );
    consumer
        .subscribe(&[&topics.deliveries()])
        .context("subscribing to the deliveries topic")?;
    // Registered before anything is written with them, for readers older than this build.
    register_schemas(
        &producer,
        &topics.schemas(),
        &[
            DeliveryTask::schemas().current_schema(),
            DeadLetter::schemas().current_schema(),
        ],
        config.kafka.produce_timeout,
    )
    .await
    .context("registering the schemas this dispatcher writes")?;
    let decoder = TaskDecoder::new(
        SchemaRegistry::new(&config.kafka, topics.schemas())
            .context("creating the schemas topic reader")?,
    );

    let destinations = config
        .destinations
        .resolver()
        .context("the DNS resolver for endpoint URLs")?;
    let sends = Arc::new(Sends::default());
    let heartbeat = Arc::new(Heartbeat::default());
    let endpoint_health = Arc::new(HealthKeeper::new(
        Arc::clone(&store),
        health_rules,
        OpsEventPublisher::new(producer.clone(), topics.ops_events()),
    ));
    let worker = Arc::new(Worker {
        store: Arc::clone(&store),
        sender: Sender::new(
            config.request_timeout,
            config.response_snippet_bytes,
            destinations.clone(),
        )
        .context("building the HTTP client")?,
        destinations,
        retry,
        failures: FailurePolicy {
            dns_errors_permanent: config.dns_errors_permanent,
            tls_errors_permanent: config.tls_errors_permanent,
        },
        routing: Routing {
            producer: producer.clone(),
            topics: topics.clone(),
            shutdown: shutdown.clone(),
        },
        rate_limits: Default::default(),
        concurrency: Default::default(),
        breakers: std::sync::Mutex::new(Breakers::new(
            config.breaker_failures,
            config.breaker_open_for,
        )),
        health: Arc::clone(&endpoint_health),
        claim_lease,
        sending_paused: sending_paused.clone(),
        shutdown: shutdown.clone(),
    });

    let readiness = vec![
        ReadinessCheck::broker(producer),
        ReadinessCheck::store(Arc::clone(&store)),
        ReadinessCheck {
            name: "sends",
            check: Box::new({
                let sends = Arc::clone(&sends);
                move || {
                    Box::pin(std::future::ready(health::sends_move(
                        sends.oldest(),
                        claim_lease,
                    )))
                }
            }),
        },
    ];
    // The rebalance callback may hold the loop for up to the hand-over limit.
    let loop_limit = (2 * config.drain_timeout).max(Duration::from_secs(60));
    let liveness = vec![LivenessCheck {
        name: "consume loop",
        check: Box::new({
            let heartbeat = Arc::clone(&heartbeat);
            move || health::loop_turns(heartbeat.silent_for(), loop_limit)
        }),
    }];
    let ops_server =
        OpsServer::spawn_with_liveness(config.ops_addr, readiness, liveness, shutdown.clone())
            .await
            .with_context(|| format!("binding the ops endpoints to {}", config.ops_addr))?;
    lag::spawn(
        &config.kafka,
        &config.group_id,
        vec![topics.deliveries()],
        config.metrics.lag_interval,
        shutdown.clone(),
    )
    .context("creating the consumer lag reader")?;
    tracing::info!(ops_addr = %config.ops_addr, topic = %topics.deliveries(), "dispatcher running");

    // Stopped after the consume loop's drain, so the attempts it finishes are written too.
    let health_stop = shutdown::CancellationToken::new();
    let open_breakers: OpenBreakers = Box::new({
        let worker = Arc::clone(&worker);
        move |most| worker.open_breakers(most)
    });
    let health_writer =
        tokio::spawn(Arc::clone(&endpoint_health).run(health_stop.clone(), open_breakers));

    let queues = StrictQueues::new(
        Arc::clone(&worker),
        Arc::clone(&ownership),
        Arc::clone(&sends),
        read_start(&consumer, topics.deliveries()),
    );
    ConsumeLoop {
        consumer: Arc::clone(&consumer),
        rebalances,
        topic: topics.deliveries(),
        decoder,
        worker,
        ownership,
        queues,
        max_in_flight: config.max_in_flight,
        max_in_flight_bytes: config.max_in_flight_bytes,
        max_queued_per_endpoint: lane_limits.tasks,
        max_queued_bytes_per_endpoint: lane_limits.bytes,
        max_lane_wait: config.max_lane_wait,
        heartbeat,
        sends,
        fetch_paused,
        fetch_wakeup: fetch_wakeup::FetchWakeup::start(Arc::clone(&consumer), &topics.deliveries())
            .context("starting the fetch wakeup thread")?,
        drain_timeout: config.drain_timeout,
        sending_paused,
        shutdown: shutdown.clone(),
    }
    .run()
    .await;

    health_stop.cancel();
    if let Err(err) = health_writer.await {
        tracing::warn!(error = %err, "the endpoint health writer failed");
    }
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
    tracing::info!("dispatcher stopped");
    telemetry.shutdown();
    Ok(())
}

/// Where each deliveries partition's reading starts for this dispatcher: its committed offset,
/// or the partition's first offset when nothing was committed (or the commit is past the end,
/// left by an earlier topic of the same name).
fn read_start(
    consumer: &Arc<StreamConsumer<RebalanceListener>>,
    topic: String,
) -> strict::ReadStart {
    const TIMEOUT: Duration = Duration::from_secs(10);
    // Not a strong hold: the consumer must leave the group when the loop drops it on shutdown.
    let consumer = Arc::downgrade(consumer);
    Box::new(move |partition| {
        let consumer = consumer.upgrade()?;
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&topic, partition);
        let committed = consumer.committed_offsets(wanted, TIMEOUT).ok()?;
        let (low, high) = consumer.fetch_watermarks(&topic, partition, TIMEOUT).ok()?;
        let start = match committed.elements().first().map(|e| e.offset()) {
            Some(Offset::Offset(committed)) if committed <= high => committed.max(low),
            _ => low,
        };
        Some(start)
    })
}

/// Stops the dispatcher if its topic prefix is not the one ingest recorded in the store.
async fn check_topic_prefix(
    store: &dyn hookstream_store::Store,
    prefix: &str,
) -> anyhow::Result<()> {
    let checked = hookstream_store::agree_on_topic_prefix(
        store,
        prefix,
        hookstream_store::PrefixRole::Checks,
    )
    .await?;
    if !checked {
        tracing::warn!(
            prefix,
            "no topic prefix recorded in the store yet (ingest records it when it starts): this dispatcher's was not checked"
        );
    }
    Ok(())
}
