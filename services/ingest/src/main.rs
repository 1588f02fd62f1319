//! `hookstream-ingest`: the HTTP API and the way events come in.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use hookstream_kafka::{TopicSpec, Topics, ensure_topics, register_schemas};
use hookstream_model::event::IdempotencyWindow;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::ops::{OpsServer, ReadinessCheck};
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_runtime::{http_server, logging, shutdown};

use hookstream_ingest::api::{self, ApiToken, AppState, Plane};
use hookstream_ingest::config::IngestConfig;
use hookstream_ingest::console;
use hookstream_ingest::intake::Intake;
use hookstream_ingest::portal_link::PortalLinks;
use hookstream_ingest::published_marks::PublishedMarks;
use hookstream_ingest::queues::{Groups, QueueWatch};
use hookstream_ingest::rate_limit::TenantLimiter;
use hookstream_ingest::source::avro::SchemaRegistry;
use hookstream_ingest::source::avro_bounds::Bounds;
use hookstream_ingest::source::consumer::SourceLoop;
use hookstream_ingest::source::{Decoder, Format, SourceTopic};
use hookstream_ingest::tenant_concurrency::TenantConcurrency;
use hookstream_ingest::{outbox, resealing, retention};
use hookstream_kafka::ops_events::OpsEventPublisher;
use hookstream_kafka::task_publisher::TaskPublisher;

/// How long ingest waits at exit for its last published marks to be written.
const MARKS_AT_EXIT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: IngestConfig = hookstream_config::load(hookstream_config::Service::Ingest);
    let telemetry = logging::init("ingest");
    config.metrics.install();
    hookstream_ingest::metrics::register();
    if config.api_token.trim().len() < 16 {
        anyhow::bail!("HOOKSTREAM_API_TOKEN must be at least 16 characters");
    }
    config.http.check().map_err(anyhow::Error::msg)?;
    let shutdown = shutdown::on_signal();

    let store = config.store.open().await.context("opening the store")?;
    hookstream_store::agree_on_topic_prefix(
        store.as_ref(),
        &config.kafka.topic_prefix,
        hookstream_store::PrefixRole::Records,
    )
    .await?;
    let topics = Topics::new(&config.kafka);
    ensure_topics(
        &config.kafka,
        &[
            topics.deliveries_spec(&config.kafka),
            topics.schemas_spec(&config.kafka),
        ],
    )
    .await
    .context("creating topics")?;
    let producer =
        hookstream_kafka::producer(&config.kafka).context("creating the Kafka producer")?;
    // Registered before any task is written with it, for dispatchers older than this build.
    register_schemas(
        &producer,
        &topics.schemas(),
        &[DeliveryTask::schemas().current_schema()],
        config.kafka.produce_timeout,
    )
    .await
    .context("registering the delivery task schema")?;

    let (marks, marks_written) = PublishedMarks::start(Arc::clone(&store));
    let intake = Intake {
        store: Arc::clone(&store),
        publisher: TaskPublisher::new(producer.clone(), topics.deliveries()),
        window: IdempotencyWindow(config.idempotency_window),
        max_fanout_bytes: config.max_fanout_bytes,
        // Written before exit (below); any left then are republished by the next start's
        // outbox sweep.
        marks,
    };
    let sources = start_sources(&config, &topics, &intake, &producer, &shutdown).await?;
    let tenant_limiter = Arc::new(TenantLimiter::new(config.tenant_rate, config.tenant_burst));
    tokio::spawn(Arc::clone(&tenant_limiter).forget_quiet_tenants(shutdown.clone()));
    let state = AppState {
        intake: intake.clone(),
        destinations: config
            .destinations
            .resolver()
            .context("the DNS resolver for endpoint URLs")?,
        max_body_bytes: config.max_body_bytes,
        max_batch_body_bytes: config.max_batch_body_bytes,
        secret_overlap: config.secret_overlap,
        tenant_limiter: Arc::clone(&tenant_limiter),
        tenant_concurrency: TenantConcurrency::new(config.tenant_max_concurrent_requests),
        max_endpoints_per_tenant: config.max_endpoints_per_tenant,
        longest_retry_wait: config
            .retry
            .retry_schedule
            .0
            .iter()
            .copied()
            .max()
            .unwrap_or_default(),
        ops_events: OpsEventPublisher::new(producer.clone(), topics.ops_events()),
        portal_links: PortalLinks::new(config.api_token.trim()),
        queues: Arc::new(QueueWatch::new(
            &config.kafka,
            &config.retry.retry_schedule.0,
            &Groups {
                dispatcher: config.dispatcher_group.clone(),
                retry_tier: config.retry_tier_group.clone(),
                replay: config.replay_group.clone(),
            },
        )),
    };
    let readiness = vec![
        ReadinessCheck::broker(producer),
        ReadinessCheck::store(Arc::clone(&store)),
    ];
    let token = ApiToken(config.api_token.trim().into());
    // With a management address, the API listener serves intake alone (it may be public) and
    // the management API gets a listener of its own (kept internal).
    let plane = if config.management_addr.is_some() {
        Plane::Intake
    } else {
        Plane::All
    };
    if let Some(dir) = &config.console_dir {
        console::check(dir)?;
    }
    // The console goes with the management API, whose origin its pages call.
    let console_dir = config.console_dir.as_deref();
    let frame_ancestors = config.console_frame_ancestors.clone().unwrap_or_default();
    let mut app = api::router(state.clone(), token.clone(), &config.http, plane);
    if plane == Plane::All {
        app = app.merge(console::routes(console_dir, &frame_ancestors));
    }
    let app = config.http.apply(app);
    let management = match config.management_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the management API to {addr}"))?;
            tracing::info!(%addr, "management API listening");
            let app = config.http.apply(
                api::router(state, token, &config.http, Plane::Management)
                    .merge(console::routes(console_dir, &frame_ancestors)),
            );
            let (limits, shutdown) = (config.http.clone(), shutdown.clone());
            Some(tokio::spawn(async move {
                http_server::serve(listener, app, &limits, shutdown).await
            }))
        }
        None => None,
    };
    let ops_server = OpsServer::spawn(config.ops_addr, readiness, shutdown.clone())
        .await
        .with_context(|| format!("binding the ops endpoints to {}", config.ops_addr))?;

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the API to {}", config.http_addr))?;
    tracing::info!(addr = %config.http_addr, ops_addr = %config.ops_addr, "ingest API listening");

    let outbox = tokio::spawn(outbox::run(intake, config.outbox_grace, shutdown.clone()));
    let retention = tokio::spawn(retention::run(
        Arc::clone(&store),
        config.store.retention,
        shutdown.clone(),
    ));
    let resealing = tokio::spawn(resealing::run(
        Arc::clone(&store),
        config.reseal_every,
        shutdown.clone(),
    ));
    http_server::serve(listener, app, &config.http, shutdown.clone())
        .await
        .context("serving the API")?;
    shutdown.cancel();
    if let Some(management) = management {
        management
            .await
            .context("management API task")?
            .context("serving the management API")?;
    }
    ops_server
        .stopped()
        .await
        .context("serving the ops endpoints")?;
    outbox.await.context("outbox sweep task")?;
    retention.await.context("retention task")?;
    resealing.await.context("re-sealing task")?;
    let mut left_kafka = true;
    for sources in sources {
        left_kafka &= sources.await.context("source topics task")?;
    }
    // Every request and source is done, so the marks' last group is on its way: written now,
    // the next start's sweep has nothing to publish again.
    if tokio::time::timeout(MARKS_AT_EXIT, marks_written)
        .await
        .is_err()
    {
        tracing::warn!(
            "the last published marks were not written in time; the outbox sweep will republish those events"
        );
    }
    tracing::info!("ingest stopped");
    telemetry.shutdown();
    if !left_kafka {
        // A source consumer's commit or close still runs on a blocking thread, which the
        // runtime's shutdown would wait for: exit without it.
        std::process::exit(0);
    }
    Ok(())
}

/// Starts reading the configured source topics, and, in a loop and consumer group of its own
/// (so a burst of them does not hold up the tenants' own topics), the operational events topic.
async fn start_sources(
    config: &IngestConfig,
    topics: &Topics,
    intake: &Intake,
    producer: &rdkafka::producer::FutureProducer,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<bool>>> {
    let sources = config
        .source_topics()
        .map_err(anyhow::Error::msg)
        .context("HOOKSTREAM_SOURCE_TOPICS")?;
    if sources.iter().any(|s| s.name == topics.ops_events()) {
        anyhow::bail!(
            "HOOKSTREAM_SOURCE_TOPICS names {}, which is Hookstream's own operational events topic (always read)",
            topics.ops_events()
        );
    }
    let registry = match &config.schema_registry_url {
        Some(url) => Some(
            SchemaRegistry::new(url, Bounds::for_payload(config.max_body_bytes))
                .context("building the Schema Registry client")?,
        ),
        None if sources.iter().any(|s| s.format == Format::Avro) => {
            anyhow::bail!("an avro source topic needs HOOKSTREAM_SCHEMA_REGISTRY_URL")
        }
        None => None,
    };
    // Source topics belong to their producers; they are created here only when missing and
    // topic creation is on (as in `make run`).
    let spec =
        |name: String| TopicSpec::new(name, &config.kafka, config.kafka.deliveries_retention);
    let mut specs = vec![
        spec(topics.ingest_rejected()),
        topics.ops_events_spec(&config.kafka),
    ];
    specs.extend(sources.iter().map(|s| spec(s.name.clone())));
    ensure_topics(&config.kafka, &specs)
        .await
        .context("creating the source and rejected topics")?;
    let decoder = Decoder {
        tenant_attribute: config.source_tenant_attribute.clone(),
        registry,
        max_value_bytes: config.max_body_bytes,
    };
    let ops = SourceTopic {
        name: topics.ops_events(),
        format: Format::Operational,
    };
    let mut loops = vec![(format!("{}.ops-events", config.source_group), vec![ops])];
    if !sources.is_empty() {
        loops.push((config.source_group.clone(), sources));
    }
    let mut handles = Vec::new();
    for (group, sources) in loops {
        let consumer = hookstream_kafka::consumer(
            &config.kafka,
            &group,
            rdkafka::consumer::DefaultConsumerContext,
        )
        .context("creating a source consumer")?;
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        rdkafka::consumer::Consumer::subscribe(&consumer, &names)
            .context("subscribing to the source topics")?;
        tracing::info!(topics = ?names, %group, "reading source topics");
        hookstream_runtime::lag::spawn(
            &config.kafka,
            &group,
            sources.iter().map(|s| s.name.clone()).collect(),
            config.metrics.lag_interval,
            shutdown.clone(),
        )
        .context("creating the consumer lag reader")?;
        let source_loop = SourceLoop {
            consumer: Arc::new(consumer),
            formats: sources.iter().map(|s| (s.name.clone(), s.format)).collect(),
            decoder: decoder.clone(),
            intake: intake.clone(),
            producer: producer.clone(),
            rejected_topic: topics.ingest_rejected(),
            operational_max_age: config.idempotency_window,
            shutdown: shutdown.clone(),
        };
        handles.push(tokio::spawn(source_loop.run()));
    }
    Ok(handles)
}
