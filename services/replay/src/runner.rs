//! Runs replay batches. The batches and the progress of each are in the store, so any replay
//! instance picks up a running batch, and a restarted one goes on where the last stopped: an
//! item is decided in one store write (which creates its delivery), and its task is put on
//! Kafka after that; an item created but not yet acknowledged by Kafka is published again
//! under the same delivery id, which the dispatcher sends once.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use hookstream_kafka::task_publisher::TaskPublisher;
use hookstream_model::ids::{BatchId, DeliveryId, EndpointId};
use hookstream_model::ops_event::{OpsEvent, OpsKind};
use hookstream_model::replay::{BatchItem, BatchStatus, ItemOutcome};
use hookstream_runtime::shutdown::{CancellationToken, retry_until_ok};
use hookstream_runtime::telemetry;
use hookstream_store::{ReplayStep, Store};

use crate::metrics;
use crate::ops_events::{Teller, Told};

/// How often the store is asked for batches created meanwhile.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Items read from the store at a time.
const CHUNK: u32 = 100;

#[derive(Clone)]
pub struct Runner {
    pub store: Arc<dyn Store>,
    pub publisher: TaskPublisher,
    pub ops_events: Teller,
    pub limiter: Arc<DefaultKeyedRateLimiter<EndpointId>>,
    pub shutdown: CancellationToken,
    active: Arc<Mutex<HashSet<BatchId>>>,
}

/// Why a batch's run ended before it was done.
enum Stop {
    Shutdown,
    Batch(BatchStatus),
}

impl Runner {
    pub fn new(
        store: Arc<dyn Store>,
        publisher: TaskPublisher,
        ops_events: Teller,
        rate_per_endpoint: NonZeroU32,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            publisher,
            ops_events,
            limiter: Arc::new(RateLimiter::dashmap(Quota::per_second(rate_per_endpoint))),
            shutdown,
            active: Arc::default(),
        }
    }

    /// Starts a run for every running batch, as they appear, until shutdown.
    pub async fn run(self) {
        let mut poll = tokio::time::interval(POLL_EVERY);
        let mut runs = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = poll.tick() => {}
                Some(_) = runs.join_next() => continue,
            }
            let running = match self.store.running_batches().await {
                Ok(running) => running,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot list running batches");
                    continue;
                }
            };
            for id in running {
                let newly_active = self
                    .active
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(id);
                if newly_active {
                    let runner = self.clone();
                    runs.spawn(async move {
                        runner.run_batch(id).await;
                        runner
                            .active
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .remove(&id);
                    });
                }
            }
        }
        runs.join_all().await;
    }

    async fn run_batch(&self, id: BatchId) {
        tracing::info!(batch_id = %id, "running replay batch");
        let mut after = None;
        loop {
            let Some(items) = retry_until_ok(&self.shutdown, "reading a batch's items", || {
                self.store.unfinished_items(id, after, CHUNK)
            })
            .await
            else {
                return;
            };
            if items.is_empty() {
                break;
            }
            for item in items {
                after = Some(item.position);
                match self.finish_item(id, &item).await {
                    Ok(()) => {}
                    Err(Stop::Shutdown) => return,
                    Err(Stop::Batch(status)) => {
                        tracing::info!(batch_id = %id, %status, "replay batch stopped");
                        let stopped =
                            retry_until_ok(&self.shutdown, "reading a stopped batch", || {
                                self.store.get_batch(id)
                            })
                            .await;
                        if let Some(Some(batch)) = stopped {
                            self.tell_finished(&batch).await;
                        }
                        return;
                    }
                }
            }
        }
        let finished = retry_until_ok(&self.shutdown, "completing a batch", || {
            self.store.finish_batch(id, BatchStatus::Completed, None)
        })
        .await;
        if let Some(Some(batch)) = finished {
            tracing::info!(batch_id = %id, status = %batch.status, created = batch.counts.created, skipped = batch.counts.skipped_total(), "replay batch finished");
            self.tell_finished(&batch).await;
        }
    }

    /// Publishes a finished batch's operational event (its id is the batch's, so a batch told
    /// twice, by two replay instances or after a restart, is taken once).
    async fn tell_finished(&self, batch: &hookstream_model::replay::Batch) {
        let event = OpsEvent::batch_finished(batch);
        let outcome = match self.ops_events.tell(&event, &self.shutdown).await {
            Told::Published => "published",
            Told::Failed => "failed",
            Told::Shutdown => return,
        };
        metrics::OPS_EVENTS
            .with_label_values(&[OpsKind::BatchFinished.event_type(), outcome])
            .inc();
    }

    /// Decides an item (waiting for its endpoint's rate) and puts its new delivery on Kafka.
    async fn finish_item(&self, batch: BatchId, item: &BatchItem) -> Result<(), Stop> {
        let delivery_id = match item.outcome {
            ItemOutcome::Pending => {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                    _ = self.limiter.until_key_ready(&item.endpoint_id) => {}
                }
                let new_delivery = DeliveryId::generate();
                let step = retry_until_ok(&self.shutdown, "replaying a dead letter", || {
                    self.store.replay_item(batch, item.position, new_delivery)
                })
                .await
                .ok_or(Stop::Shutdown)?;
                match step {
                    ReplayStep::BatchStopped(status) => return Err(Stop::Batch(status)),
                    ReplayStep::Decided(ItemOutcome::Created {
                        delivery_id,
                        published: false,
                    }) => {
                        metrics::ITEMS.with_label_values(&["created"]).inc();
                        delivery_id
                    }
                    ReplayStep::Decided(outcome) => {
                        metrics::ITEMS.with_label_values(&[outcome.kind()]).inc();
                        tracing::info!(batch_id = %batch, dead_delivery_id = %item.dead_delivery_id, outcome = outcome.kind(), "replay item decided");
                        return Ok(());
                    }
                }
            }
            ItemOutcome::Created {
                delivery_id,
                published: false,
            } => delivery_id,
            _ => return Ok(()),
        };
        self.publish(batch, item, delivery_id).await
    }

    /// The replayed delivery's trace starts here.
    #[tracing::instrument(target = "hookstream::trace", name = "replay", skip_all, fields(batch_id = %batch, dead_delivery_id = %item.dead_delivery_id, %delivery_id))]
    async fn publish(
        &self,
        batch: BatchId,
        item: &BatchItem,
        delivery_id: DeliveryId,
    ) -> Result<(), Stop> {
        let letter = retry_until_ok(&self.shutdown, "reading a dead letter", || {
            self.store.get_dead_letter(item.dead_delivery_id)
        })
        .await
        .ok_or(Stop::Shutdown)?;
        let Some(letter) = letter else {
            // The item was created from it, so only retention can have removed it since.
            tracing::error!(batch_id = %batch, dead_delivery_id = %item.dead_delivery_id, "dead letter gone before its replay was published");
            return Ok(());
        };
        let task = letter.letter.replay_task(delivery_id);
        retry_until_ok(&self.shutdown, "publishing a replayed task", || {
            self.publisher.publish(std::slice::from_ref(&task))
        })
        .await
        .ok_or(Stop::Shutdown)?;
        retry_until_ok(&self.shutdown, "marking a replay published", || {
            self.store.mark_item_published(batch, item.position)
        })
        .await
        .ok_or(Stop::Shutdown)?;
        tracing::info!(
            batch_id = %batch,
            dead_delivery_id = %item.dead_delivery_id,
            %delivery_id,
            endpoint_id = %item.endpoint_id,
            trace_id = %telemetry::trace_id(&tracing::Span::current()),
            "dead letter replayed"
        );
        Ok(())
    }
}
