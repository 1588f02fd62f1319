//! Each endpoint's health (see [`hookstream_model::health`]), counted by the dispatcher that
//! sends its webhooks and written to the store every [`WRITE_EVERY`] for the API, and shown as
//! metrics for the endpoints that have series of their own.
//!
//! What is kept in memory is only what was counted since the last write. Each write reads what
//! the store has, goes on from it ([`EndpointHealth::continue_from`]) and writes the result, so
//! the run of failures and the windows carry over when the endpoint's partition moves to
//! another dispatcher and back, or the dispatcher restarts. Two owners for a moment (during a
//! rebalance) can each read before the other writes, and a few seconds of counts are lost: the
//! figures are for watching. The one decision taken on them, disabling an endpoint, is judged
//! again on a fresh read of the stored health just before it is made.
//!
//! Each write also judges the health by the endpoint's rules (see
//! [`hookstream_model::health_rules`]): a warning begins or ends, or the endpoint is disabled.
//! The change is recorded in the store (the endpoint disabled first, then the health that says
//! why) before anything else hears of it; then it is told as an operational event
//! (`hookstream.endpoint.warning`, `.disabled`, `.recovered`). An endpoint the rules disabled
//! and an operator enabled again starts its run of failures over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;

use time::OffsetDateTime;

use hookstream_kafka::ops_events::OpsEventPublisher;
use hookstream_model::delivery::AttemptClass;
use hookstream_model::health::{EndpointHealth, Notice, WINDOWS};
use hookstream_model::health_rules::{Rules, Verdict};
use hookstream_model::ids::EndpointId;
use hookstream_model::ops_event::{OpsEvent, OpsKind};
use hookstream_runtime::labels;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_store::{Store, StoreError};

use hookstream_model::traffic::MOST_BREAKERS_REPORTED;

use crate::metrics;
use crate::ops_events::publish_ops_event;
use crate::traffic_report::TrafficCounter;

/// How often what was counted is written.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// The longest the last write at shutdown may take: the consumer leaves its group after it.
const LAST_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an endpoint's series stay with nothing counted here: it may have moved to another
/// dispatcher. One failing stays longer, so a quiet spell between retries does not end the
/// series its alert watches.
const SHOWN_QUIET: Duration = Duration::from_secs(120);
const SHOWN_QUIET_FAILING: Duration = Duration::from_secs(3600);

/// Up to `most` endpoints whose breaker this dispatcher holds open, and whether there are more.
pub type OpenBreakers = Box<dyn Fn(usize) -> (Vec<EndpointId>, bool) + Send + Sync>;

/// The health of the endpoints this dispatcher has sent to lately.
pub struct HealthKeeper {
    store: Arc<dyn Store>,
    /// The installation's rules; an endpoint's own override them.
    rules: Rules,
    /// Where changes are told.
    ops_events: OpsEventPublisher,
    /// Counted since the last write, per endpoint.
    counted: Mutex<HashMap<EndpointId, EndpointHealth>>,
    /// The health last written, for the metrics; only the writer uses it.
    shown: Mutex<HashMap<EndpointId, Shown>>,
    /// This dispatcher's attempts per minute, for the overview of all tenants.
    traffic: Mutex<TrafficCounter>,
}

struct Shown {
    health: EndpointHealth,
    last_written: Instant,
}

impl HealthKeeper {
    pub fn new(store: Arc<dyn Store>, rules: Rules, ops_events: OpsEventPublisher) -> Self {
        Self {
            store,
            rules,
            ops_events,
            counted: Mutex::default(),
            shown: Mutex::default(),
            traffic: Mutex::new(TrafficCounter::new(TrafficCounter::reporter_name())),
        }
    }

    fn counted(&self) -> MutexGuard<'_, HashMap<EndpointId, EndpointHealth>> {
        // Plain counts: a panic elsewhere cannot leave them half changed.
        self.counted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes operational events side by side.
    async fn publish_all(&self, events: &[OpsEvent]) {
        join_all(
            events
                .iter()
                .map(|event| publish_ops_event(&self.ops_events, event)),
        )
        .await;
    }

    /// Tells an endpoint's change decided elsewhere (a `410 Gone`), in the background so the
    /// delivery that found it is not held up (the caller leaves out operator endpoints).
    pub fn tell(&self, event: OpsEvent) {
        let publisher = self.ops_events.clone();
        tokio::spawn(async move { publish_ops_event(&publisher, &event).await });
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
        self.traffic().record(at, class.is_success());
    }

    fn traffic(&self) -> MutexGuard<'_, TrafficCounter> {
        self.traffic.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes every [`WRITE_EVERY`] until `stop`, then once more, within a bound: a write
    /// under way when `stop` comes is given up (its counts are lost), so a slow store cannot
    /// keep the dispatcher from leaving its consumer group. Each write also reports this
    /// dispatcher's traffic, with the breakers `open_breakers` says it holds open.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, open_breakers: OpenBreakers) {
        let mut ticks = tokio::time::interval(WRITE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        () = self.write_all(&open_breakers) => {}
                    }
                }
            }
        }
        if tokio::time::timeout(LAST_WRITE_TIMEOUT, self.write_all(&open_breakers))
            .await
            .is_err()
        {
            tracing::warn!(
                "the last endpoint health and traffic write did not finish in time; what it held is lost"
            );
        }
    }

    async fn write_all(&self, open_breakers: &OpenBreakers) {
        self.write_counted().await;
        self.report_traffic(open_breakers).await;
    }

    /// Writes this dispatcher's traffic reports that are due; what is not written is written
    /// with the next.
    async fn report_traffic(&self, open_breakers: &OpenBreakers) {
        let (open, more) = open_breakers(MOST_BREAKERS_REPORTED);
        let due = self.traffic().due(OffsetDateTime::now_utc(), &open, more);
        match self.store.put_traffic_reports(&due).await {
            Ok(()) => self.traffic().written(&due),
            Err(err) => {
                tracing::warn!(error = %err, "traffic report not written; written with the next")
            }
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
        let mut merged: Vec<(EndpointId, EndpointHealth)> = counted
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
        // Each judgement reads its endpoint: side by side, so many endpoints do not make the
        // write late.
        let changes: Vec<OpsEvent> = join_all(merged.iter_mut().filter_map(|(id, health)| {
            let since = counted.get(id)?;
            Some(self.judge(*id, since, health, now))
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
        self.store.put_endpoint_health(&merged).await?;
        // Told only once recorded: a change not written is judged again with the next write.
        self.publish_all(&changes).await;
        Ok(merged)
    }

    /// Applies the endpoint's rules to its `health` (gone on from what the store had; `since`:
    /// what was counted since the last write), and returns the operational events of what
    /// changed (none for an operator endpoint: they would go round to it). A store error leaves
    /// the judgement to the next write.
    async fn judge(
        &self,
        id: EndpointId,
        since: &EndpointHealth,
        health: &mut EndpointHealth,
        now: OffsetDateTime,
    ) -> Vec<OpsEvent> {
        let endpoint = match self.store.get_endpoint(id).await {
            Ok(Some(endpoint)) => endpoint,
            // Deleted: nothing to judge.
            Ok(None) => return Vec::new(),
            Err(err) => {
                tracing::warn!(endpoint_id = %id, error = %err, "endpoint not read; its health is judged with the next write");
                return Vec::new();
            }
        };
        let mut changes = Vec::new();
        let mut tell = |kind: OpsKind, reason: &str| {
            if !endpoint.subscription.is_operational() {
                changes.push(OpsEvent::endpoint_changed(
                    kind,
                    id,
                    &endpoint.tenant,
                    reason,
                    now,
                ));
            }
        };
        if health.disabled_by_rules.is_some() {
            if endpoint.disabled {
                return changes;
            }
            // Enabled again: what failed before does not count against it.
            health.start_over(since);
            tracing::info!(endpoint_id = %id, "endpoint enabled again after the health rules disabled it; its run of failures starts over");
        }
        // Disabled by an operator or a `410`: its deliveries are refused, nothing to judge.
        if endpoint.disabled {
            return changes;
        }
        let rules = endpoint
            .shaping
            .health_rules
            .unwrap_or_default()
            .over(&self.rules);
        match rules.judge(health, now, endpoint.updated_at) {
            Verdict::Disable(reason) => {
                if !self
                    .still_to_disable(id, since, &rules, now, endpoint.updated_at)
                    .await
                {
                    return changes;
                }
                match self.store.disable_endpoint(id, now).await {
                    Ok(true) => {
                        tracing::warn!(endpoint_id = %id, tenant = %endpoint.tenant, %reason, "endpoint disabled by its health rules; its new deliveries are kept, unsent, until it is enabled again");
                        metrics::HEALTH_CHANGES
                            .with_label_values(&["disabled"])
                            .inc();
                        // Warned of in the same breath, if not before.
                        if health.warning.is_none() {
                            metrics::HEALTH_CHANGES
                                .with_label_values(&["warning"])
                                .inc();
                            tell(OpsKind::EndpointWarning, &reason);
                            health.warning = Some(Notice {
                                at: now,
                                reason: reason.clone(),
                            });
                        }
                        tell(OpsKind::EndpointDisabled, &reason);
                        health.disabled_by_rules = Some(Notice { at: now, reason });
                        // Told at once: the disabling is recorded, and should the health
                        // write fail, the next judgement finds the endpoint disabled and
                        // tells nothing.
                        self.publish_all(&changes).await;
                        return Vec::new();
                    }
                    // Disabled meanwhile by someone else (another dispatcher's rules in a
                    // rebalance, a `410`): keep what the store says of it, so this write does
                    // not wipe the reason the other one recorded.
                    Ok(false) => self.adopt_stored_notices(id, health).await,
                    Err(err) => {
                        tracing::warn!(endpoint_id = %id, error = %err, "endpoint not disabled; judged again with the next write");
                    }
                }
            }
            Verdict::Warn(reason) => {
                if health.warning.is_none() {
                    tracing::warn!(endpoint_id = %id, tenant = %endpoint.tenant, %reason, "endpoint health warning");
                    metrics::HEALTH_CHANGES
                        .with_label_values(&["warning"])
                        .inc();
                    tell(OpsKind::EndpointWarning, &reason);
                    health.warning = Some(Notice { at: now, reason });
                }
            }
            Verdict::Healthy => {
                if health.warning.take().is_some() {
                    tracing::info!(endpoint_id = %id, tenant = %endpoint.tenant, "endpoint recovered: its health no longer calls for a warning");
                    metrics::HEALTH_CHANGES
                        .with_label_values(&["recovered"])
                        .inc();
                    tell(
                        OpsKind::EndpointRecovered,
                        "its health no longer calls for a warning",
                    );
                }
            }
        }
        changes
    }

    /// Takes the warning and the disabling reason the store has for the endpoint into
    /// `health`, where `health` has none.
    async fn adopt_stored_notices(&self, id: EndpointId, health: &mut EndpointHealth) {
        match self.store.endpoint_health(&[id]).await {
            Ok(stored) => {
                if let Some((_, stored)) =
                    stored.into_iter().find(|(stored_id, _)| *stored_id == id)
                {
                    health.disabled_by_rules =
                        health.disabled_by_rules.take().or(stored.disabled_by_rules);
                    health.warning = health.warning.take().or(stored.warning);
                }
            }
            Err(err) => {
                tracing::warn!(endpoint_id = %id, error = %err, "endpoint health not read again; a reason recorded meanwhile may be overwritten");
            }
        }
    }

    /// Whether the rules still disable the endpoint on the health stored now, gone on from
    /// `since`: another dispatcher (in a rebalance) may have written a success meanwhile.
    async fn still_to_disable(
        &self,
        id: EndpointId,
        since: &EndpointHealth,
        rules: &Rules,
        now: OffsetDateTime,
        changed_at: OffsetDateTime,
    ) -> bool {
        let stored = match self.store.endpoint_health(&[id]).await {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(endpoint_id = %id, error = %err, "endpoint health not read again; judged with the next write");
                return false;
            }
        };
        let mut fresh = since.clone();
        if let Some((_, earlier)) = stored.into_iter().find(|(stored_id, _)| *stored_id == id) {
            fresh.continue_from(earlier);
        }
        matches!(rules.judge(&fresh, now, changed_at), Verdict::Disable(_))
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
