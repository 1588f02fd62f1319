//! The replay service's Prometheus metrics.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, register_int_counter, register_int_counter_vec};

/// Dead letters read from the DLQ topic and written to the store.
pub static INDEXED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_dead_letters_indexed_total",
        "Dead letters read from the dead-letter topic and written to the store."
    )
    .expect("metric registers once")
});

/// Records on the DLQ topic that are not dead letters this build can read.
pub static UNREADABLE: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_dead_letters_unreadable_total",
        "Records on the dead-letter topic that could not be decoded (left on the topic, not indexed)."
    )
    .expect("metric registers once")
});

/// Items of replay batches decided, by outcome (`created`, `skipped`).
pub static ITEMS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_replay_items_total",
        "Dead letters of replay batches, by outcome (created: replayed; skipped).",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Operational events of dead letters and finished batches, by type and outcome (published;
/// not_told: an operator endpoint's own dead letter).
pub static OPS_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_ops_events_total",
        "Operational events (dead letters, finished batches) written to the ops-events topic, by type and outcome (published; not_told: an operator endpoint's own dead letter).",
        &["type", "outcome"]
    )
    .expect("metric registers once")
});

/// Registers the metrics that have no labels (so they are scraped at 0 before anything
/// happens) and the label values known in advance.
pub fn register() {
    for counter in [&INDEXED, &UNREADABLE] {
        LazyLock::force(counter);
    }
    for outcome in ["created", "skipped"] {
        ITEMS.with_label_values(&[outcome]);
    }
}
