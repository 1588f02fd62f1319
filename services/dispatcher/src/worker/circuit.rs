//! The endpoint's circuit breaker as a worker asks it (may a task go out?) and tells it (how
//! a request went), each change of state shown in the store and the metrics; and the endpoint's
//! health count of each request.

use time::OffsetDateTime;

use hookstream_model::endpoint::{CircuitState, CircuitView, Endpoint};
use hookstream_model::ids::EndpointId;
use hookstream_runtime::labels;
use hookstream_runtime::telemetry;

use super::Worker;
use crate::breaker::{Admission, Breakers, Circuit};
use crate::metrics;
use crate::outcome::Outcome;
use crate::progress::Interrupted;

impl Worker {
    /// Asks the endpoint's breaker whether a task may go out, recording any change of state.
    pub(crate) async fn admit(&self, endpoint: &Endpoint) -> Result<Admission, Interrupted> {
        let recorded = match endpoint.circuit.state {
            CircuitState::Closed => Circuit::Closed { failures: 0 },
            CircuitState::Open => Circuit::Open {
                until: endpoint
                    .circuit
                    .open_until
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            },
            CircuitState::HalfOpen => Circuit::Probing,
        };
        let (admission, transition) = {
            let mut breakers = self.breakers();
            breakers.seed(endpoint.id, recorded);
            breakers.admit(endpoint.id, OffsetDateTime::now_utc())
        };
        if let Some(transition) = transition {
            self.persist_circuit(endpoint.id, transition.to).await?;
        }
        Ok(admission)
    }

    /// Counts a request to the endpoint in its health (one per batch: one request).
    pub(crate) fn count_in_health(&self, endpoint: EndpointId, outcome: &Outcome) {
        self.health.record(
            endpoint,
            outcome.attempt.started_at,
            Some(outcome.attempt.latency_ms),
            outcome.attempt.class,
        );
    }

    /// Tells the endpoint's breaker how a sent task went, recording any change of state.
    pub(crate) async fn record_circuit(
        &self,
        endpoint: EndpointId,
        failed: bool,
    ) -> Result<(), Interrupted> {
        let transition = self
            .breakers()
            .record(endpoint, failed, OffsetDateTime::now_utc());
        if let Some(transition) = transition {
            self.persist_circuit(endpoint, transition.to).await?;
        }
        Ok(())
    }

    /// Up to `most` endpoints whose breaker is open here, and whether there are more.
    pub(crate) fn open_breakers(&self, most: usize) -> (Vec<EndpointId>, bool) {
        self.breakers().open_endpoints(most)
    }

    pub(super) fn breakers(&self) -> std::sync::MutexGuard<'_, Breakers> {
        // The breakers hold no invariant a panic could break halfway; keep using them.
        self.breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shows the breaker's new state in the store (for the API) and in the metrics.
    async fn persist_circuit(
        &self,
        endpoint: EndpointId,
        circuit: Circuit,
    ) -> Result<(), Interrupted> {
        let view = match circuit {
            Circuit::Closed { .. } => CircuitView::default(),
            Circuit::Open { until } => CircuitView {
                state: CircuitState::Open,
                open_until: Some(until),
            },
            Circuit::Probing => CircuitView {
                state: CircuitState::HalfOpen,
                open_until: None,
            },
        };
        self.durably(|| self.store.set_circuit(endpoint, &view))
            .await?;
        metrics::CIRCUIT_TRANSITIONS
            .with_label_values(&[view.state.as_str()])
            .inc();
        let id = endpoint.to_string();
        if labels::endpoints().admits(&id) {
            let state = match view.state {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            };
            metrics::CIRCUIT_STATE.with_label_values(&[&id]).set(state);
        }
        metrics::CIRCUITS_OPEN.set(self.breakers().open_count() as i64);
        tracing::warn!(
            endpoint_id = %endpoint,
            state = view.state.as_str(),
            trace_id = %telemetry::trace_id(&tracing::Span::current()),
            "circuit breaker changed"
        );
        Ok(())
    }
}
