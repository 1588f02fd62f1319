//! The retry tier's Prometheus metrics.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounterVec, IntGaugeVec, register_histogram, register_int_counter_vec,
    register_int_gauge_vec,
};

/// Tasks read and waiting for their due time in this instance, by tier topic.
pub static WAITING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_retry_tasks_waiting",
        "Retry tasks read from a tier topic and waiting for their due time in this instance.",
        &["topic"]
    )
    .expect("metric registers once")
});

/// Tasks put back on the deliveries topic, by tier topic.
pub static RELEASED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_retry_tasks_released_total",
        "Retry tasks put back on the deliveries topic, by tier topic.",
        &["topic"]
    )
    .expect("metric registers once")
});

/// How late tasks were released after their due time.
pub static LATENESS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "hookstream_retry_release_lateness_seconds",
        "How long after its due time a retry task was put back on the deliveries topic.",
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0]
    )
    .expect("metric registers once")
});

/// Registers the metrics that have no labels (so they are scraped at 0 before anything
/// happens).
pub fn register() {
    LazyLock::force(&LATENESS);
}
