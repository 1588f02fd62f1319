//! `/v1/overview`: the installation's last minutes across all tenants (the console's overview):
//! attempts, success rate, the breakers held open and the kill switch. It shows every tenant's
//! traffic together, so only the admin token may read it.

use axum::Json;
use axum::extract::{Extension, State};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use time::OffsetDateTime;

use hookstream_model::endpoint::{CircuitState, Endpoint};
use hookstream_model::ids::EndpointId;
use hookstream_model::traffic::{TrafficSummary, window_start};

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;

/// Endpoints read at once to check a reported breaker against the store.
const READS_AT_ONCE: usize = 16;

/// The most reported breakers checked against the store (each dispatcher lists up to 100).
const MOST_BREAKERS_CHECKED: usize = 1_000;

/// The most open breakers listed; past it, `open_breakers_truncated` is set.
const MOST_BREAKERS_LISTED: usize = 100;

#[utoipa::path(
    get,
    path = "/v1/overview",
    tag = "control",
    summary = "The last minutes of all tenants' deliveries (admin token only)",
    description = "Attempts and successes per minute over the last five minutes (the minute under \
                   way and the four before it), as the dispatchers report them every few seconds; \
                   the endpoints whose circuit breaker is open or probing now; whether sending is \
                   paused by the kill switch. For watching: a dispatcher's last seconds before a \
                   crash are not counted.",
    responses(
        (status = 200, description = "the overview", body = schemas::Overview),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    let store = &state.intake.store;
    let now = OffsetDateTime::now_utc();
    let reports = store
        .traffic_reports(window_start(now))
        .await
        .map_err(|e| Problem::unavailable(format!("cannot read the traffic reports: {e}")))?;
    let summary = TrafficSummary::of(&reports, now);
    // Checked before cut: a dispatcher may still list breakers of partitions that moved on.
    let mut candidates = summary.open_breakers.clone();
    let mut truncated = summary.more_breakers || candidates.len() > MOST_BREAKERS_CHECKED;
    candidates.truncate(MOST_BREAKERS_CHECKED);
    let mut open = open_in_store(&state, candidates).await?;
    truncated |= open.len() > MOST_BREAKERS_LISTED;
    open.truncate(MOST_BREAKERS_LISTED);
    let sending_paused = store
        .sending_paused()
        .await
        .map_err(|e| Problem::unavailable(format!("cannot read the kill switch: {e}")))?;
    Ok(Json(json!({
        "read_at": rfc3339(now),
        "window_seconds": summary.window_seconds,
        "attempts": summary.attempts,
        "succeeded": summary.succeeded,
        "per_second": summary.per_second(),
        "success_rate": summary.success_rate(),
        "minutes": summary.minutes.iter().map(|m| json!({
            "minute": rfc3339(OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(m.minute)),
            "attempts": m.attempts,
            "succeeded": m.succeeded,
        })).collect::<Vec<_>>(),
        "dispatchers_reporting": summary.reporters,
        "open_breakers": open.iter().map(render_breaker).collect::<Vec<_>>(),
        "open_breakers_truncated": truncated,
        "sending_paused": sending_paused,
    })))
}

/// Those of `candidates` whose breaker the store shows open or probing now: a dispatcher's own
/// view may be older (the endpoint's partition moved on, and its new owner closed it). Deleted
/// endpoints are left out.
async fn open_in_store(
    state: &AppState,
    candidates: Vec<EndpointId>,
) -> Result<Vec<Endpoint>, Problem> {
    let store = &state.intake.store;
    let read: Vec<Option<Endpoint>> = futures::stream::iter(candidates)
        .map(|id| async move { store.get_endpoint(id).await })
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await
        .map_err(|e| Problem::unavailable(format!("cannot read the endpoints: {e}")))?;
    Ok(read
        .into_iter()
        .flatten()
        .filter(|endpoint| endpoint.circuit.state != CircuitState::Closed)
        .collect())
}

fn render_breaker(endpoint: &Endpoint) -> Value {
    json!({
        "endpoint_id": endpoint.id,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "state": endpoint.circuit.state.as_str(),
        "open_until": endpoint.circuit.open_until.map(rfc3339),
    })
}
