//! `/v1/deliveries`: where each delivery stands, and every attempt made.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde_json::{Value, json};

use hookstream_model::delivery::{Attempt, Delivery, DeliveryStatus};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::EventType;
use hookstream_store::DeliveryFilter;

use super::dead_letters::parse_time;

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::paging::{page_json, page_request};
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;

fn render(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "tenant": delivery.tenant,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.map(rfc3339),
        "next_tier": delivery.next_tier,
        "created_at": rfc3339(delivery.created_at),
        "updated_at": rfc3339(delivery.updated_at),
    })
}

pub(super) fn render_attempt(attempt: &Attempt) -> Value {
    json!({
        "number": attempt.number,
        "started_at": rfc3339(attempt.started_at),
        "latency_ms": attempt.latency_ms,
        "status_code": attempt.status_code,
        "class": attempt.class,
        "response_snippet": attempt.response_snippet,
        "error": attempt.error,
        "next_attempt_at": attempt.next_attempt_at.map(rfc3339),
        "tier": attempt.tier,
    })
}

fn parse_id(text: &str) -> Result<DeliveryId, Problem> {
    DeliveryId::parse(text, "id").map_err(|_| Problem::not_found("delivery"))
}

fn filter(caller: &Caller, query: &HashMap<String, String>) -> Result<DeliveryFilter, Problem> {
    Ok(DeliveryFilter {
        tenant: caller.scope_query(query)?,
        event_id: query
            .get("event_id")
            .map(|id| EventId::parse(id, "event_id"))
            .transpose()?,
        endpoint_id: query
            .get("endpoint_id")
            .map(|id| EndpointId::parse(id, "endpoint_id"))
            .transpose()?,
        status: query
            .get("status")
            .map(|s| {
                DeliveryStatus::parse(s).ok_or_else(|| {
                    let known: Vec<_> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
                    Problem::invalid(
                        "status",
                        format!("`status` must be one of {}", known.join(", ")),
                    )
                })
            })
            .transpose()?,
        event_type: query
            .get("event_type")
            .map(|t| EventType::parse(t, "event_type"))
            .transpose()?,
        since: query
            .get("since")
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: query
            .get("until")
            .map(|t| parse_time("until", t))
            .transpose()?,
    })
}

/// `GET /v1/deliveries?event_id=&endpoint_id=&status=&event_type=&since=&until=&tenant=&limit=&after=`
#[utoipa::path(
    get,
    path = "/v1/deliveries",
    tag = "deliveries",
    summary = "Deliveries, filtered",
    params(
        ("tenant" = Option<String>, Query, description = "a tenant key lists its own tenant only", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("event_id" = Option<String>, Query, description = "evt_…", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("endpoint_id" = Option<String>, Query, description = "ep_…", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("status" = Option<String>, Query, description = "pending, delivering, delivered, retrying or dead_lettered", pattern = "^(pending|delivering|delivered|retrying|dead_lettered)$"),
        ("event_type" = Option<String>, Query, description = "an event type", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("since" = Option<String>, Query, description = "created at or after this time (RFC 3339)"),
        ("until" = Option<String>, Query, description = "created before this time (RFC 3339)"),
        schemas::PageParams,
    ),
    responses(
        (status = 200, description = "a page of deliveries", body = schemas::DeliveryPage),
        schemas::Problems,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let page = state
        .intake
        .store
        .list_deliveries(&filter(&caller, &query)?, &page_request(&query)?)
        .await?;
    Ok(Json(page_json(page, render)))
}

/// The delivery an `{id}` path names, or 404 (also for another tenant's).
async fn visible_delivery(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Delivery, Problem> {
    state
        .intake
        .store
        .get_delivery(parse_id(id)?)
        .await?
        .filter(|delivery| caller.sees(&delivery.tenant))
        .ok_or_else(|| Problem::not_found("delivery"))
}

#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "deliveries",
    summary = "One delivery",
    params(
        ("id" = String, Path, description = "the delivery id", pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the delivery", body = schemas::Delivery),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(render(&visible_delivery(&state, &caller, &id).await?)))
}

/// Every attempt of a delivery, first first.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}/attempts",
    tag = "deliveries",
    summary = "Every attempt of a delivery",
    params(
        ("id" = String, Path, description = "the delivery id", pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the attempts, first first", body = schemas::AttemptList),
        schemas::Problems,
    ),
)]
pub async fn attempts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = visible_delivery(&state, &caller, &id).await?.id;
    let attempts = state.intake.store.list_attempts(id).await?;
    Ok(Json(
        json!({"data": attempts.iter().map(render_attempt).collect::<Vec<_>>()}),
    ))
}
