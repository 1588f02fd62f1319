//! Retry timing: how late tasks come due when many wait on one tier.
//!
//! Every task is written before any comes due, so all of them wait in the tier at once; their due
//! times are spread at a steady rate, so the figure is the tier's timing, not a burst larger than
//! the broker can move in a second. Two lateness figures per task: when the retry tier put it
//! back (the record's create time on the deliveries topic) and when a consumer read it there.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use time::OffsetDateTime;

use hookstream_e2e::{Broker, Pipeline, Service};

use crate::stats::Percentiles;
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_model::task::DeliveryTask;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Tasks written to the tier.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Tasks coming due per second, once the first is due.
    #[arg(long, default_value_t = 10_000)]
    due_rate: u32,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
}

impl Options {
    pub fn with_tasks(tasks: usize) -> Self {
        Self {
            tasks,
            due_rate: 10_000,
            partitions: 8,
        }
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let figures = measure(options).await?;
    crate::stats::write_json("retry-timing.json", &figures)?;
    println!("  figures also in target/bench/retry-timing.json");
    Ok(())
}

/// Runs the benchmark, prints its table and returns its figures.
pub async fn measure(options: Options) -> anyhow::Result<serde_json::Value> {
    // Write every task before the first comes due (this broker takes a few ten thousand a second).
    let lead = Duration::from_secs(5 + options.tasks as u64 / 20_000);
    let spacing = Duration::from_secs(1) / options.due_rate.max(1);
    let spread = spacing * options.tasks as u32;
    // One tier, long enough to hold every task until it is due: the tier holds a task at most
    // its delay after it was written, whatever due time the task carries.
    let minutes = (lead + spread + Duration::from_secs(10))
        .as_secs()
        .div_ceil(60);
    let schedule = format!("{minutes}m");
    let tier_topic = format!("hookstream.retry.{schedule}");
    let partitions = options.partitions.to_string();
    let mut settings = vec![
        ("HOOKSTREAM_RETRY_SCHEDULE", schedule.as_str()),
        ("HOOKSTREAM_RETRY_JITTER", "0"),
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", partitions.as_str()),
    ];
    let passed_on = crate::passed_on_settings();
    settings.extend(passed_on.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let broker = Broker::start().await;
    let address = broker.address.clone();
    // Only the retry tier runs: nothing else touches the topics.
    let mut pipeline =
        Pipeline::start_only(Some(broker), &address, &settings, &[Service::RetryTier]).await;

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

    let first_due = OffsetDateTime::now_utc() + lead;
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
            due_at: Some(first_due + spacing * n as u32),
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
    let waiting_at_first_due = OffsetDateTime::now_utc() < first_due;
    println!(
        "wrote {} tasks to {tier_topic} in {write_seconds:.1} s; due from {:.1} s after the start, {} a second",
        options.tasks,
        lead.as_secs_f64(),
        options.due_rate
    );

    // Read them back from the deliveries topic as the retry tier releases them.
    let mut released_ms = Vec::with_capacity(options.tasks);
    let mut read_ms = Vec::with_capacity(options.tasks);
    let mut early = 0usize;
    let deadline = Instant::now() + lead + spread + Duration::from_secs(300);
    while read_ms.len() < options.tasks && Instant::now() < deadline {
        // Nothing arrives before the first due time; after it, 30 s of silence means a stall.
        let until_first_due =
            Duration::try_from(first_due - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
        let patience = until_first_due + Duration::from_secs(30);
        let message = match tokio::time::timeout(patience, consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(err)) => anyhow::bail!("reading the deliveries topic: {err}"),
            Err(_) => break,
        };
        let now = OffsetDateTime::now_utc();
        let task = DeliveryTask::decode(message.payload().unwrap_or_default())?;
        let due = task.due_at.context("a task without a due time")?;
        let due_ms = (due - OffsetDateTime::UNIX_EPOCH).as_seconds_f64() * 1000.0;
        let released = message.timestamp().to_millis().map(|at| at as f64 - due_ms);
        let read = (now - due).as_seconds_f64() * 1000.0;
        if released.unwrap_or(read) < 0.0 {
            early += 1;
        }
        released_ms.extend(released);
        read_ms.push(read);
    }
    let received = read_ms.len();
    let released = Percentiles::of(released_ms);
    let read = Percentiles::of(read_ms);

    println!();
    println!(
        "Retry timing ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  tasks waiting at once     {:>10}{}",
        options.tasks,
        if waiting_at_first_due {
            ""
        } else {
            "  (the write ran past the first due time)"
        }
    );
    println!("  coming due per second     {:>10}", options.due_rate);
    println!("  tasks released            {received:>10}");
    println!("  released before due       {early:>10}");
    println!("  lateness                        p50        p99        max");
    println!("    put back by the tier   {}", released.row());
    println!("    read by a consumer     {}", read.row());

    // Its peak memory with every task waiting, read before it stops.
    let peak_rss = pipeline
        .pid(Service::RetryTier)
        .and_then(crate::cost::peak_rss_mib);
    let figures = serde_json::json!({
        "bench": "retry-timing",
        "retry_tier_peak_rss_mib": peak_rss,
        "tasks": options.tasks,
        "due_rate": options.due_rate,
        "all_waiting_at_first_due": waiting_at_first_due,
        "partitions": options.partitions,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "write_seconds": write_seconds,
        "released": received,
        "released_before_due": early,
        "released_lateness_ms": released.json(),
        "read_lateness_ms": read.json(),
    });
    pipeline.stop_service(Service::RetryTier).await;
    anyhow::ensure!(
        received == options.tasks,
        "only {received} of {} tasks were released",
        options.tasks
    );
    Ok(figures)
}
