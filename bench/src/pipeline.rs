//! `make bench`: the whole pipeline on the embedded defaults (Apache Kafka, SQLite store, release
//! build), driven by a load generator and measured by the bench receiver, beside the ceiling of a
//! plain HTTP client posting straight to that receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use hookstream_e2e::{Pipeline, Service, TOKEN};
use hookstream_signing::{SigningSecret, sign};

use crate::receiver::{Phase, Receiver, Shared, Timeline};
use crate::retry_timing;
use crate::stats::{Buckets, Percentiles, write_json};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Seconds each throughput run is measured for, after its warm-up.
    #[arg(long, default_value_t = 30)]
    throughput_seconds: u64,
    /// Seconds of warm-up before each throughput run is measured.
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
    /// Seconds of the fixed-rate latency and isolation runs.
    #[arg(long, default_value_t = 15)]
    latency_seconds: u64,
    /// Events a second in the latency and isolation runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Events per request in the batched runs.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Tasks of the retry-timing part.
    #[arg(long, default_value_t = 100_000)]
    retry_tasks: usize,
}

/// Undelivered events the closed-loop generator allows: enough that ingest can run ahead, few
/// enough that a run ends with a backlog that drains in seconds.
const WINDOW: usize = 20_000;
/// Padding that makes each event's payload about 1 KiB, like the ceiling's body.
const PAD: usize = 960;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let receiver = Receiver::start(started).await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("Hookstream benchmark on {cores} cores (release build, embedded defaults)\n");

    let ceiling = measure_ceiling(&receiver, Duration::from_secs(10)).await?;
    println!("ceiling: {ceiling:.0} requests/s straight to the receiver");

    let mut settings = vec![("HOOKSTREAM_DELIVERIES_PARTITIONS", "8")];
    let passed_on = crate::passed_on_settings();
    settings.extend(passed_on.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let pipeline = Pipeline::start(&settings).await;
    let mut bench = Bench {
        pipeline: &pipeline,
        receiver: &receiver,
        client: reqwest::Client::new(),
        phase: 0,
    };

    let mut throughput = Vec::new();
    for (endpoints, batch) in [
        (1, None),
        (1, Some(options.batch_size)),
        (100, None),
        (100, Some(options.batch_size)),
    ] {
        let run = bench.throughput(&options, endpoints, batch).await?;
        println!(
            "throughput: {endpoints} endpoint(s), {}: {:.0} accepted/s, {:.0} delivered/s",
            batch.map_or("single posts".to_owned(), |n| format!("batches of {n}")),
            run["accepted_per_second"].as_f64().unwrap_or(0.0),
            run["delivered_per_second"].as_f64().unwrap_or(0.0),
        );
        throughput.push(run);
    }
    let memory = peak_rss(&pipeline);

    let latency = bench.latency(&options, None).await?;
    println!("latency at {}/s: {}", options.rate, latency["summary"]);
    let isolation = bench
        .latency(&options, Some(Duration::from_secs(5)))
        .await?;
    println!("isolation: {}", isolation["summary"]);
    drop(bench);
    drop(pipeline);

    println!();
    let retry =
        retry_timing::measure(retry_timing::Options::with_tasks(options.retry_tasks)).await?;

    let best_delivered = throughput
        .iter()
        .filter_map(|run| run["delivered_per_second"].as_f64())
        .fold(0.0, f64::max);
    let figures = json!({
        "bench": "pipeline",
        "commit": commit(),
        "cores": cores,
        "ceiling_requests_per_second": ceiling,
        "throughput": throughput,
        "best_delivered_share_of_ceiling": best_delivered / ceiling,
        "latency": latency,
        "isolation": isolation,
        "retry_timing": retry,
        "peak_rss_mib": memory,
        "bad_signatures": receiver.shared.bad_signatures.load(Ordering::Relaxed),
    });
    print_table(&figures);
    write_json("latest.json", &figures)?;
    println!("\nfigures also in target/bench/latest.json");
    Ok(())
}

struct Bench<'a> {
    pipeline: &'a Pipeline,
    receiver: &'a Receiver,
    client: reqwest::Client,
    phase: u64,
}

impl Bench<'_> {
    /// Creates `count` endpoints for a new phase, each subscribed to its own event type.
    async fn endpoints(&mut self, count: usize) -> anyhow::Result<u64> {
        self.phase += 1;
        let phase = self.phase;
        for n in 0..count {
            let url = format!("{}/hook/{phase}/{n}", self.receiver.url);
            let endpoint = self
                .pipeline
                .api
                .create_endpoint(&tenant(phase), &url, &[&event_type(n)])
                .await;
            let secret = endpoint["secret"].as_str().context("an endpoint secret")?;
            self.receiver
                .add_endpoint(&format!("/hook/{phase}/{n}"), secret)?;
        }
        Ok(phase)
    }

    /// The dispatcher's histogram of how long tasks waited in Kafka.
    async fn task_queue_buckets(&self) -> Buckets {
        let metrics = self.pipeline.metrics_of(Service::Dispatcher).await;
        Buckets::read(&metrics, "hookstream_task_queue_seconds")
    }

    fn load(&self, phase: u64, endpoints: usize) -> Load {
        Load {
            client: self.client.clone(),
            base: self.pipeline.api.base.clone(),
            phase,
            endpoints,
            next: Arc::new(AtomicU64::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Closed loop: as fast as ingest takes events, with at most [`WINDOW`] undelivered.
    async fn throughput(
        &mut self,
        options: &Options,
        endpoints: usize,
        batch: Option<usize>,
    ) -> anyhow::Result<Value> {
        let phase = self.endpoints(endpoints).await?;
        let window = Arc::new(Semaphore::new(WINDOW));
        let shared = &self.receiver.shared;
        shared.begin(Phase {
            id: phase,
            window: Some(Arc::clone(&window)),
            ..Phase::default()
        });
        let load = self.load(phase, endpoints);
        let warmup = Duration::from_secs(options.warmup_seconds);
        let measured = Duration::from_secs(options.throughput_seconds);
        let stop = Instant::now() + warmup + measured;
        let (workers, per_request) = match batch {
            Some(size) => (4, size),
            None => (64, 1),
        };
        let mut senders = JoinSet::new();
        for _ in 0..workers {
            let load = load.clone();
            let window = Arc::clone(&window);
            senders.spawn(async move {
                while Instant::now() < stop {
                    let Ok(permits) = window.acquire_many(per_request as u32).await else {
                        break;
                    };
                    permits.forget();
                    load.send(per_request, None).await;
                }
            });
        }
        tokio::time::sleep(warmup).await;
        let (accepted_0, delivered_0) = (load.accepted(), shared.delivered.load(Ordering::SeqCst));
        tokio::time::sleep(measured).await;
        let (accepted_1, delivered_1) = (load.accepted(), shared.delivered.load(Ordering::SeqCst));
        while senders.join_next().await.is_some() {}
        let drained = wait_for_delivered(shared, load.accepted(), Duration::from_secs(120)).await;

        let seconds = measured.as_secs_f64();
        Ok(json!({
            "endpoints": endpoints,
            "batch_size": batch,
            "seconds": seconds,
            "accepted_per_second": (accepted_1 - accepted_0) as f64 / seconds,
            "delivered_per_second": (delivered_1 - delivered_0) as f64 / seconds,
            "failed_requests": load.failed.load(Ordering::Relaxed),
            "drained_after_run": drained,
        }))
    }

    /// Fixed rate over 100 endpoints; with `slow`, endpoint 0 answers after that long.
    async fn latency(
        &mut self,
        options: &Options,
        slow: Option<Duration>,
    ) -> anyhow::Result<Value> {
        let endpoints = 100;
        let phase = self.endpoints(endpoints).await?;
        let total = (options.rate * options.latency_seconds) as usize;
        let timeline = Arc::new(Timeline::new(total));
        let shared = &self.receiver.shared;
        shared.begin(Phase {
            id: phase,
            timeline: Some(Arc::clone(&timeline)),
            slow: slow
                .map(|_| std::iter::once(format!("/hook/{phase}/0")).collect())
                .unwrap_or_default(),
            slow_delay: slow.unwrap_or_default(),
            ..Phase::default()
        });
        let load = self.load(phase, endpoints);
        let queued_before = self.task_queue_buckets().await;
        let in_flight = Arc::new(Semaphore::new(512));
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        let per_tick = (options.rate / 1000).max(1);
        let mut sends = JoinSet::new();
        let began = Instant::now();
        let mut sent = 0usize;
        while sent < total {
            ticks.tick().await;
            for _ in 0..per_tick.min((total - sent) as u64) {
                let permit = Arc::clone(&in_flight).acquire_owned().await?;
                let load = load.clone();
                let timeline = Arc::clone(&timeline);
                let shared = Arc::clone(shared);
                sends.spawn(async move {
                    load.send(1, Some((&*timeline, &*shared))).await;
                    drop(permit);
                });
                sent += 1;
            }
            while sends.try_join_next().is_some() {}
        }
        while sends.join_next().await.is_some() {}
        let sending_seconds = began.elapsed().as_secs_f64();

        // Fast endpoints are every n with n % 100 != 0 when one is slow.
        let is_fast = |seq: usize| slow.is_none() || !seq.is_multiple_of(endpoints);
        let fast_total = (0..total).filter(|&seq| is_fast(seq)).count();
        let fast_received = || {
            (0..total)
                .filter(|&seq| is_fast(seq) && timeline.received[seq].load(Ordering::Relaxed) > 0)
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while fast_received() < fast_total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let queued = self.task_queue_buckets().await;
        let kafka_hop = json!({
            "p50": queued.quantile_since(&queued_before, 0.5),
            "p99": queued.quantile_since(&queued_before, 0.99),
        });
        let mut latencies = Vec::new();
        let mut from_sent = Vec::new();
        let mut last_received = 0u64;
        for seq in (0..total).filter(|&seq| is_fast(seq)) {
            let sent = timeline.sent[seq].load(Ordering::Relaxed);
            let answered = timeline.answered[seq].load(Ordering::Relaxed);
            let received = timeline.received[seq].load(Ordering::Relaxed);
            if answered > 0 && received > 0 {
                // A webhook can arrive before the load generator has read ingest's answer: 0.
                latencies.push(received.saturating_sub(answered) as f64 / 1e6);
                from_sent.push(received.saturating_sub(sent) as f64 / 1e6);
                last_received = last_received.max(received);
            }
        }
        let from_sent = Percentiles::of(from_sent);
        let delivered = latencies.len();
        let span =
            (last_received as f64 / 1e9) - began.duration_since(shared.started).as_secs_f64();
        let percentiles = Percentiles::of(latencies);
        let summary = format!(
            "{} fast deliveries of {fast_total}, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
            delivered, percentiles.p50, percentiles.p99, percentiles.p999
        );
        Ok(json!({
            "rate": options.rate,
            "sending_seconds": sending_seconds,
            "endpoints": endpoints,
            "slow_endpoint_delay_seconds": slow.map(|d| d.as_secs_f64()),
            "fast_events": fast_total,
            "fast_delivered": delivered,
            "fast_delivered_per_second": delivered as f64 / span.max(sending_seconds),
            "failed_requests": load.failed.load(Ordering::Relaxed),
            "latency_ms": percentiles.json(),
            "latency_from_request_sent_ms": from_sent.json(),
            // Bucket bounds: the figure is at most this.
            "kafka_hop_at_most_ms": kafka_hop,
            "summary": summary,
        }))
    }
}

/// Sends events of one phase to ingest, singly or in batches.
#[derive(Clone)]
struct Load {
    client: reqwest::Client,
    base: String,
    phase: u64,
    endpoints: usize,
    next: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Load {
    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn event(&self, seq: usize) -> Value {
        json!({
            "tenant": tenant(self.phase),
            "type": event_type(seq % self.endpoints),
            "idempotency_key": format!("bench-{}-{seq}", self.phase),
            "payload": {"phase": self.phase, "seq": seq, "pad": "x".repeat(PAD)},
        })
    }

    /// Sends `count` events (one request); with a timeline, notes when each was answered.
    async fn send(&self, count: usize, timeline: Option<(&Timeline, &Shared)>) {
        let first = self.next.fetch_add(count as u64, Ordering::SeqCst) as usize;
        let seqs = first..first + count;
        let request = if count == 1 {
            self.client
                .post(format!("{}/v1/events", self.base))
                .json(&self.event(first))
        } else {
            let events: Vec<Value> = seqs.clone().map(|seq| self.event(seq)).collect();
            self.client
                .post(format!("{}/v1/events:batch", self.base))
                .json(&json!({"events": events}))
        };
        if let Some((timeline, shared)) = timeline {
            let at = shared.nanos();
            for seq in seqs.clone() {
                if let Some(slot) = timeline.sent.get(seq) {
                    slot.store(at, Ordering::Relaxed);
                }
            }
        }
        let answer = request.bearer_auth(TOKEN).send().await;
        let ok = match answer {
            Ok(response) if count == 1 => response.status().is_success(),
            Ok(response) if response.status().is_success() => {
                let body: Value = response.json().await.unwrap_or_default();
                let results = body["results"]
                    .as_array()
                    .map_or(0, |r| r.iter().filter(|r| r["status"] == 202).count());
                results == count
            }
            _ => false,
        };
        if ok {
            self.accepted.fetch_add(count as u64, Ordering::SeqCst);
            if let Some((timeline, shared)) = timeline {
                let at = shared.nanos();
                for seq in seqs {
                    if let Some(slot) = timeline.answered.get(seq) {
                        slot.store(at, Ordering::Relaxed);
                    }
                }
            }
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn tenant(phase: u64) -> String {
    format!("bench-{phase}")
}

fn event_type(endpoint: usize) -> String {
    format!("bench.e{endpoint}")
}

/// Waits (bounded) until the receiver has `accepted` deliveries of the current phase.
async fn wait_for_delivered(shared: &Shared, accepted: u64, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while shared.delivered.load(Ordering::SeqCst) < accepted {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// A keep-alive client posting signed 1 KiB bodies straight to the receiver: requests/s.
async fn measure_ceiling(receiver: &Receiver, length: Duration) -> anyhow::Result<f64> {
    let secret_text = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    receiver.add_endpoint("/ceiling", secret_text)?;
    let secret = Arc::new(SigningSecret::parse(secret_text).context("the ceiling secret")?);
    let shared = &receiver.shared;
    shared.begin(Phase::default());
    let url = format!("{}/ceiling", receiver.url);
    let body = Arc::new(json!({"data": {"pad": "x".repeat(PAD)}}).to_string());
    let client = reqwest::Client::new();
    let stop = Instant::now() + length;
    let mut workers = JoinSet::new();
    for worker in 0..32u64 {
        let (client, url, body, secret) = (
            client.clone(),
            url.clone(),
            Arc::clone(&body),
            Arc::clone(&secret),
        );
        workers.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                n += 1;
                let id = format!("msg_{worker}_{n}");
                let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
                let signature = sign(&secret, &id, timestamp, body.as_bytes());
                let _ = client
                    .post(&url)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec())
                    .send()
                    .await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Ok(shared.delivered.load(Ordering::SeqCst) as f64 / length.as_secs_f64())
}

/// Peak resident memory (VmHWM) of each service so far, in MiB.
fn peak_rss(pipeline: &Pipeline) -> Value {
    let mut peaks = serde_json::Map::new();
    for (name, service) in [
        ("ingest", Service::Ingest),
        ("dispatcher", Service::Dispatcher),
        ("retry-tier", Service::RetryTier),
    ] {
        let peak = pipeline
            .pid(service)
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map(|kb| kb / 1024.0);
        peaks.insert(name.to_owned(), json!(peak));
    }
    Value::Object(peaks)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn print_table(f: &Value) {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ceiling = num(&f["ceiling_requests_per_second"]);
    println!(
        "\n== Hookstream benchmark: commit {}, {} cores ==",
        f["commit"].as_str().unwrap_or("?"),
        f["cores"]
    );
    println!(
        "{:<52} {:>12}",
        "ceiling: signed 1 KiB POSTs straight to the receiver",
        format!("{ceiling:.0} req/s")
    );
    println!(
        "\nthroughput ({} s measured per run)",
        f["throughput"][0]["seconds"]
    );
    println!(
        "  {:<34} {:>12} {:>12} {:>10}",
        "run", "accepted/s", "delivered/s", "of ceiling"
    );
    for run in f["throughput"].as_array().into_iter().flatten() {
        let label = format!(
            "{} endpoint(s), {}",
            run["endpoints"],
            run["batch_size"]
                .as_u64()
                .map_or("single posts".to_owned(), |n| format!("batches of {n}"))
        );
        let delivered = num(&run["delivered_per_second"]);
        println!(
            "  {:<34} {:>12.0} {:>12.0} {:>9.1}%",
            label,
            num(&run["accepted_per_second"]),
            delivered,
            100.0 * delivered / ceiling
        );
    }
    for (title, key) in [
        ("latency, all endpoints fast", "latency"),
        ("isolation, endpoint 0 answers after 5 s", "isolation"),
    ] {
        let run = &f[key];
        println!(
            "\n{title} ({} events/s over {} endpoints): fast endpoints",
            run["rate"], run["endpoints"]
        );
        for (from, figures) in [
            ("ingest answered", &run["latency_ms"]),
            ("request sent", &run["latency_from_request_sent_ms"]),
        ] {
            println!(
                "  from {from:<16} p50 {:>7.1} ms   p99 {:>7.1} ms   p99.9 {:>7.1} ms   max {:>7.1} ms",
                num(&figures["p50"]),
                num(&figures["p99"]),
                num(&figures["p99.9"]),
                num(&figures["max"]),
            );
        }
        let hop = &run["kafka_hop_at_most_ms"];
        println!(
            "  of which in Kafka (task written to dispatcher read): p50 <= {} ms, p99 <= {} ms",
            num(&hop["p50"]),
            num(&hop["p99"])
        );
        println!(
            "  {:.0} delivered/s ({} of {} events delivered)",
            num(&run["fast_delivered_per_second"]),
            run["fast_delivered"],
            run["fast_events"]
        );
    }
    let retry = &f["retry_timing"];
    println!(
        "\nretry timing ({} tasks waiting, {} due/s): put back p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        retry["tasks"],
        retry["due_rate"],
        num(&retry["released_lateness_ms"]["p50"]),
        num(&retry["released_lateness_ms"]["p99"]),
        num(&retry["released_lateness_ms"]["max"])
    );
    let rss = &f["peak_rss_mib"];
    println!(
        "\npeak RSS during the throughput runs: ingest {:.0} MiB, dispatcher {:.0} MiB, retry tier {:.0} MiB",
        num(&rss["ingest"]),
        num(&rss["dispatcher"]),
        num(&rss["retry-tier"])
    );
    println!("webhooks failing signature checks: {}", f["bad_signatures"]);
}
