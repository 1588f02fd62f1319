//! `GET /v1/endpoints/{id}/health`, and the `health` of each endpoint in a list: what the
//! dispatcher owning the endpoint last wrote (see `hookstream_model::health`), its windows
//! summed as of the request.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};
use time::OffsetDateTime;

use hookstream_model::endpoint::Endpoint;
use hookstream_model::health::{EndpointHealth, Notice};
use hookstream_model::ids::EndpointId;

use super::endpoint_lookup::live_endpoint;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;

#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}/health",
    tag = "endpoints",
    summary = "How an endpoint's deliveries have been going",
    description = "Success rate and latency over the last 5 minutes and the last hour, the \
                   current run of failures, the last success and the last failure with its \
                   class. Written by the dispatcher every few seconds; an endpoint never sent \
                   to has empty windows.",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the endpoint's health", body = schemas::EndpointHealth),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let endpoint = live_endpoint(&state, &caller, &id).await?;
    let mut healths = of(&state, std::slice::from_ref(&endpoint)).await?;
    let health = healths.remove(&endpoint.id).unwrap_or_default();
    Ok(Json(render(&endpoint, &health, OffsetDateTime::now_utc())))
}

/// The stored health of `endpoints` (those never sent to are absent).
pub(super) async fn of(
    state: &AppState,
    endpoints: &[Endpoint],
) -> Result<HashMap<EndpointId, EndpointHealth>, Problem> {
    let ids: Vec<EndpointId> = endpoints.iter().map(|endpoint| endpoint.id).collect();
    Ok(state
        .intake
        .store
        .endpoint_health(&ids)
        .await?
        .into_iter()
        .collect())
}

/// The health as the API shows it, its windows as of `now`. `status` is `disabled` for a
/// disabled endpoint (by its rules, an operator or a `410`), `warning` while a warning of its
/// rules is in force, else `healthy`.
pub(super) fn render(endpoint: &Endpoint, health: &EndpointHealth, now: OffsetDateTime) -> Value {
    let status = if endpoint.disabled {
        "disabled"
    } else if health.warning.is_some() {
        "warning"
    } else {
        "healthy"
    };
    let notice = |notice: &Notice| json!({"at": rfc3339(notice.at), "reason": notice.reason});
    let windows: Vec<Value> = health
        .windows(now)
        .into_iter()
        .map(|window| {
            let [p50, p90, p99] = window.latency_ms;
            json!({
                "window": window.window,
                "attempts": window.attempts,
                "succeeded": window.succeeded,
                "success_rate": window.success_rate,
                "latency_ms": {"p50": p50, "p90": p90, "p99": p99},
            })
        })
        .collect();
    json!({
        "status": status,
        "warning": health.warning.as_ref().map(notice),
        // Shown only while the endpoint is still disabled: enabled again, it no longer is.
        "disabled_by_rules": health
            .disabled_by_rules
            .as_ref()
            .filter(|_| endpoint.disabled)
            .map(notice),
        "windows": windows,
        "failure_streak": health.failure_streak,
        "failing_since": health.failing_since.map(rfc3339),
        "last_success_at": health.last_success_at.map(rfc3339),
        "last_failure": health.last_failure.as_ref().map(|failure| json!({
            "at": rfc3339(failure.at),
            "class": failure.class,
        })),
    })
}
