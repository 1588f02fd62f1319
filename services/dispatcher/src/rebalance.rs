//! Rebalances as the consume loop sees them: which partitions were taken away or given, each
//! revoked one handed over only once its sends are recorded (up to a limit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::blocking::blocking;
use crate::metrics;
use crate::ownership::Ownership;

/// Follows rebalances: tells the consume loop which partitions were taken away (so it stops
/// tracking them), keeps [`Ownership`] up to date, hands a revoked partition over only once its
/// sends are recorded (up to a limit), and keeps newly assigned partitions paused while the kill
/// switch is on.
pub struct RebalanceListener {
    revoked: UnboundedSender<Vec<i32>>,
    /// Newly assigned partitions, whose strict queues the consume loop goes on with.
    assigned: UnboundedSender<Vec<i32>>,
    ownership: Arc<Ownership>,
    handover_limit: Duration,
    /// Whether the consume loop has fetching paused (kill switch, or a full instance).
    fetch_paused: Arc<AtomicBool>,
}

impl RebalanceListener {
    pub fn new(
        ownership: Arc<Ownership>,
        handover_limit: Duration,
        fetch_paused: Arc<AtomicBool>,
    ) -> (Self, Rebalances) {
        let (revoked, revoked_rx) = unbounded_channel();
        let (assigned, assigned_rx) = unbounded_channel();
        let listener = Self {
            revoked,
            assigned,
            ownership,
            handover_limit,
            fetch_paused,
        };
        let rebalances = Rebalances {
            revoked: revoked_rx,
            assigned: assigned_rx,
        };
        (listener, rebalances)
    }

    /// Waits for the revoked partitions' sends to be recorded. The callback runs inside the
    /// consume loop's poll, on a runtime worker: the wait moves the worker's other tasks away.
    fn hand_over(&self, partitions: &[i32]) {
        let out = self.ownership.sending_on(partitions);
        let wait = || {
            self.ownership
                .wait_until_idle(partitions, self.handover_limit)
        };
        let still_out = blocking(wait);
        // No send starts on a revoked partition, so those not out any more were recorded.
        metrics::HANDOVER_SENDS
            .with_label_values(&["recorded"])
            .inc_by(out.saturating_sub(still_out) as u64);
        metrics::HANDOVER_SENDS
            .with_label_values(&["released"])
            .inc_by(still_out as u64);
        if still_out > 0 {
            // Their claims keep the next owner's copies from sending them again.
            tracing::warn!(
                ?partitions,
                still_out,
                "partitions released with sends still out"
            );
        }
    }
}

impl ClientContext for RebalanceListener {}

impl ConsumerContext for RebalanceListener {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                // librdkafka keeps an application pause across a revoke: a partition revoked
                // while paused would come back paused, and never be read again.
                if let Err(err) = consumer.resume(list) {
                    tracing::warn!(error = %err, "cannot clear the pause of revoked partitions");
                }
                self.ownership.revoked(&partitions);
                self.hand_over(&partitions);
                let _ = self.revoked.send(partitions);
            }
            Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
                self.ownership.assigned(&partitions);
                let _ = self.assigned.send(partitions);
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // New partitions join the loop's pause (the kill switch, a full instance).
        if let Rebalance::Assign(list) = rebalance
            && self.fetch_paused.load(Ordering::SeqCst)
            && let Err(err) = consumer.pause(list)
        {
            tracing::warn!(error = %err, "cannot pause newly assigned partitions");
        }
        if let Ok(assignment) = consumer.assignment() {
            metrics::ASSIGNED_PARTITIONS.set(assignment.count() as i64);
        }
    }
}

/// What the rebalance listener tells the consume loop.
pub struct Rebalances {
    /// Partitions taken away: the loop stops tracking them.
    pub revoked: UnboundedReceiver<Vec<i32>>,
    /// Partitions given: the loop goes on with their strict queues.
    pub assigned: UnboundedReceiver<Vec<i32>>,
}
