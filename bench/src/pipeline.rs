//! `make bench`: the whole pipeline on the embedded defaults (Apache Kafka, SQLite store, release
//! build), driven by a load generator and measured by the bench receiver, beside the ceiling of a
//! plain HTTP client posting straight to that receiver (measured between the runs).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use hookstream_e2e::{Pipeline, Service};
use hookstream_signing::{SigningSecret, sign};

use crate::cost::Processes;
use crate::load::{Load, PAD, event_type, tenant};
use crate::receiver::{Phase, Receiver, Shared, Timeline};
use crate::report;
use crate::retry_timing;
use crate::scheduling::SchedReading;
use crate::stats::{Buckets, Percentiles, write_json};
use crate::store_lock::LockReading;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Seconds each throughput run is measured for, after its warm-up.
    #[arg(long, default_value_t = 30)]
    throughput_seconds: u64,
    /// Seconds of warm-up before each throughput run is measured.
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
    /// Seconds of each fixed-rate latency run.
    #[arg(long, default_value_t = 20)]
    latency_seconds: u64,
    /// Events a second in the first latency run and the isolation run (any rate).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Events a second in the second latency run.
    #[arg(long, default_value_t = 500.0)]
    low_rate: f64,
    /// Seconds of the isolation run; 0: three times what the slow endpoint's lane takes to fill.
    #[arg(long, default_value_t = 0)]
    isolation_seconds: u64,
    /// Seconds of each ceiling measurement (one before the pipeline starts, one after each run).
    #[arg(long, default_value_t = 5)]
    ceiling_seconds: u64,
    /// Batch requests the closed-loop throughput runs keep in flight at once (single posts:
    /// 64).
    #[arg(long, default_value_t = 4)]
    batch_requests_in_flight: usize,
    /// Tasks waiting in the retry-timing part.
    #[arg(long, default_value_t = 1_000_000)]
    retry_tasks: usize,
    /// Throughput runs, as ENDPOINTSxEVENTS_PER_REQUEST (1: single posts, more: batches), with
    /// `:none` for endpoints without ordering (up to [`UNORDERED_IN_FLIGHT`] requests at once),
    /// `:strict` for endpoints in strict order, or `:batch` for endpoints taking batched
    /// webhooks (up to [`WEBHOOK_BATCH`] events each).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1x1,1x100,100x1,100x100,1x100:none,1x100:strict,1x100:batch"
    )]
    throughput_runs: Vec<String>,
    /// Parts to run (comma-separated): throughput, latency, isolation, retry. Default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Throughput,
    Latency,
    Isolation,
    Retry,
}

impl Options {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Undelivered events the closed-loop generator allows: enough that ingest can run ahead, few
/// enough that a run ends with a backlog that drains in seconds.
const WINDOW: usize = 20_000;
/// Events one throughput run may send at most (its timeline's size): far above what the
/// pipeline takes in a run.
const MOST_EVENTS_A_SECOND: u64 = 40_000;
/// Requests at once to an endpoint of a `:none` throughput run.
const UNORDERED_IN_FLIGHT: u32 = 100;
/// Events per batched webhook in the `:batch` runs (`max_wait` 1 s).
const WEBHOOK_BATCH: u32 = 100;
/// How long each open-loop run sends, unmeasured, before it is measured.
const WARMUP_OPEN_LOOP: Duration = Duration::from_secs(5);
/// How long the slow endpoint of the isolation run takes to answer.
const SLOW_ANSWER: Duration = Duration::from_secs(5);
/// The dispatcher's default backlog per endpoint: a tenth of `HOOKSTREAM_MAX_IN_FLIGHT` (5000)
/// unless `HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT` says otherwise.
const DEFAULT_QUEUED_PER_ENDPOINT: f64 = 500.0;
/// The dispatcher's default longest expected wait in a lane (`HOOKSTREAM_MAX_LANE_WAIT`).
const DEFAULT_LANE_WAIT: Duration = Duration::from_secs(30);

pub async fn run(options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let receiver = Receiver::start(started).await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("Hookstream benchmark on {cores} cores (release build, embedded defaults)\n");

    let ceiling_length = Duration::from_secs(options.ceiling_seconds);
    let mut ceilings = vec![measure_ceiling(&receiver, ceiling_length).await?];
    println!(
        "ceiling: {:.0} requests/s straight to the receiver",
        ceilings[0]
    );

    let mut settings = vec![("HOOKSTREAM_DELIVERIES_PARTITIONS", "8")];
    let passed_on = crate::passed_on_settings();
    settings.extend(passed_on.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let pipeline = Pipeline::start(&settings).await;
    let processes = processes_of(&pipeline);
    let mut bench = Bench {
        pipeline: &pipeline,
        receiver: &receiver,
        processes: &processes,
        client: reqwest::Client::new(),
        phase: 0,
    };

    // Latency first, on an idle pipeline: a throughput run can leave a backlog behind it (one
    // endpoint takes about a hundred a second), and the isolation run a slow endpoint's
    // backlog that drains for many minutes, so that one comes last.
    let mut latency = Vec::new();
    if options.runs(Part::Latency) {
        for rate in [options.rate, options.low_rate] {
            let run = bench.latency(rate, options.latency_seconds, None).await?;
            println!("latency: {}", run["summary"].as_str().unwrap_or(""));
            latency.push(run);
            ceilings.push(measure_ceiling(&receiver, ceiling_length).await?);
            println!("ceiling: {:.0} requests/s", ceilings[ceilings.len() - 1]);
        }
    }
    let mut throughput = Vec::new();
    if options.runs(Part::Throughput) {
        for run in &options.throughput_runs {
            let (shape, ordering) = match run.split_once(':') {
                Some((shape, ordering @ ("none" | "strict" | "batch"))) => (shape, ordering),
                Some(_) => anyhow::bail!(
                    "a throughput run ends in `:none`, `:strict`, `:batch` or nothing, not {run}"
                ),
                None => (run.as_str(), "partition"),
            };
            let (endpoints, per_request) = shape
                .split_once('x')
                .and_then(|(e, n)| Some((e.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
                .with_context(|| format!("a throughput run is ENDPOINTSxEVENTS, not {run}"))?;
            let batch = (per_request > 1).then_some(per_request);
            let run = bench
                .throughput(&options, endpoints, batch, ordering)
                .await?;
            println!("throughput: {}", run["summary"].as_str().unwrap_or(""));
            throughput.push(run);
            ceilings.push(measure_ceiling(&receiver, ceiling_length).await?);
            println!("ceiling: {:.0} requests/s", ceilings[ceilings.len() - 1]);
        }
    }
    let mut isolation = Value::Null;
    if options.runs(Part::Isolation) {
        let fill = lane_fill_seconds(&options);
        let seconds = if options.isolation_seconds > 0 {
            options.isolation_seconds
        } else {
            ((3.0 * fill).ceil() as u64).max(options.latency_seconds)
        };
        let run = bench
            .latency(options.rate, seconds, Some((SLOW_ANSWER, fill)))
            .await?;
        println!("isolation: {}", run["summary"].as_str().unwrap_or(""));
        isolation = run;
        ceilings.push(measure_ceiling(&receiver, ceiling_length).await?);
        println!("ceiling: {:.0} requests/s", ceilings[ceilings.len() - 1]);
    }
    let mut memory = processes.peak_rss_mib();
    drop(bench);
    drop(pipeline);

    let mut retry = Value::Null;
    if options.runs(Part::Retry) {
        println!();
        // A failed retry part is a figure too: the rest of the run is still written.
        retry = retry_timing::measure(retry_timing::Options::with_tasks(options.retry_tasks))
            .await
            .unwrap_or_else(|err| json!({"error": format!("{err:#}")}));
        memory["retry-tier (retry timing)"] = retry["retry_tier_peak_rss_mib"].clone();
    }

    let figures = json!({
        "bench": "pipeline",
        "commit": commit(),
        "cores": cores,
        "ceiling": report::ceiling_figures(&ceilings),
        "throughput": throughput,
        "latency": latency,
        "isolation": isolation,
        "retry_timing": retry,
        "peak_rss_mib": memory,
        "bad_signatures": receiver.shared.bad_signatures.load(Ordering::Relaxed),
    });
    let figures = report::with_summary(figures);
    report::print_table(&figures);
    write_json("latest.json", &figures)?;
    println!("\nfigures also in target/bench/latest.json");
    Ok(())
}

/// How long the slow endpoint's lane takes to fill in the isolation run: it gets its share of
/// the rate and answers one every [`SLOW_ANSWER`]. Its lane is full at the count limit, or once
/// a new task would wait longer than the lane wait: the dispatcher knows the endpoint's pace
/// from its first answer, or sees the first send out longer than the wait.
fn lane_fill_seconds(options: &Options) -> f64 {
    let limit = std::env::var("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_QUEUED_PER_ENDPOINT);
    let wait = std::env::var("HOOKSTREAM_MAX_LANE_WAIT")
        .ok()
        .and_then(|v| hookstream_kafka::parse_duration(&v).ok())
        .map_or(DEFAULT_LANE_WAIT.as_secs_f64(), |d| d.as_secs_f64());
    let arriving = options.rate / 100.0;
    let answer = SLOW_ANSWER.as_secs_f64();
    let filling = (arriving - 1.0 / answer).max(0.1);
    // Enough queued that they would wait longer than the wait, once the pace is known.
    let by_pace = answer.max(wait / answer / arriving);
    (limit / filling).min(wait).min(by_pace)
}

fn processes_of(pipeline: &Pipeline) -> Processes {
    let mut processes = Vec::new();
    for (name, service) in [
        ("ingest", Service::Ingest),
        ("dispatcher", Service::Dispatcher),
        ("retry-tier", Service::RetryTier),
    ] {
        processes.extend(pipeline.pid(service).map(|pid| (name, pid)));
    }
    if let Some(pid) = pipeline.broker.as_ref().and_then(|b| b.pid()) {
        processes.push(("broker", pid));
    }
    processes.push(("bench", std::process::id()));
    Processes(processes)
}

struct Bench<'a> {
    pipeline: &'a Pipeline,
    receiver: &'a Receiver,
    processes: &'a Processes,
    client: reqwest::Client,
    phase: u64,
}

impl Bench<'_> {
    /// Creates `count` endpoints for a new phase, each subscribed to its own event type, in
    /// `ordering` (`partition`, `none` with [`UNORDERED_IN_FLIGHT`] requests at once, `strict`,
    /// or `batch`: batched webhooks of up to [`WEBHOOK_BATCH`]).
    async fn endpoints(&mut self, count: usize, ordering: &str) -> anyhow::Result<u64> {
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
            if ordering != "partition" {
                let id = endpoint["id"].as_str().context("an endpoint id")?;
                let settings = if ordering == "batch" {
                    json!({"batch": {"max_events": WEBHOOK_BATCH, "max_wait": "1s"}})
                } else {
                    json!({"ordering": ordering, "max_in_flight": UNORDERED_IN_FLIGHT})
                };
                let changed = self
                    .pipeline
                    .api
                    .call("PATCH", &format!("/v1/endpoints/{id}"), Some(settings))
                    .await;
                anyhow::ensure!(changed.status == 200, "ordering not set: {}", changed.body);
            }
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

    fn load(&self, phase: u64, endpoints: usize, timeline: &Arc<Timeline>) -> Load {
        Load::new(
            self.client.clone(),
            self.pipeline.api.base.clone(),
            phase,
            endpoints,
            Arc::clone(timeline),
            Arc::clone(&self.receiver.shared),
        )
    }

    /// Consumer-group revocations the dispatcher and the retry tier have logged so far.
    fn revocations(&self) -> usize {
        [Service::Dispatcher, Service::RetryTier]
            .into_iter()
            .map(|s| {
                self.pipeline
                    .log_of(s)
                    .matches("partitions revoked")
                    .count()
            })
            .sum()
    }

    /// Closed loop: as fast as ingest takes events, with at most [`WINDOW`] undelivered.
    async fn throughput(
        &mut self,
        options: &Options,
        endpoints: usize,
        batch: Option<usize>,
        ordering: &str,
    ) -> anyhow::Result<Value> {
        let phase = self.endpoints(endpoints, ordering).await?;
        let warmup = Duration::from_secs(options.warmup_seconds);
        let measured = Duration::from_secs(options.throughput_seconds);
        let capacity = (warmup + measured).as_secs() * MOST_EVENTS_A_SECOND;
        let timeline = Arc::new(Timeline::new(capacity as usize));
        let window = Arc::new(Semaphore::new(WINDOW));
        let shared = &self.receiver.shared;
        shared.begin(Phase {
            id: phase,
            window: Some(Arc::clone(&window)),
            timeline: Some(Arc::clone(&timeline)),
            ..Phase::default()
        });
        let load = self.load(phase, endpoints, &timeline);
        let stop = Instant::now() + warmup + measured;
        let (workers, per_request) = match batch {
            Some(size) => (options.batch_requests_in_flight, size),
            None => (64, 1),
        };
        let generator = {
            let (load, window) = (load.clone(), Arc::clone(&window));
            tokio::spawn(async move { load.closed(workers, per_request, &window, stop).await })
        };
        tokio::time::sleep(warmup).await;
        let (accepted_0, delivered_0) = (load.accepted(), shared.delivered.load(Ordering::SeqCst));
        let cpu_0 = self.processes.cpu();
        let lock_0 = LockReading::take(self.pipeline).await;
        let sched_0 = SchedReading::take(self.processes);
        tokio::time::sleep(measured).await;
        let (accepted_1, delivered_1) = (load.accepted(), shared.delivered.load(Ordering::SeqCst));
        let cpu_1 = self.processes.cpu();
        let lock_1 = LockReading::take(self.pipeline).await;
        let sched_1 = SchedReading::take(self.processes);
        generator.await.context("the load generator")?;
        let drained = wait_for_delivered(shared, load.accepted(), Duration::from_secs(60)).await;

        let seconds = measured.as_secs_f64();
        let delivered = delivered_1 - delivered_0;
        let accepted_per_second = (accepted_1 - accepted_0) as f64 / seconds;
        let delivered_per_second = delivered as f64 / seconds;
        let label = format!(
            "{endpoints} endpoint(s), {}{}",
            batch.map_or("single posts".to_owned(), |n| format!("batches of {n}")),
            match ordering {
                "none" => format!(", ordering none ({UNORDERED_IN_FLIGHT} at once)"),
                "strict" => ", ordering strict".to_owned(),
                "batch" => format!(", batched webhooks (up to {WEBHOOK_BATCH} events)"),
                _ => String::new(),
            }
        );
        let summary = format!(
            "{label}: {accepted_per_second:.0} accepted/s, {delivered_per_second:.0} delivered/s, {} failed requests, {} duplicates",
            load.failed_requests(),
            shared.duplicates.load(Ordering::SeqCst),
        );
        Ok(json!({
            "label": label,
            "endpoints": endpoints,
            "batch_size": batch,
            "ordering": ordering,
            "seconds": seconds,
            "accepted_per_second": accepted_per_second,
            "delivered_per_second": delivered_per_second,
            "failed_requests": load.failed_requests(),
            "failed_events": load.failed_events(),
            "failures": load.failures(),
            "duplicates": shared.duplicates.load(Ordering::SeqCst),
            "untracked_deliveries": shared.untracked.load(Ordering::SeqCst),
            "drained_after_run": drained,
            "cpu_seconds_per_1000_deliveries": cpu_1.per_thousand_since(&cpu_0, delivered),
            "store_write_lock": lock_1.since(&lock_0, seconds),
            "scheduling": sched_1.since(&sched_0, seconds),
            "summary": summary,
        }))
    }

    /// Open loop at `rate` over 100 endpoints. Latency runs from each event's intended send time
    /// to its first arrival. With `slow` (a delay, and how long its lane takes to fill),
    /// endpoint 0 answers after that delay, and the fast endpoints' figures count only events
    /// meant to be sent once the lane was full.
    async fn latency(
        &mut self,
        rate: f64,
        seconds: u64,
        slow: Option<(Duration, f64)>,
    ) -> anyhow::Result<Value> {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "the rate must be a positive number, not {rate}"
        );
        let filled_from = slow.map_or(0, |(_, fill)| (fill * rate).ceil() as usize);
        let slow = slow.map(|(delay, _)| delay);
        let endpoints = 100;
        let phase = self.endpoints(endpoints, "partition").await?;
        let total = (rate * seconds as f64).round() as usize;
        let timeline = Arc::new(Timeline::new(total));
        let shared = &self.receiver.shared;
        let begin = || {
            shared.begin(Phase {
                id: phase,
                timeline: Some(Arc::clone(&timeline)),
                slow: slow
                    .map(|_| std::iter::once(format!("/hook/{phase}/0")).collect())
                    .unwrap_or_default(),
                slow_delay: slow.unwrap_or_default(),
                ..Phase::default()
            });
        };
        begin();
        // A warm-up at the same rate, on the same endpoints, left out of the figures: the
        // figures are the pipeline's steady state, not its first seconds (the broker's JIT,
        // cold caches, new connections).
        let warm_total = (rate * WARMUP_OPEN_LOOP.as_secs_f64()).round() as usize;
        let warm_up = self
            .load(phase, endpoints, &Arc::new(Timeline::new(warm_total)))
            .numbered_from(total);
        warm_up.open(rate, warm_total).await;
        wait_for_delivered(shared, warm_up.accepted(), Duration::from_secs(30)).await;
        // Counting starts again: late warm-up webhooks are left out.
        begin();
        let load = self.load(phase, endpoints, &timeline);
        let queued_before = self.task_queue_buckets().await;
        let revoked_before = self.revocations();
        let cpu_0 = self.processes.cpu();
        let sent = load.open(rate, total).await;

        // Fast endpoints are every n with n % 100 != 0 when one is slow.
        let is_fast = |seq: usize| slow.is_none() || !seq.is_multiple_of(endpoints);
        let accepted_fast = || {
            (0..total)
                .filter(|&seq| is_fast(seq) && timeline.answered[seq].load(Ordering::Relaxed) > 0)
                .count()
        };
        let received_fast = || {
            (0..total)
                .filter(|&seq| is_fast(seq) && timeline.received[seq].load(Ordering::Relaxed) > 0)
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let expected = accepted_fast();
        while received_fast() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu_1 = self.processes.cpu();
        let queued = self.task_queue_buckets().await;
        let kafka_hop = json!({
            "p50": queued.quantile_since(&queued_before, 0.5),
            "p99": queued.quantile_since(&queued_before, 0.99),
        });
        let figures = LatencyFigures::of(
            &timeline,
            (filled_from.min(total)..total).filter(|&seq| is_fast(seq)),
        );
        let delivered = shared.delivered.load(Ordering::SeqCst);
        let summary = format!(
            "{rate}/s asked, {:.0}/s sent; {} of {} fast events delivered, {} failed requests, {} duplicates; from intended send p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
            sent.rate_sent(),
            figures.delivered,
            figures.events,
            load.failed_requests(),
            shared.duplicates.load(Ordering::SeqCst),
            figures.from_intended.p50,
            figures.from_intended.p99,
            figures.from_intended.p999,
        );
        let last_arrival = figures.last_arrival.max(sent.began);
        let span = (last_arrival - sent.began) as f64 / 1e9;
        Ok(json!({
            "rate_asked": rate,
            "rate_sent": sent.rate_sent(),
            "run_seconds": seconds,
            "measured_from_event": filled_from,
            "sending_seconds": sent.sending_seconds,
            "max_send_lag_ms": sent.max_send_lag_ms,
            "endpoints": endpoints,
            "slow_endpoint_delay_seconds": slow.map(|d| d.as_secs_f64()),
            "fast_events": figures.events,
            "fast_delivered": figures.delivered,
            "fast_undelivered": figures.events - figures.delivered,
            "fast_delivered_per_second": figures.delivered as f64 / span.max(sent.sending_seconds),
            "failed_requests": load.failed_requests(),
            "failures": load.failures(),
            "duplicates": shared.duplicates.load(Ordering::SeqCst),
            "latency_from_intended_send_ms": figures.from_intended.json(),
            "latency_from_answer_ms": figures.from_answer.json(),
            // Bucket bounds: the figure is at most this.
            "kafka_hop_at_most_ms": kafka_hop,
            "consumer_revocations": self.revocations().saturating_sub(revoked_before),
            "cpu_seconds_per_1000_deliveries": cpu_1.per_thousand_since(&cpu_0, delivered),
            "summary": summary,
        }))
    }
}

/// Latency of a set of events from the timeline. An event never delivered (its request failed,
/// or it did not arrive in time) counts as infinitely late, so it cannot flatter a percentile.
struct LatencyFigures {
    events: usize,
    delivered: usize,
    from_intended: Percentiles,
    from_answer: Percentiles,
    last_arrival: u64,
}

impl LatencyFigures {
    fn of(timeline: &Timeline, seqs: impl Iterator<Item = usize>) -> Self {
        let mut from_intended = Vec::new();
        let mut from_answer = Vec::new();
        let mut last_arrival = 0;
        for seq in seqs {
            let intended = timeline.sent[seq].load(Ordering::Relaxed);
            let answered = timeline.answered[seq].load(Ordering::Relaxed);
            let received = timeline.received[seq].load(Ordering::Relaxed);
            if received == 0 {
                from_intended.push(f64::INFINITY);
                from_answer.push(f64::INFINITY);
                continue;
            }
            last_arrival = last_arrival.max(received);
            from_intended.push(received.saturating_sub(intended) as f64 / 1e6);
            // Only events whose answer the generator read (a webhook can arrive before it).
            if answered > 0 {
                from_answer.push(received.saturating_sub(answered) as f64 / 1e6);
            }
        }
        let events = from_intended.len();
        let delivered = from_intended.iter().filter(|ms| ms.is_finite()).count();
        Self {
            events,
            delivered,
            from_intended: Percentiles::of(from_intended),
            from_answer: Percentiles::of(from_answer),
            last_arrival,
        }
    }
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

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
