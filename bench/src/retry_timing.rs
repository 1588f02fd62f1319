//! Retry timing: how late tasks come due when many wait on one tier.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use time::OffsetDateTime;

use hookstream_e2e::{Broker, Pipeline, Service};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_model::task::DeliveryTask;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Tasks written to the tier.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// The tier's delay: every task is due this long after it is written.
    #[arg(long, default_value = "20")]
    delay_seconds: u64,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let broker = Broker::start().await;
    let address = broker.address.clone();
    let schedule = format!("{}s", options.delay_seconds);
    let partitions = options.partitions.to_string();
    // Only the retry tier runs: nothing else touches the topics.
    let mut pipeline = Pipeline::start_only(
        Some(broker),
        &address,
        &[
            ("HOOKSTREAM_RETRY_SCHEDULE", schedule.as_str()),
            ("HOOKSTREAM_RETRY_JITTER", "0"),
            ("HOOKSTREAM_DELIVERIES_PARTITIONS", partitions.as_str()),
        ],
        &[Service::RetryTier],
    )
    .await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .set("linger.ms", "20")
        .set("acks", "all")
        .create()
        .context("creating the bench producer")?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .set("group.id", "hookstream-bench")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Read releases at once, so the figure is the retry tier's lateness, not ours.
        .set("fetch.wait.max.ms", "20")
        .create()
        .context("creating the bench consumer")?;
    consumer.subscribe(&["hookstream.deliveries"])?;
    let tier_topic = format!("hookstream.retry.{schedule}");

    // Write every task; each is due `delay` after it is written.
    let delay = Duration::from_secs(options.delay_seconds);
    let endpoints: Vec<EndpointId> = (0..64).map(|_| EndpointId::generate()).collect();
    let tenant = Tenant::parse("bench", "tenant")?;
    let event_type = EventType::parse("bench.retry", "type")?;
    let write_started = Instant::now();
    let mut sends = Vec::with_capacity(options.tasks);
    for n in 0..options.tasks {
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            endpoint_id: endpoints[n % endpoints.len()],
            tenant: tenant.clone(),
            event_type: event_type.clone(),
            event_created_at: OffsetDateTime::now_utc(),
            payload: "{}".into(),
            attempts_made: 1,
            due_at: Some(OffsetDateTime::now_utc() + delay),
        };
        let bytes = task.encode()?;
        let key = task.key();
        let producer = producer.clone();
        let topic = tier_topic.clone();
        sends.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&bytes),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }));
    }
    for send in sends {
        send.await?.context("writing a task to the tier")?;
    }
    let write_seconds = write_started.elapsed().as_secs_f64();
    println!(
        "wrote {} tasks to {tier_topic} in {write_seconds:.1} s; each due {} s after it was written",
        options.tasks, options.delay_seconds
    );

    // Read them back from the deliveries topic as the retry tier releases them.
    let mut lateness_ms = Vec::with_capacity(options.tasks);
    let mut early = 0usize;
    let deadline = Instant::now() + delay + Duration::from_secs(300);
    while lateness_ms.len() < options.tasks && Instant::now() < deadline {
        let message = match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(err)) => anyhow::bail!("reading the deliveries topic: {err}"),
            Err(_) => break,
        };
        let now = OffsetDateTime::now_utc();
        let task = DeliveryTask::decode(message.payload().unwrap_or_default())?;
        let due = task.due_at.context("a task without a due time")?;
        let late = (now - due).as_seconds_f64() * 1000.0;
        if late < 0.0 {
            early += 1;
        }
        lateness_ms.push(late);
    }
    let received = lateness_ms.len();
    lateness_ms.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lateness_ms
            .get(((received as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (p50, p99, max) = (
        pick(0.5),
        pick(0.99),
        lateness_ms.last().copied().unwrap_or(f64::NAN),
    );

    println!();
    println!(
        "Retry timing ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  tasks waiting at once     {:>10}", options.tasks);
    println!("  tasks released            {received:>10}");
    println!("  released before due       {early:>10}");
    println!("  lateness p50              {p50:>10.1} ms");
    println!("  lateness p99              {p99:>10.1} ms");
    println!("  lateness max              {max:>10.1} ms");

    let figures = serde_json::json!({
        "bench": "retry-timing",
        "tasks": options.tasks,
        "delay_seconds": options.delay_seconds,
        "partitions": options.partitions,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "write_seconds": write_seconds,
        "released": received,
        "released_before_due": early,
        "lateness_ms": {"p50": p50, "p99": p99, "max": max},
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("retry-timing.json"),
        serde_json::to_vec_pretty(&figures)?,
    )?;
    println!("  figures also in target/bench/retry-timing.json");

    pipeline.stop_service(Service::RetryTier).await;
    anyhow::ensure!(
        received == options.tasks,
        "only {received} of {} tasks were released",
        options.tasks
    );
    Ok(())
}
