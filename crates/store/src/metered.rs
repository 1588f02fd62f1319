//! A store that times every operation and counts its errors, whatever the backend.
//!
//! `hookstream_store_operation_duration_seconds{operation}` and
//! `hookstream_store_errors_total{operation}`: the operation label is the trait method's name,
//! so its cardinality is fixed by the code.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use async_trait::async_trait;
use prometheus::{
    HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, register_histogram_vec,
    register_int_counter, register_int_counter_vec, register_int_gauge_vec,
};
use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::delivery::{Attempt, Delivery, DeliveryStatus};
use hookstream_model::endpoint::{CircuitView, Endpoint, EndpointChanges, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow};
use hookstream_model::health::EndpointHealth;
use hookstream_model::ids::{ApiKeyId, BatchId, DeliveryId, EndpointId, EventId};
use hookstream_model::names::Tenant;
use hookstream_model::replay::{
    Batch, BatchItem, BatchStatus, DeadLetterFilter, IndexedDeadLetter,
};
use hookstream_model::traffic::TrafficReport;
use hookstream_signing::SigningSecret;

use crate::{
    AccessStore, AttemptClaim, ClaimOutcome, CreateEventOutcome, DeliveryFilter, HealthStore,
    NewAttempt, NewBatchItem, NewEvent, OrderedStore, Page, PageRequest, Purged, QueuedTask,
    RecordOutcome, ReplayStep, ReplayStore, SealingCensus, Store, StoreError,
};

static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "hookstream_store_operation_duration_seconds",
        "Store operation latency, by operation (errors included).",
        &["operation"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookstream_store_errors_total",
        "Store operations that failed, by operation.",
        &["operation"]
    )
    .expect("metric registers once")
});

static SET_ASIDE: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_outbox_set_aside_total",
        "Events taken out of the outbox for good: Kafka refuses their tasks, or they do not decode."
    )
    .expect("metric registers once")
});

static SLOW_POINT_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let counter = register_int_counter_vec!(
        "hookstream_store_slow_point_reads_total",
        "Point reads of the embedded store that went through the blocking pool instead of the \
         calling thread, by reason: none_free (every quick connection taken), failed (the read \
         failed there, as on a locked database).",
        &["reason"]
    )
    .expect("metric registers once");
    for reason in ["none_free", "failed"] {
        counter.with_label_values(&[reason]);
    }
    counter
});

static WAL_PAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_store_wal_pages",
        "The embedded store's write-ahead log at this process's last checkpoint, in pages: \
         size (its length since it last started over) and behind (pages a reader kept from \
         being copied into the database file).",
        &["measure"]
    )
    .expect("metric registers once")
});

/// Buckets for the embedded store's writer: from a commit with no wait to seconds waited for a
/// busy neighbour's lock.
const WRITER_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static WRITE_LOCK: LazyLock<HistogramVec> = LazyLock::new(|| {
    let histogram = register_histogram_vec!(
        "hookstream_store_write_lock_seconds",
        "The embedded store's write transactions: how long each waited for the database's one \
         write lock, which every process of the machine shares (phase=waiting; a wait that \
         timed out included), and how long it then held it, its writes, commit and fsync \
         (phase=holding). The rate of the holding sum is the share of time this process holds \
         the lock, when no other process can write.",
        &["phase"],
        WRITER_BUCKETS.to_vec()
    )
    .expect("metric registers once");
    for phase in ["waiting", "holding"] {
        histogram.with_label_values(&[phase]);
    }
    histogram
});

static WRITE_GROUP: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "hookstream_store_write_group_size",
        "Writes the embedded store took into one transaction that committed (group commit; a \
         write that failed was rolled back alone).",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
    )
    .expect("metric registers once")
});

static BACKSTOP_CHECKPOINTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "hookstream_store_backstop_checkpoint_seconds",
        "Checkpoints the embedded store's writer ran after a commit because the write-ahead log \
         was past its backstop, by outcome: done, busy (another checkpoint was running, this \
         process's thread or another process's), failed. This process's writes wait behind each.",
        &["outcome"],
        WRITER_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

/// Registers the embedded store writer's metrics, so that a failure shows when the store opens.
pub(crate) fn register_writer_metrics() {
    LazyLock::force(&WRITE_LOCK);
    LazyLock::force(&WRITE_GROUP);
    LazyLock::force(&BACKSTOP_CHECKPOINTS);
}

/// Records one write transaction of the embedded store: its wait for the write lock, how long
/// it held it (none if it never got it) and, if it committed, how many writes it carried.
pub(crate) fn observe_write_transaction(
    waiting: std::time::Duration,
    holding: Option<std::time::Duration>,
    committed_writes: Option<usize>,
) {
    WRITE_LOCK
        .with_label_values(&["waiting"])
        .observe(waiting.as_secs_f64());
    if let Some(holding) = holding {
        WRITE_LOCK
            .with_label_values(&["holding"])
            .observe(holding.as_secs_f64());
    }
    if let Some(writes) = committed_writes {
        WRITE_GROUP.observe(writes as f64);
    }
}

/// Records a checkpoint the embedded store's writer ran because the log was past its backstop.
pub(crate) fn observe_backstop_checkpoint(outcome: &'static str, took: std::time::Duration) {
    BACKSTOP_CHECKPOINTS
        .with_label_values(&[outcome])
        .observe(took.as_secs_f64());
}

/// Sets what the last background checkpoint found in the write-ahead log.
pub(crate) fn set_wal_pages(size: u64, behind: u64) {
    for (measure, pages) in [("size", size), ("behind", behind)] {
        WAL_PAGES
            .with_label_values(&[measure])
            .set(i64::try_from(pages).unwrap_or(i64::MAX));
    }
}

/// Counts a point read that went the slow way; `reason` is `none_free` or `failed`.
pub(crate) fn count_slow_point_read(reason: &'static str) {
    SLOW_POINT_READS.with_label_values(&[reason]).inc();
}

/// Counts an event set aside, by whichever backend did it.
pub(crate) fn count_set_aside() {
    SET_ASIDE.inc();
}

/// Wraps a backend; [`crate::open`] hands out stores wrapped in it.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        // Every operation's error count exists from the start at 0, so a rate over it (and an
        // alert) works before the first error.
        for operation in [
            STORE_OPERATIONS,
            REPLAY_OPERATIONS,
            ACCESS_OPERATIONS,
            ORDERED_OPERATIONS,
            HEALTH_OPERATIONS,
        ]
        .concat()
        {
            ERRORS.with_label_values(&[operation]);
        }
        LazyLock::force(&SET_ASIDE);
        Self { inner }
    }
}

async fn observe<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    DURATION
        .with_label_values(&[operation])
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ERRORS.with_label_values(&[operation]).inc();
    }
    result
}

/// Writes one trait impl whose every method forwards to `inner` through [`observe`].
macro_rules! metered_impl {
    ($trait:ident, $names:ident { $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* }) => {
        const $names: &[&str] = &[$(stringify!($name)),*];

        #[async_trait]
        impl $trait for MeteredStore {
            $(async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                observe(stringify!($name), self.inner.$name($($arg),*)).await
            })*
        }
    };
}

metered_impl!(Store, STORE_OPERATIONS {
    fn ping() -> ();
    fn create_endpoint(endpoint: &Endpoint) -> ();
    fn get_endpoint(id: EndpointId) -> Option<Endpoint>;
    fn list_endpoints(tenant: &Tenant, page: &PageRequest) -> Page<Endpoint>;
    fn update_endpoint(endpoint: &Endpoint) -> bool;
    fn change_endpoint(id: EndpointId, changes: &EndpointChanges, at: OffsetDateTime) -> Option<Endpoint>;
    fn disable_endpoint(id: EndpointId, at: OffsetDateTime) -> bool;
    fn rotate_secret(id: EndpointId, new: &SigningSecret, previous_expires_at: OffsetDateTime) -> Option<Endpoint>;
    fn delete_endpoint(id: EndpointId) -> bool;
    fn subscriptions(tenant: &Tenant) -> Vec<(EndpointId, Subscription)>;
    fn create_events(news: &[NewEvent], window: IdempotencyWindow) -> Vec<CreateEventOutcome>;
    fn mark_events_published(ids: &[EventId]) -> ();
    fn set_aside_event(id: EventId, reason: &str) -> ();
    fn unpublished_events(before: OffsetDateTime, limit: u32) -> Vec<(Event, Vec<Delivery>)>;
    fn set_circuit(id: EndpointId, circuit: &CircuitView) -> ();
    fn sending_paused() -> bool;
    fn set_sending_paused(paused: bool) -> ();
    fn record_installation_setting(name: &str, value: &str) -> String;
    fn installation_setting(name: &str) -> Option<String>;
    fn get_delivery(id: DeliveryId) -> Option<Delivery>;
    fn list_deliveries(filter: &DeliveryFilter, page: &PageRequest) -> Page<Delivery>;
    fn claim_attempt(id: DeliveryId, attempts_made: u32, lease: std::time::Duration) -> ClaimOutcome;
    fn release_claim(claim: &AttemptClaim) -> ();
    fn record_attempt(claim: &AttemptClaim, attempt: &NewAttempt, status: DeliveryStatus) -> RecordOutcome;
    fn list_attempts(id: DeliveryId) -> Vec<Attempt>;
    fn purge_expired(now: OffsetDateTime, retention: std::time::Duration) -> Purged;
    fn reseal_secrets() -> SealingCensus;
});

metered_impl!(ReplayStore, REPLAY_OPERATIONS {
    fn index_dead_letter(letter: &DeadLetter) -> ();
    fn get_dead_letter(id: DeliveryId) -> Option<IndexedDeadLetter>;
    fn list_dead_letters(filter: &DeadLetterFilter, page: &PageRequest) -> Page<IndexedDeadLetter>;
    fn create_batch(batch: &Batch, items: &[NewBatchItem]) -> ();
    fn get_batch(id: BatchId) -> Option<Batch>;
    fn list_batches(tenant: Option<&Tenant>, page: &PageRequest) -> Page<Batch>;
    fn list_batch_items(id: BatchId, page: &PageRequest) -> Page<BatchItem>;
    fn running_batches() -> Vec<BatchId>;
    fn unfinished_items(id: BatchId, after: Option<u32>, limit: u32) -> Vec<BatchItem>;
    fn finish_batch(id: BatchId, status: BatchStatus, error: Option<String>) -> Option<Batch>;
    fn replay_item(id: BatchId, position: u32, new_delivery: DeliveryId) -> ReplayStep;
    fn mark_item_published(id: BatchId, position: u32) -> ();
});

metered_impl!(AccessStore, ACCESS_OPERATIONS {
    fn create_api_key(key: &ApiKey) -> ();
    fn get_api_key(id: ApiKeyId) -> Option<ApiKey>;
    fn list_api_keys(tenant: &Tenant) -> Vec<ApiKey>;
    fn revoke_api_key(tenant: &Tenant, id: ApiKeyId, at: OffsetDateTime) -> Option<ApiKey>;
    fn revoke_portal_link(tenant: &Tenant, link_id: &str, at: OffsetDateTime, keep_until: OffsetDateTime) -> ();
    fn portal_link_revoked(link_id: &str) -> Option<OffsetDateTime>;
});

metered_impl!(HealthStore, HEALTH_OPERATIONS {
    fn put_endpoint_health(healths: &[(EndpointId, EndpointHealth)]) -> ();
    fn endpoint_health(ids: &[EndpointId]) -> Vec<(EndpointId, EndpointHealth)>;
    fn put_traffic_reports(reports: &[TrafficReport]) -> ();
    fn traffic_reports(first: i64) -> Vec<TrafficReport>;
});

metered_impl!(OrderedStore, ORDERED_OPERATIONS {
    fn enqueue_task(entry: &QueuedTask) -> ();
    fn queue_head(endpoint: EndpointId, after: i64) -> Option<QueuedTask>;
    fn dequeue_task(endpoint: EndpointId, position: i64) -> ();
    fn queued_endpoints(partition: i32) -> Vec<EndpointId>;
    fn queue_progress(partition: i32, endpoint: EndpointId) -> i64;
    fn record_queue_progress(partition: i32, endpoint: EndpointId, after: i64) -> ();
    fn forget_queued_endpoint(partition: i32, endpoint: EndpointId) -> ();
});
