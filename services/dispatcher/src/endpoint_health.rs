//! Each endpoint's health (see [`hookstream_model::health`]), counted by the dispatcher that
//! sends its webhooks and written to the store every [`WRITE_EVERY`] for the API, and shown as
//! metrics for the endpoints that have series of their own.
//!
//! What is kept in memory is only what was counted since the last write. Each write reads what
//! the store has, goes on from it ([`EndpointHealth::continue_from`]) and writes the result, so
//! the run of failures and the windows carry over when the endpoint's partition moves to
//! another dispatcher and back, or the dispatcher restarts. Two owners for a moment (during a
//! rebalance) can each read before the other writes, and a few seconds of counts are lost: the
//! figures are for watching; no delivery decision rests on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use hookstream_model::delivery::AttemptClass;
use hookstream_model::health::{EndpointHealth, WINDOWS};
use hookstream_model::ids::EndpointId;
use hookstream_runtime::labels;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_store::{Store, StoreError};

use crate::metrics;

/// How often what was counted is written.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// The longest the last write at shutdown may take: the consumer leaves its group after it.
const LAST_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an endpoint's series stay with nothing counted here: it may have moved to another
/// dispatcher. One failing stays longer, so a quiet spell between retries does not end the
/// series its alert watches.
const SHOWN_QUIET: Duration = Duration::from_secs(120);
const SHOWN_QUIET_FAILING: Duration = Duration::from_secs(3600);

/// The health of the endpoints this dispatcher has sent to lately.
pub struct HealthKeeper {
    store: Arc<dyn Store>,
    /// Counted since the last write, per endpoint.
    counted: Mutex<HashMap<EndpointId, EndpointHealth>>,
    /// The health last written, for the metrics; only the writer uses it.
    shown: Mutex<HashMap<EndpointId, Shown>>,
}

struct Shown {
    health: EndpointHealth,
    last_written: Instant,
}

impl HealthKeeper {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            counted: Mutex::default(),
            shown: Mutex::default(),
        }
    }

    fn counted(&self) -> MutexGuard<'_, HashMap<EndpointId, EndpointHealth>> {
        // Plain counts: a panic elsewhere cannot leave them half changed.
        self.counted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one attempt at the endpoint (see [`EndpointHealth::record`]).
    pub fn record(
        &self,
        endpoint: EndpointId,
        at: OffsetDateTime,
        latency_ms: Option<u64>,
        class: AttemptClass,
    ) {
        self.counted()
            .entry(endpoint)
            .or_default()
            .record(at, latency_ms, class);
    }

    /// Writes every [`WRITE_EVERY`] until `stop`, then once more, within a bound: a write
    /// under way when `stop` comes is given up (its counts are lost), so a slow store cannot
    /// keep the dispatcher from leaving its consumer group.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(WRITE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        () = self.write_counted() => {}
                    }
                }
            }
        }
        if tokio::time::timeout(LAST_WRITE_TIMEOUT, self.write_counted())
            .await
            .is_err()
        {
            tracing::warn!(
                "the last endpoint health write did not finish in time; its counts are lost"
            );
        }
    }

    /// Writes what was counted since the last write, gone on from what the store has. What
    /// cannot be read or written is counted again with the next.
    async fn write_counted(&self) {
        let counted = std::mem::take(&mut *self.counted());
        if counted.is_empty() {
            self.show_all();
            return;
        }
        match self.merge_and_write(&counted).await {
            Ok(written) => {
                let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
                for (id, health) in written {
                    shown.insert(
                        id,
                        Shown {
                            health,
                            last_written: Instant::now(),
                        },
                    );
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "endpoint health not written; tried again later");
                let mut now_counted = self.counted();
                for (id, earlier) in counted {
                    now_counted.entry(id).or_default().continue_from(earlier);
                }
            }
        }
        self.show_all();
    }

    async fn merge_and_write(
        &self,
        counted: &HashMap<EndpointId, EndpointHealth>,
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, StoreError> {
        let ids: Vec<EndpointId> = counted.keys().copied().collect();
        let mut stored: HashMap<EndpointId, EndpointHealth> = self
            .store
            .endpoint_health(&ids)
            .await?
            .into_iter()
            .collect();
        let now = OffsetDateTime::now_utc();
        let merged: Vec<(EndpointId, EndpointHealth)> = counted
            .iter()
            .map(|(id, since)| {
                let mut health = since.clone();
                if let Some(earlier) = stored.remove(id) {
                    health.continue_from(earlier);
                }
                health.prune(now);
                (*id, health)
            })
            .collect();
        self.store.put_endpoint_health(&merged).await?;
        Ok(merged)
    }

    /// Sets the gauges of every endpoint shown, ending those quiet here too long.
    fn show_all(&self) {
        let now = OffsetDateTime::now_utc();
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        shown.retain(|id, entry| {
            let quiet = if entry.health.failure_streak > 0 {
                SHOWN_QUIET_FAILING
            } else {
                SHOWN_QUIET
            };
            let keep = entry.last_written.elapsed() < quiet;
            if keep {
                show(*id, &entry.health, now);
            } else {
                hide(*id);
            }
            keep
        });
    }
}

/// Sets the endpoint's health gauges, if it has series of its own; a window without attempts
/// has no success ratio.
fn show(id: EndpointId, health: &EndpointHealth, now: OffsetDateTime) {
    let id = id.to_string();
    if !labels::endpoints().admits(&id) {
        return;
    }
    for window in health.windows(now) {
        let labels = [id.as_str(), window.window];
        match window.success_rate {
            Some(rate) => metrics::ENDPOINT_SUCCESS_RATIO
                .with_label_values(&labels)
                .set(rate),
            None => {
                let _ = metrics::ENDPOINT_SUCCESS_RATIO.remove_label_values(&labels);
            }
        }
    }
    metrics::ENDPOINT_FAILURE_STREAK
        .with_label_values(&[id.as_str()])
        .set(i64::try_from(health.failure_streak).unwrap_or(i64::MAX));
}

/// Drops the series of an endpoint no longer shown here (another dispatcher may show it now).
fn hide(id: EndpointId) {
    let id = id.to_string();
    for (window, _) in WINDOWS {
        let _ = metrics::ENDPOINT_SUCCESS_RATIO.remove_label_values(&[id.as_str(), window]);
    }
    let _ = metrics::ENDPOINT_FAILURE_STREAK.remove_label_values(&[id.as_str()]);
}
