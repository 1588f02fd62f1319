//! The outbox sweep: republishes events whose tasks Kafka never acknowledged.
//!
//! An event stays `publishing` when ingest crashed between storing it and Kafka's
//! acknowledgement, or when Kafka failed the publish. Its tasks may or may not be on Kafka; the
//! sweep publishes them again (same delivery ids) so that no accepted event is lost. It works
//! through the whole backlog in batches, each published together and marked before the next is
//! read, so a large backlog (after a long Kafka outage) drains at publishing speed.
//!
//! An event whose tasks Kafka refuses as they are (too large for the topic, not encodable) can
//! never be published: when a batch is refused, its events are published one by one and each
//! refused one is set aside (`hookstream_outbox_set_aside_total`, an alert), so one such event
//! does not stop the sweep for every other.

use std::time::Duration;

use hookstream_model::delivery::Delivery;
use hookstream_model::event::Event;
use hookstream_model::ids::EventId;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::CancellationToken;
use time::OffsetDateTime;

use crate::fanout;
use crate::intake::{Intake, IntakeError};

/// Events read, published and marked together.
const BATCH: u32 = 500;

/// Sweeps every `grace / 2` until shutdown, republishing events older than `grace`.
pub async fn run(intake: Intake, grace: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval((grace / 2).max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(err) = sweep(&intake, grace, &shutdown).await {
            tracing::warn!(error = %err, "outbox sweep failed; trying again next tick");
        }
    }
}

/// Republishes every event unacknowledged for longer than `grace`, batch after batch.
pub async fn sweep(
    intake: &Intake,
    grace: Duration,
    shutdown: &CancellationToken,
) -> Result<u64, IntakeError> {
    let before = OffsetDateTime::now_utc() - grace;
    let mut republished = 0;
    while !shutdown.is_cancelled() {
        let batch = intake.store.unpublished_events(before, BATCH).await?;
        let read = batch.len();
        let ids = publish_or_set_aside(intake, &batch).await?;
        // Marked before the next read, or the next batch would be this one again.
        intake.store.mark_events_published(&ids).await?;
        crate::metrics::OUTBOX_REPUBLISHED.inc_by(ids.len() as u64);
        republished += ids.len() as u64;
        if !ids.is_empty() {
            tracing::info!(events = ids.len(), "republished unacknowledged events");
        }
        if read < BATCH as usize {
            break;
        }
    }
    Ok(republished)
}

/// Publishes the batch's tasks; the events now on Kafka. After a refusal the events are tried
/// one at a time, and each one Kafka refuses is set aside.
async fn publish_or_set_aside(
    intake: &Intake,
    batch: &[(Event, Vec<Delivery>)],
) -> Result<Vec<EventId>, IntakeError> {
    let tasks_of = |(event, deliveries): &(Event, Vec<Delivery>)| {
        fanout::tasks_still_needed(event, deliveries)
    };
    let tasks: Vec<DeliveryTask> = batch.iter().flat_map(tasks_of).collect();
    match intake.publisher.publish(&tasks).await {
        Ok(()) => return Ok(batch.iter().map(|(event, _)| event.id).collect()),
        Err(err) if !err.is_permanent() => return Err(err.into()),
        Err(_) => {}
    }
    let mut published = Vec::with_capacity(batch.len());
    for entry in batch {
        let event = &entry.0;
        match intake.publisher.publish(&tasks_of(entry)).await {
            Ok(()) => published.push(event.id),
            Err(err) if err.is_permanent() => {
                tracing::error!(event = %event.id, tenant = %event.tenant, error = %err,
                    "Kafka refuses this event's tasks; set aside, the sweep goes on");
                intake
                    .store
                    .set_aside_event(event.id, &err.to_string())
                    .await?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookstream_model::delivery::DeliveryStatus;
    use hookstream_model::ids::{DeliveryId, EndpointId};
    use hookstream_model::names::{EventType, Tenant};

    #[test]
    fn only_deliveries_never_attempted_are_republished() {
        let now = OffsetDateTime::now_utc();
        let event = Event {
            id: EventId::generate(),
            tenant: Tenant::parse("acme", "tenant").unwrap(),
            event_type: EventType::parse("order.created", "event_type").unwrap(),
            payload: serde_json::json!({}),
            idempotency_key: None,
            created_at: now,
        };
        let delivery = |status, attempts| Delivery {
            id: DeliveryId::generate(),
            event_id: event.id,
            endpoint_id: EndpointId::generate(),
            tenant: event.tenant.clone(),
            event_type: event.event_type.clone(),
            status,
            attempts,
            next_attempt_at: None,
            next_tier: None,
            created_at: now,
            updated_at: now,
        };
        let pending = delivery(DeliveryStatus::Pending, 0);
        let deliveries = [
            pending.clone(),
            delivery(DeliveryStatus::Retrying, 1),
            delivery(DeliveryStatus::Delivered, 1),
            delivery(DeliveryStatus::DeadLettered, 3),
        ];
        let tasks = fanout::tasks_still_needed(&event, &deliveries);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].delivery_id, pending.id);
        assert_eq!(tasks[0].attempts_made, 0);
        assert_eq!(tasks[0].due_at, None);
    }
}
