//! A strict queue whose head was dead-lettered: held there (`on_dead_letter: hold`) until the
//! dead letter is replayed or the setting changes, or released to the topic once the endpoint
//! is strict no more.

use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::ids::EndpointId;
use hookstream_model::retry::Tier;
use hookstream_model::shaping::{OnDeadLetter, Ordering};
use hookstream_model::task::DeliveryTask;
use hookstream_store::{DeliveryFilter, PageRequest, QueuedTask};

use crate::metrics;
use crate::progress::Interrupted;

use super::{Driver, HELD_RECHECK, StrictQueues, Turn};

impl StrictQueues {
    /// Sends the head back to the deliveries topic (through the hold tier) when its endpoint is
    /// neither strict nor disabled any more: a queue that kept a disabled endpoint's deliveries,
    /// or one left behind by a change from strict order. On the topic it goes out as any of the
    /// endpoint's deliveries (in its lane, retried through the tiers, batched if the endpoint
    /// batches) instead of one at a time, retried in place, holding up those behind it. A
    /// crash between the two leaves a copy on the topic and the head in the queue: one of them
    /// claims the attempt, the other finds it claimed or final. `None`: it stays in the queue.
    pub(super) async fn released(
        &self,
        endpoint: EndpointId,
        driver: &Driver,
        head: &QueuedTask,
        task: &DeliveryTask,
    ) -> Option<Turn> {
        let store = &self.worker.store;
        let read = match self.worker.durably(|| store.get_endpoint(endpoint)).await {
            Ok(Some(read)) => read,
            // Deleted: the head goes on to be dead-lettered with that reason.
            Ok(None) | Err(Interrupted::Unprocessable(_)) => return None,
            Err(Interrupted::Shutdown) => return Some(Turn::Stop),
        };
        if read.disabled || read.shaping.ordering == Ordering::Strict {
            return None;
        }
        Some(
            match self.worker.hold(task, Tier::HOLD, "queue_released").await {
                Ok(()) => {
                    metrics::QUEUE_RELEASED.inc();
                    self.remove(endpoint, driver, head.position).await
                }
                Err(Interrupted::Shutdown) => Turn::Stop,
                Err(Interrupted::Unprocessable(reason)) => {
                    self.set_aside(driver, head, reason).await
                }
            },
        )
    }

    /// The queue is held at the dead-lettered head `task`, until the dead letter is replayed:
    /// a replay (a newer delivery of the same event to the endpoint) still to be sent takes the
    /// head's place, so it goes out before the deliveries behind it; one delivered already (it
    /// was sent from elsewhere in the queue) releases the hold. Decided here from the store,
    /// not from where the replay's task was queued, so it holds across restarts.
    pub(super) async fn held_at(
        &self,
        driver: &Driver,
        head: &QueuedTask,
        task: &DeliveryTask,
        dead: &Delivery,
    ) -> Turn {
        let store = &self.worker.store;
        let filter = DeliveryFilter {
            event_id: Some(task.event_id),
            endpoint_id: Some(task.endpoint_id),
            ..DeliveryFilter::default()
        };
        let page = PageRequest::first(PageRequest::MAX_LIMIT);
        let replays = match self
            .worker
            .durably(|| store.list_deliveries(&filter, &page))
            .await
        {
            Ok(deliveries) => deliveries.items,
            Err(Interrupted::Shutdown) => return Turn::Stop,
            Err(Interrupted::Unprocessable(reason)) => {
                tracing::error!(endpoint_id = %task.endpoint_id, %reason, "cannot look for a held dead letter's replay");
                Vec::new()
            }
        };
        // Only deliveries made after it: an older one (a replay of an earlier dead letter of
        // the same event) says nothing about this one.
        let replays = replays
            .iter()
            .filter(|d| d.id != dead.id && d.created_at > dead.created_at);
        let mut pending = None;
        for replay in replays {
            match replay.status {
                DeliveryStatus::Delivered => {
                    driver.release();
                    return self.remove(task.endpoint_id, driver, head.position).await;
                }
                DeliveryStatus::DeadLettered => {}
                _ => pending = pending.or(Some(replay.id)),
            }
        }
        let Some(replay) = pending else {
            driver.hold();
            return Turn::Wait {
                wait: HELD_RECHECK,
                woken: true,
            };
        };
        let promoted = DeliveryTask {
            delivery_id: replay,
            attempts_made: 0,
            due_at: None,
            ..task.clone()
        };
        let encoded = match promoted.encode() {
            Ok(encoded) => encoded,
            Err(err) => {
                return self
                    .set_aside(driver, head, format!("the replay does not encode: {err}"))
                    .await;
            }
        };
        let entry = QueuedTask {
            task: encoded,
            ..head.clone()
        };
        // Held as a send: a driver of an earlier assignment writes nothing once the partition
        // has moved on.
        let Some(_sending) = self
            .ownership
            .begin_send(driver.partition, driver.generation)
        else {
            return Turn::Stop;
        };
        match self.worker.durably(|| store.enqueue_task(&entry)).await {
            Ok(()) => {
                tracing::info!(endpoint_id = %task.endpoint_id, dead = %task.delivery_id, %replay, "a held dead letter's replay goes first");
                driver.release();
                Turn::Again
            }
            Err(Interrupted::Shutdown) => Turn::Stop,
            Err(Interrupted::Unprocessable(reason)) => self.set_aside(driver, head, reason).await,
        }
    }

    /// Whether the endpoint's queue stops at a dead letter: it is strict and says `hold`. A
    /// deleted endpoint's queue goes on (each of its deliveries is dead-lettered in turn).
    /// `None` on shutdown.
    pub(super) async fn holds_at_dead_letter(&self, endpoint: EndpointId) -> Option<bool> {
        let store = &self.worker.store;
        match self.worker.durably(|| store.get_endpoint(endpoint)).await {
            Ok(read) => Some(read.is_some_and(|e| {
                e.shaping.ordering == Ordering::Strict
                    && e.shaping.on_dead_letter == OnDeadLetter::Hold
            })),
            Err(Interrupted::Shutdown) => None,
            // An endpoint that cannot be read keeps its queue where it is.
            Err(Interrupted::Unprocessable(_)) => Some(true),
        }
    }
}
