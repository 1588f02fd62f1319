//! The load generator: events of one phase sent to ingest, closed loop (as fast as ingest takes
//! them, within a window of undelivered events) or open loop (each request at its own intended
//! time, whatever happened to the ones before it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use hookstream_e2e::TOKEN;

use crate::receiver::{Shared, Timeline};

/// Padding that makes each event's payload about 1 KiB, like the ceiling's body.
pub const PAD: usize = 960;

/// Sends events of one phase to ingest, singly or in batches; event `seq` goes to endpoint
/// `seq % endpoints` (each endpoint is subscribed to its own event type).
#[derive(Clone)]
pub struct Load {
    pub client: reqwest::Client,
    pub base: String,
    pub phase: u64,
    pub endpoints: usize,
    pub timeline: Arc<Timeline>,
    pub shared: Arc<Shared>,
    /// Added to every event's number in its payload and idempotency key: a warm-up's events
    /// are numbered past the measured ones, so the receiver leaves them out of the figures.
    seq_offset: usize,
    next: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    /// Requests that failed (an error, a non-2xx answer, or a batch with any event refused).
    failed_requests: Arc<AtomicU64>,
    /// Events in those requests.
    failed_events: Arc<AtomicU64>,
    /// Why requests failed: the HTTP status, or the client's error, with how often.
    failures: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// What an open-loop run did.
pub struct OpenLoop {
    /// When the first request was meant to go (nanoseconds, the receiver's clock).
    pub began: u64,
    /// From the first to the last request actually sent.
    pub sending_seconds: f64,
    /// How far behind its intended time the generator sent a request, at worst.
    pub max_send_lag_ms: f64,
    pub requests: usize,
}

impl OpenLoop {
    /// Requests a second the generator achieved: the intervals between its sends.
    pub fn rate_sent(&self) -> f64 {
        self.requests.saturating_sub(1) as f64 / self.sending_seconds.max(f64::MIN_POSITIVE)
    }
}

impl Load {
    pub fn new(
        client: reqwest::Client,
        base: String,
        phase: u64,
        endpoints: usize,
        timeline: Arc<Timeline>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            client,
            base,
            phase,
            endpoints,
            timeline,
            shared,
            seq_offset: 0,
            next: Arc::default(),
            accepted: Arc::default(),
            failed_requests: Arc::default(),
            failed_events: Arc::default(),
            failures: Arc::default(),
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn failed_requests(&self) -> u64 {
        self.failed_requests.load(Ordering::SeqCst)
    }

    pub fn failed_events(&self) -> u64 {
        self.failed_events.load(Ordering::SeqCst)
    }

    /// The same load numbering its events from `offset` on (for a warm-up).
    pub fn numbered_from(mut self, offset: usize) -> Self {
        self.seq_offset = offset;
        self
    }

    /// Why requests failed, with how often (`{"503": 12, "error": 1}`).
    pub fn failures(&self) -> Value {
        let failures = self.failures.lock().map(|f| f.clone()).unwrap_or_default();
        json!(failures)
    }

    /// Closed loop: `workers` senders of `per_request` events a request until `stop`, never more
    /// than the window's permits undelivered (the receiver gives one back per delivery), nor
    /// more events than the timeline covers.
    pub async fn closed(
        &self,
        workers: usize,
        per_request: usize,
        window: &Arc<Semaphore>,
        stop: Instant,
    ) {
        let capacity = self.timeline.received.len() as u64;
        let mut senders = JoinSet::new();
        for _ in 0..workers {
            let load = self.clone();
            let window = Arc::clone(window);
            senders.spawn(async move {
                let deadline = tokio::time::Instant::from_std(stop);
                while Instant::now() < stop {
                    let permits = window.acquire_many(per_request as u32);
                    let Ok(Ok(permits)) = tokio::time::timeout_at(deadline, permits).await else {
                        break;
                    };
                    let first = load.next.fetch_add(per_request as u64, Ordering::SeqCst);
                    if first + per_request as u64 > capacity {
                        break;
                    }
                    permits.forget();
                    let refused = load.send(first as usize, per_request).await;
                    // Events ingest did not take will never be delivered: their slots come back.
                    window.add_permits(refused);
                }
            });
        }
        while senders.join_next().await.is_some() {}
    }

    /// Open loop: `total` single posts at `rate` a second, request `seq` meant for
    /// `seq / rate` seconds after the start. Each request's intended time is its sent time in
    /// the timeline, so a generator that falls behind shows as latency, not as a lower rate.
    pub async fn open(&self, rate: f64, total: usize) -> OpenLoop {
        let now = tokio::time::Instant::now();
        let began = self.shared.nanos() + 10_000_000;
        let start = now + Duration::from_millis(10);
        let mut sends = JoinSet::new();
        let mut first_sent = None;
        let mut last_sent = start;
        let mut max_lag = Duration::ZERO;
        for seq in 0..total.min(self.timeline.sent.len()) {
            let offset = Duration::from_secs_f64(seq as f64 / rate);
            let intended = start + offset;
            tokio::time::sleep_until(intended).await;
            let now = tokio::time::Instant::now();
            max_lag = max_lag.max(now - intended);
            first_sent.get_or_insert(now);
            last_sent = now;
            self.timeline.sent[seq].store(began + offset.as_nanos() as u64, Ordering::Relaxed);
            self.next.fetch_add(1, Ordering::SeqCst);
            let load = self.clone();
            sends.spawn(async move { load.send(seq, 1).await });
            while sends.try_join_next().is_some() {}
        }
        while sends.join_next().await.is_some() {}
        OpenLoop {
            began,
            sending_seconds: (last_sent - first_sent.unwrap_or(start)).as_secs_f64(),
            requests: total.min(self.timeline.sent.len()),
            max_send_lag_ms: max_lag.as_secs_f64() * 1000.0,
        }
    }

    fn event(&self, seq: usize) -> Value {
        let seq = seq + self.seq_offset;
        json!({
            "tenant": tenant(self.phase),
            "type": event_type(seq % self.endpoints),
            "idempotency_key": format!("bench-{}-{seq}", self.phase),
            "payload": {"phase": self.phase, "seq": seq, "pad": "x".repeat(PAD)},
        })
    }

    /// Sends events `first..first + count` in one request and notes when ingest answered each
    /// one it took. Returns how many it did not take.
    async fn send(&self, first: usize, count: usize) -> usize {
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
        let answer = request.bearer_auth(TOKEN).send().await;
        let why = match &answer {
            Ok(response) => response.status().as_u16().to_string(),
            Err(_) => "error".to_owned(),
        };
        // Per event: whether ingest took it (a batch answers for each event on its own).
        let taken: Vec<bool> = match answer {
            Ok(response) if count == 1 => vec![response.status().is_success()],
            Ok(response) if response.status().is_success() => {
                let body: Value = response.json().await.unwrap_or_default();
                let results = body["results"].as_array().cloned().unwrap_or_default();
                (0..count)
                    .map(|n| results.get(n).is_some_and(|r| r["status"] == 202))
                    .collect()
            }
            _ => vec![false; count],
        };
        let refused = taken.iter().filter(|&&ok| !ok).count();
        if refused > 0 {
            if let Ok(mut failures) = self.failures.lock() {
                *failures.entry(why).or_default() += 1;
            }
            self.failed_requests.fetch_add(1, Ordering::SeqCst);
            self.failed_events
                .fetch_add(refused as u64, Ordering::SeqCst);
        }
        self.accepted
            .fetch_add((count - refused) as u64, Ordering::SeqCst);
        let at = self.shared.nanos();
        for (seq, ok) in seqs.zip(taken) {
            if let Some(slot) = self.timeline.answered.get(seq).filter(|_| ok) {
                slot.store(at, Ordering::Relaxed);
            }
        }
        refused
    }
}

pub fn tenant(phase: u64) -> String {
    format!("bench-{phase}")
}

pub fn event_type(endpoint: usize) -> String {
    format!("bench.e{endpoint}")
}
