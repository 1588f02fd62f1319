//! The dispatcher's Prometheus metrics (served by `/metrics`).

use std::sync::LazyLock;

use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, register_counter_vec, register_gauge_vec, register_histogram,
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec,
};

/// Attempts made, by class (`HTTP_2XX_DELIVERED`, `TIMEOUT`, ...) and endpoint (capped: see
/// `hookstream_runtime::labels`).
pub static ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_delivery_attempts_total",
        "Delivery attempts, by outcome class and endpoint.",
        &["class", "endpoint"]
    )
    .expect("metric registers once")
});

/// How long attempts took, by endpoint (capped).
pub static ATTEMPT_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "hookstream_attempt_duration_seconds",
        "Duration of delivery attempts (request and response snippet), by endpoint.",
        &["endpoint"],
        vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("metric registers once")
});

/// From the event being accepted to its delivery answered 2xx: what a customer waits.
pub static DELIVERY_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "hookstream_delivery_latency_seconds",
        "Seconds from an event being accepted to its delivery answered 2xx (retries included).",
        vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
            86400.0
        ]
    )
    .expect("metric registers once")
});

/// Retry tasks written to the tier topics, by tier (`5s`, `30s`, ...).
pub static RETRIES_WRITTEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_retry_tasks_written_total",
        "Failed deliveries written to a retry tier topic, by tier (`in_place`: the head of a strict endpoint's queue, retried where it stands).",
        &["tier"]
    )
    .expect("metric registers once")
});

/// Each endpoint's share of successful attempts over a window (`5m`, `1h`; see
/// `hookstream_model::health`), for endpoints with series of their own; none without attempts.
pub static ENDPOINT_SUCCESS_RATIO: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "hookstream_endpoint_success_ratio",
        "Share of an endpoint's attempts that succeeded over the window, by endpoint and window.",
        &["endpoint", "window"]
    )
    .expect("metric registers once")
});

/// Each endpoint's attempts failed in a row since its last success.
pub static ENDPOINT_FAILURE_STREAK: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_endpoint_failure_streak",
        "Attempts failed in a row since the endpoint's last success, by endpoint.",
        &["endpoint"]
    )
    .expect("metric registers once")
});

/// Each endpoint's breaker (capped; endpoints past the cap are only counted in
/// `hookstream_circuits_open`).
pub static CIRCUIT_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_circuit_state",
        "Circuit breaker state by endpoint: 0 closed, 1 half-open, 2 open.",
        &["endpoint"]
    )
    .expect("metric registers once")
});

/// Deliveries written to the DLQ.
pub static DEAD_LETTERED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_dead_lettered_total",
        "Deliveries dead-lettered (permanent failure or attempts exhausted)."
    )
    .expect("metric registers once")
});

/// Tasks consumed but not sent, by reason (`already_final`, `stale`, `unknown_delivery`,
/// `undecodable`).
pub static TASKS_SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_tasks_skipped_total",
        "Delivery tasks consumed without an attempt, by reason.",
        &["reason"]
    )
    .expect("metric registers once")
});

/// 1 while the kill switch has all sending paused.
pub static SENDING_PAUSED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_sending_paused",
        "Whether the kill switch has paused all sending: 1 paused, 0 sending."
    )
    .expect("metric registers once")
});

/// Tasks held on the hold tier instead of sent, by reason (`endpoint_paused`).
pub static CLAIMS_LOST: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_claims_lost_total",
        "Attempts that outlasted their claim's lease; another copy's outcome was recorded instead.",
    )
    .expect("metric registers once")
});

/// Health rule changes: a warning begun or ended, an endpoint disabled.
pub static HEALTH_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_endpoint_health_changes_total",
        "Endpoints whose health rules began a warning, ended one (recovered) or disabled them, by change.",
        &["change"]
    )
    .expect("metric registers once")
});

/// Operational events written to the ops-events topic, by type and outcome.
pub static OPS_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_ops_events_total",
        "Operational events (endpoint warnings, disablings, recoveries) written to the ops-events topic, by type and outcome (published, failed).",
        &["type", "outcome"]
    )
    .expect("metric registers once")
});

/// Jobs that waited in their lane for a claim held elsewhere (see `Progress::ClaimedElsewhere`).
pub static CLAIM_WAITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_claim_waits_total",
        "Deliveries in partition order (or batches) that waited in their lane for an attempt claim held elsewhere, once per wait.",
    )
    .expect("metric registers once")
});

/// Claims a lane took ahead for its queued jobs, by what became of them: `used` (sent on),
/// `given_back` (the job went another way, or too little of the lease was left), `not_taken`
/// (the store answered busy, final, stale, or failed; the job claims for itself).
pub static CLAIMS_AHEAD: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_claims_ahead_total",
        "Attempts claimed ahead by an endpoint's lane, by outcome (used, given_back, not_taken).",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub static TASKS_QUARANTINED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_tasks_quarantined_total",
        "Delivery tasks put on the quarantine topic, by reason: `undecodable` (a schema this \
         dispatcher does not know, or not a task at all) or `unprocessable` (refused by the store \
         for good, or its delivery unknown).",
        &["reason"]
    )
    .expect("metric registers once")
});

pub static STORE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_dispatcher_store_errors_total",
        "Store operations of the dispatcher that failed: `transient` ones are tried again, \
         `permanent` ones quarantine their task.",
        &["kind"]
    )
    .expect("metric registers once")
});

pub static OLDEST_SEND: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "hookstream_oldest_send_seconds",
        "How long the oldest job of a lane under way (from its first store read to its durable \
         outcome) has lasted; past the claim lease, /readyz fails."
    )
    .expect("metric registers once")
});

pub static ATTEMPTS_UNRECORDED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_attempts_unrecorded_total",
        "Attempts whose outcome was routed (next task written, or delivered) but that the store \
         refused to record for good (a damaged or missing row)."
    )
    .expect("metric registers once")
});

/// Times a task waited for its endpoint's rate limit, by endpoint (capped).
pub static RATE_LIMIT_WAITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_rate_limit_waits_total",
        "Times a delivery task waited for its endpoint's rate limit (no attempt spent), by endpoint.",
        &["endpoint"]
    )
    .expect("metric registers once")
});

/// How long tasks were told to wait for their endpoint's rate limit, by endpoint (capped).
pub static RATE_LIMIT_WAIT_SECONDS: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "hookstream_rate_limit_wait_seconds_total",
        "Seconds delivery tasks were told to wait for their endpoint's rate limit (a stop or revoke cuts a wait short), by endpoint.",
        &["endpoint"]
    )
    .expect("metric registers once")
});

pub static TASKS_HELD: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_tasks_held_total",
        "Delivery tasks put on the hold tier without an attempt, by reason.",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Endpoints whose circuit breaker is open or probing, in this dispatcher.
pub static CIRCUITS_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_circuits_open",
        "Endpoints whose circuit breaker is open or half-open in this dispatcher."
    )
    .expect("metric registers once")
});

/// Circuit breaker transitions, by the state entered.
pub static CIRCUIT_TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_circuit_transitions_total",
        "Circuit breaker transitions, by the state entered (closed, open, half_open).",
        &["to"]
    )
    .expect("metric registers once")
});

/// Partitions of the deliveries topic this dispatcher owns.
pub static ASSIGNED_PARTITIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_assigned_partitions",
        "Partitions of the deliveries topic assigned to this dispatcher."
    )
    .expect("metric registers once")
});

/// Sends out on a partition when it was revoked: `recorded` before the partition was released
/// (the hand-over waited for them), or `released` with them still out (the wait hit its limit).
pub static HANDOVER_SENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_handover_sends_total",
        "Sends out on revoked partitions, by whether they were recorded before the hand-over.",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Tasks consumed and not yet finished.
pub static IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_deliveries_in_flight",
        "Delivery tasks consumed and not yet finished in this dispatcher."
    )
    .expect("metric registers once")
});

/// Partitions held behind an endpoint whose lane is full but drains fast.
pub static PARTITIONS_HELD: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_partitions_held",
        "Partitions whose fetching is paused, their tasks read waiting in memory, until a busy \
         endpoint's lane has room, instead of that endpoint's overflow going to a retry tier."
    )
    .expect("metric registers once")
});

/// Requests sent to wake the fetcher of resumed partitions (see `crate::fetch_wakeup`), by
/// outcome: `sent` or `failed` (not answered; the partition is fetched within a second anyway).
pub static FETCH_WAKEUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let counter = register_int_counter_vec!(
        "hookstream_fetch_wakeups_total",
        "Requests sent to wake the fetcher of resumed partitions, by outcome.",
        &["outcome"]
    )
    .expect("metric registers once");
    for outcome in ["sent", "failed"] {
        counter.with_label_values(&[outcome]);
    }
    counter
});

/// Holds of a partition behind a busy endpoint's lane, begun.
pub static PARTITION_HOLDS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_partition_holds_total",
        "Times a partition was held (its fetching paused) for a busy endpoint's lane to have \
         room."
    )
    .expect("metric registers once")
});

/// How long tasks waited in Kafka: from being written (by ingest, or put back by the retry
/// tier) to this dispatcher reading them. Uses the record's create time, so clocks of the
/// writing and reading hosts should agree.
pub static TASK_QUEUE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "hookstream_task_queue_seconds",
        "Seconds from a delivery task being written to Kafka to the dispatcher reading it.",
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
            2.5, 5.0, 10.0, 30.0, 60.0
        ]
    )
    .expect("metric registers once")
});

/// Registers the metrics that have no labels (so they are scraped at 0 before anything
/// happens) and the label values known in advance.
pub fn register() {
    LazyLock::force(&DEAD_LETTERED);
    for gauge in [
        &SENDING_PAUSED,
        &CIRCUITS_OPEN,
        &ASSIGNED_PARTITIONS,
        &IN_FLIGHT,
        &STRICT_QUEUES,
        &STRICT_QUEUES_HELD,
        &PARTITIONS_HELD,
    ] {
        LazyLock::force(gauge);
    }
    LazyLock::force(&OLDEST_SEND);
    LazyLock::force(&ATTEMPTS_UNRECORDED);
    LazyLock::force(&CLAIMS_LOST);
    LazyLock::force(&FETCH_WAKEUPS);
    LazyLock::force(&PARTITION_HOLDS);
    for outcome in ["used", "given_back", "not_taken"] {
        CLAIMS_AHEAD.with_label_values(&[outcome]);
    }
    LazyLock::force(&STRICT_QUEUED);
    LazyLock::force(&QUEUE_RELEASED);
    // Shown at 0 before the first batch, so dashboards find the series.
    BATCHES_SENT.with_label_values(&["HTTP_2XX_DELIVERED"]);
    for histogram in [&DELIVERY_LATENCY, &TASK_QUEUE_SECONDS, &BATCH_SIZE] {
        LazyLock::force(histogram);
    }
    for reason in ["undecodable", "unprocessable"] {
        TASKS_QUARANTINED.with_label_values(&[reason]);
    }
    for kind in ["transient", "permanent"] {
        STORE_ERRORS.with_label_values(&[kind]);
    }
    for outcome in ["recorded", "released"] {
        HANDOVER_SENDS.with_label_values(&[outcome]);
    }
}

/// Tasks put in their endpoint's queue in the store: a strict endpoint's, or a disabled one's.
pub static STRICT_QUEUED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_strict_tasks_queued_total",
        "Delivery tasks put in their endpoint's queue in the store: strict-order endpoints', and disabled endpoints' (kept until enabled)."
    )
    .expect("metric registers once")
});

/// Queued tasks sent back to the deliveries topic: their endpoint is neither strict nor
/// disabled any more.
pub static QUEUE_RELEASED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_queue_released_total",
        "Queued delivery tasks sent back to the deliveries topic once their endpoint was neither strict nor disabled (enabled again, or out of strict order)."
    )
    .expect("metric registers once")
});

/// Endpoints' queues this dispatcher is working.
pub static STRICT_QUEUES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_strict_queues",
        "Endpoints whose queue in the store this dispatcher is working (strict-order ones, disabled ones)."
    )
    .expect("metric registers once")
});

/// Strict endpoints' queues stopped at a dead letter (`"on_dead_letter": "hold"`).
pub static STRICT_QUEUES_HELD: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_strict_queues_held",
        "Strict-order endpoints whose queue waits at a dead letter for its replay."
    )
    .expect("metric registers once")
});

/// Batched webhooks sent, by how the endpoint answered (its attempt class).
pub static BATCHES_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_batches_sent_total",
        "Batched webhooks (one request carrying several deliveries) sent, by attempt class.",
        &["class"]
    )
    .expect("metric registers once")
});

/// How many deliveries each batched webhook carried.
pub static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "hookstream_batch_size",
        "Deliveries carried by each batched webhook sent.",
        vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0]
    )
    .expect("metric registers once")
});
