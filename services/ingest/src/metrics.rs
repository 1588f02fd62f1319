//! Ingest's Prometheus metrics (registered in the default registry that `/metrics` serves).

use std::sync::LazyLock;

use prometheus::{
    HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, register_histogram_vec,
    register_int_counter, register_int_counter_vec, register_int_gauge_vec,
};

/// Stored signing secrets by how they are sealed, as the last re-sealing pass found them.
pub static SEALED_SECRETS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_sealed_secrets",
        "Live endpoints' stored signing secrets (current and previous) by how the last re-sealing pass found them: current (under the sealing key), older_key (under another key of HOOKSTREAM_SECRET_KEYS: remove that key only at 0), plain (plain text with a key set: refused), unopenable (under no configured key: refused).",
        &["state"]
    )
    .expect("metric registers once")
});

/// Live endpoints' signing secrets by the key that opens them, as the last pass found them.
pub static SEALED_SECRETS_BY_KEY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_sealed_secrets_by_key",
        "Stored signing secrets by the id of the key that opens them (unnamed: HOOKSTREAM_SECRET_KEY), as the last re-sealing pass found them. A key with no series on any ingest can be removed.",
        &["key"]
    )
    .expect("metric registers once")
});

/// Re-sealing passes, by outcome (`done`, `failed`).
pub static RESEAL_PASSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_reseal_passes_total",
        "Re-sealing passes over the stored signing secrets, by outcome (done, failed).",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Signing secrets re-sealed under the sealing key.
pub static SECRETS_RESEALED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_secrets_resealed_total",
        "Signing secrets re-sealed under the first key of HOOKSTREAM_SECRET_KEYS."
    )
    .expect("metric registers once")
});

/// Operational events ingest writes (a batch cancelled through the API), by type and outcome.
pub static OPS_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_ops_events_total",
        "Operational events written to the ops-events topic (a replay batch cancelled through the API), by type and outcome (published, failed).",
        &["type", "outcome"]
    )
    .expect("metric registers once")
});

/// Events taken in, by result: `new`, `repeat` (idempotent repost), `conflict`.
pub static EVENTS_ACCEPTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_events_accepted_total",
        "Events taken in by ingest, by result.",
        &["result"]
    )
    .expect("metric registers once")
});

/// New events (not idempotent repeats) whose tasks Kafka acknowledged, by source (`http`,
/// `kafka`) and tenant (capped: see `hookstream_runtime::labels`).
pub static EVENTS_INGESTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_events_ingested_total",
        "New events taken in and on Kafka, by source (http, kafka) and tenant.",
        &["source", "tenant"]
    )
    .expect("metric registers once")
});

/// Events whose tasks the outbox sweep published again.
pub static OUTBOX_REPUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_outbox_republished_total",
        "Events republished by the outbox sweep after Kafka had not acknowledged them."
    )
    .expect("metric registers once")
});

/// API request latency, by route and status code.
pub static HTTP_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "hookstream_http_request_duration_seconds",
        "Ingest API request latency.",
        &["route", "status"]
    )
    .expect("metric registers once")
});

/// Records read from source topics, by topic and outcome (`accepted`, `repeat`, `rejected`).
pub static SOURCE_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_source_records_total",
        "Records read from source topics, by topic and outcome (accepted, repeat, rejected).",
        &["topic", "outcome"]
    )
    .expect("metric registers once")
});

/// Registers the metrics that have no labels (so they are scraped at 0 before anything
/// happens) and the label values known in advance.
pub fn register() {
    LazyLock::force(&OUTBOX_REPUBLISHED);
    LazyLock::force(&SECRETS_RESEALED);
    for outcome in ["done", "failed"] {
        RESEAL_PASSES.with_label_values(&[outcome]);
    }
    for result in ["new", "repeat", "conflict"] {
        EVENTS_ACCEPTED.with_label_values(&[result]);
    }
}
