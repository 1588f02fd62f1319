//! What claiming an attempt costs (issue 18): on ScyllaDB a claim is a lightweight transaction
//! (a Paxos round), where the dispatcher used to do a plain quorum read before sending. Creates
//! deliveries in the store named, then times, per delivery, the read the old path made, the
//! claim and the record (also a lightweight transaction), from `concurrency` tasks at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use time::OffsetDateTime;
use tokio::task::JoinSet;

use hookstream_e2e::seed;
use hookstream_model::delivery::{AttemptClass, DeliveryStatus};
use hookstream_model::event::IdempotencyWindow;
use hookstream_model::ids::DeliveryId;
use hookstream_store::{
    ClaimOutcome, NewAttempt, RecordOutcome, SecretSealer, Store, StoreLocation,
};

use crate::stats::{Percentiles, write_json};

#[derive(clap::Args)]
pub struct Options {
    /// The store: `scylla://host:port/keyspace` (a fresh keyspace is best) or `sqlite://path`.
    #[arg(long)]
    store: String,
    /// Deliveries claimed and recorded.
    #[arg(long, default_value_t = 2000)]
    deliveries: usize,
    /// How many at once (a dispatcher's lanes work side by side).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// One delivery's timings, in milliseconds.
struct Timed {
    read: f64,
    claim: f64,
    record: f64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let location = StoreLocation::parse(&options.store).context("the store location")?;
    let sealer = SecretSealer::from_base64_key(seed::SECRET_KEY).context("the test key")?;
    let store = hookstream_store::open(&location, Duration::from_secs(86_400), sealer)
        .await
        .context("opening the store")?;
    let endpoint = seed_endpoint(&*store).await?;
    let news: Vec<_> = (0..options.deliveries)
        .map(|_| seed::event(&endpoint, DeliveryStatus::Pending, 0, Duration::ZERO))
        .collect();
    for chunk in news.chunks(100) {
        store
            .create_events(chunk, IdempotencyWindow::default())
            .await
            .context("creating deliveries")?;
    }
    let ids: Vec<DeliveryId> = news.iter().map(|n| n.deliveries[0].id).collect();

    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(ids));
    let mut workers = JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let (store, queue) = (Arc::clone(&store), Arc::clone(&queue));
        workers.spawn(async move {
            let mut timed = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some(id) = next else {
                    return Ok::<_, anyhow::Error>(timed);
                };
                timed.push(one(&*store, id).await?);
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed();
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    let read = Percentiles::of(all.iter().map(|t| t.read).collect());
    let claim = Percentiles::of(all.iter().map(|t| t.claim).collect());
    let record = Percentiles::of(all.iter().map(|t| t.record).collect());
    println!(
        "attempt claims on {} ({} deliveries, {} at once)",
        options.store,
        all.len(),
        options.concurrency
    );
    println!("                                p50        p99        max");
    println!("read (the check before)     {}", read.row());
    println!("claim (CAS)                 {}", claim.row());
    println!("record (CAS + log row)      {}", record.row());
    println!("read + claim + record: {rate:.0} deliveries/s");
    write_json(
        "claims.json",
        &serde_json::json!({
            "store": options.store,
            "deliveries": all.len(),
            "concurrency": options.concurrency,
            "read_ms": read.json(),
            "claim_ms": claim.json(),
            "record_ms": record.json(),
            "per_second": rate,
        }),
    )
}

async fn seed_endpoint(store: &dyn Store) -> anyhow::Result<hookstream_model::endpoint::Endpoint> {
    let endpoint = seed::endpoint_value("https://hooks.example.com/in");
    store
        .create_endpoint(&endpoint)
        .await
        .context("creating the endpoint")?;
    Ok(endpoint)
}

async fn one(store: &dyn Store, id: DeliveryId) -> anyhow::Result<Timed> {
    let at = Instant::now();
    store.get_delivery(id).await?;
    let read = at.elapsed();
    let at = Instant::now();
    let ClaimOutcome::Claimed { claim, .. } =
        store.claim_attempt(id, 0, Duration::from_secs(60)).await?
    else {
        anyhow::bail!("delivery {id} could not be claimed");
    };
    let claimed = at.elapsed();
    let attempt = NewAttempt {
        delivery_id: id,
        started_at: OffsetDateTime::now_utc(),
        latency_ms: 1,
        status_code: Some(200),
        class: AttemptClass::Http2xxDelivered,
        response_snippet: String::new(),
        error: None,
        next_attempt_at: None,
        tier: None,
    };
    let at = Instant::now();
    let recorded = store
        .record_attempt(&claim, &attempt, DeliveryStatus::Delivered)
        .await?;
    anyhow::ensure!(recorded == RecordOutcome::Recorded, "{id} not recorded");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Timed {
        read: ms(read),
        claim: ms(claimed),
        record: ms(at.elapsed()),
    })
}
