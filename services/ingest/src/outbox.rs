//! The outbox sweep: republishes events whose tasks Kafka never acknowledged.
//!
//! An event stays `publishing` when ingest crashed between storing it and Kafka's
//! acknowledgement, or when Kafka failed the publish. Its tasks may or may not be on Kafka; the
//! sweep publishes them again (same delivery ids) so that no accepted event is lost.

use std::time::Duration;

use hookstream_runtime::shutdown::CancellationToken;
use time::OffsetDateTime;

use crate::intake::Intake;

/// Events republished per sweep at most; the next sweep takes the rest.
const BATCH: u32 = 100;

/// Sweeps every `grace / 2` until shutdown, republishing events older than `grace`.
pub async fn run(intake: Intake, grace: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval((grace / 2).max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(err) = sweep(&intake, grace).await {
            tracing::warn!(error = %err, "outbox sweep failed; trying again next tick");
        }
    }
}

async fn sweep(intake: &Intake, grace: Duration) -> Result<(), crate::intake::IntakeError> {
    let before = OffsetDateTime::now_utc() - grace;
    for (event, deliveries) in intake.store.unpublished_events(before, BATCH).await? {
        tracing::info!(event_id = %event.id, deliveries = deliveries.len(), "republishing unacknowledged event");
        intake.publish(&event, &deliveries).await?;
        crate::metrics::OUTBOX_REPUBLISHED.inc();
    }
    Ok(())
}
