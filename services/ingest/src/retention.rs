//! Retention: removes from the store what has outlived `HOOKSTREAM_RETENTION` (deliveries,
//! attempts, events) or its idempotency window (keys). The embedded store needs this; ScyllaDB
//! expires the same rows by TTL, so there it costs nothing.

use std::sync::Arc;
use std::time::Duration;

use hookstream_runtime::shutdown::CancellationToken;
use hookstream_store::Store;
use time::OffsetDateTime;

/// How often the store is purged: expired rows linger at most this long.
const EVERY: Duration = Duration::from_secs(3600);

/// Purges at start and then every [`EVERY`] until shutdown.
pub async fn run(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match store
            .purge_expired(OffsetDateTime::now_utc(), retention)
            .await
        {
            Ok(purged) if purged != hookstream_store::Purged::default() => tracing::info!(
                idempotency_keys = purged.idempotency_keys,
                deliveries = purged.deliveries,
                attempts = purged.attempts,
                events = purged.events,
                dead_letters = purged.dead_letters,
                batches = purged.batches,
                "purged what outlived its retention"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "purge failed; trying again next hour"),
        }
    }
}
