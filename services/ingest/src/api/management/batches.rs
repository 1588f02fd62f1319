//! Replay batches: `/v1/batches`, and the shortcuts `POST /v1/deliveries/{id}/resend` and
//! `POST /v1/endpoints/{id}/recover`. The API records a batch; the replay service runs it.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use hookstream_model::delivery::DeliveryStatus;
use hookstream_model::ids::{BatchId, DeliveryId, EndpointId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_model::ops_event::OpsEvent;
use hookstream_model::replay::{
    Batch, BatchItem, BatchSelection, BatchStatus, DeadLetterFilter, ItemOutcome,
};
use hookstream_store::NewBatchItem;

use super::dead_letters::{parse_class, parse_reason, parse_time};
use super::endpoint_lookup::live_endpoint;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::body::JsonObject;
use crate::api::paging::{page_json, page_request};
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;
use crate::metrics;
use crate::replay_plan::{self, PlanError, ReplayRequest};

fn render_filter(f: &DeadLetterFilter) -> Value {
    json!({
        "tenant": f.tenant,
        "endpoint_id": f.endpoint_id,
        "event_type": f.event_type,
        "class": f.class,
        "since": f.since.map(rfc3339),
        "until": f.until.map(rfc3339),
        "reason": f.reason,
    })
}

fn render(batch: &Batch) -> Value {
    let selection = match &batch.selection {
        BatchSelection::Deliveries(ids) => json!({"delivery_ids": ids}),
        BatchSelection::Filter(f) => json!({"filter": render_filter(f)}),
    };
    let skipped: Map<String, Value> = batch
        .counts
        .skipped
        .iter()
        .map(|(reason, n)| (reason.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "id": batch.id,
        "status": batch.status.as_str(),
        "dry_run": batch.dry_run,
        "allow_repeat": batch.allow_repeat,
        "created_by": batch.created_by,
        "tenant": batch.tenant,
        "selection": selection,
        "counts": {
            "matched": batch.counts.matched,
            "created": batch.counts.created,
            "pending": batch.counts.pending,
            "would_replay": batch.counts.would_replay,
            "skipped": batch.counts.skipped_total(),
            "skipped_by_reason": skipped,
        },
        "error": batch.error,
        "created_at": rfc3339(batch.created_at),
        "updated_at": rfc3339(batch.updated_at),
        "finished_at": batch.finished_at.map(rfc3339),
    })
}

fn render_outcome(outcome: &ItemOutcome) -> Value {
    match outcome {
        ItemOutcome::Created {
            delivery_id,
            published,
        } => json!({"outcome": "created", "delivery_id": delivery_id, "published": published}),
        ItemOutcome::Skipped(reason) => json!({"outcome": "skipped", "reason": reason.as_str()}),
        other => json!({"outcome": other.kind()}),
    }
}

/// One dead letter of a batch, stored or planned.
fn render_entry(
    position: usize,
    dead_delivery_id: DeliveryId,
    endpoint_id: EndpointId,
    outcome: &ItemOutcome,
) -> Value {
    let mut value = render_outcome(outcome);
    value["position"] = json!(position);
    value["dead_delivery_id"] = json!(dead_delivery_id);
    value["endpoint_id"] = json!(endpoint_id);
    value
}

fn render_item(item: &BatchItem) -> Value {
    render_entry(
        item.position as usize,
        item.dead_delivery_id,
        item.endpoint_id,
        &item.outcome,
    )
}

fn render_planned(items: &[NewBatchItem]) -> Vec<Value> {
    items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            render_entry(
                position,
                item.dead_delivery_id,
                item.endpoint_id,
                &item.outcome,
            )
        })
        .collect()
}

impl From<PlanError> for Problem {
    fn from(err: PlanError) -> Self {
        match err {
            PlanError::TooMany => Problem::invalid("filter", err.to_string()),
            PlanError::UnknownDelivery(_) => Problem::invalid("delivery_ids", err.to_string()),
            PlanError::Store(err) => err.into(),
        }
    }
}

fn parse_filter(value: Value) -> Result<DeadLetterFilter, Problem> {
    let Value::Object(map) = value else {
        return Err(Problem::invalid("filter", "`filter` must be an object"));
    };
    let mut f = JsonObject::from_map(map);
    let filter = DeadLetterFilter {
        tenant: f
            .optional_str("tenant")?
            .map(|t| Tenant::parse(&t, "filter.tenant"))
            .transpose()?,
        endpoint_id: f
            .optional_str("endpoint_id")?
            .map(|id| EndpointId::parse(&id, "filter.endpoint_id"))
            .transpose()?,
        event_type: f
            .optional_str("event_type")?
            .map(|t| EventType::parse(&t, "filter.event_type"))
            .transpose()?,
        class: f
            .optional_str("class")?
            .map(|c| parse_class(&c).map_err(|p| p.nested_under("filter")))
            .transpose()?,
        since: f
            .optional_str("since")?
            .map(|t| parse_time("since", &t).map_err(|p| p.nested_under("filter")))
            .transpose()?,
        until: f
            .optional_str("until")?
            .map(|t| parse_time("until", &t).map_err(|p| p.nested_under("filter")))
            .transpose()?,
        reason: f
            .optional_str("reason")?
            .map(|r| parse_reason("reason", &r).map_err(|p| p.nested_under("filter")))
            .transpose()?,
    };
    f.finish().map_err(|p| p.nested_under("filter"))?;
    Ok(filter)
}

/// Records the batch and answers: `200` with the planned list for a dry run, `202` with the
/// batch for one that runs.
async fn start(state: &AppState, request: ReplayRequest) -> Result<Response, Problem> {
    let dry_run = request.dry_run;
    let (batch, items) = replay_plan::create_batch(state.intake.store.as_ref(), request).await?;
    tracing::info!(batch_id = %batch.id, dry_run, matched = batch.counts.matched, created_by = %batch.created_by, "replay batch created");
    if dry_run {
        let mut body = render(&batch);
        body["count"] = json!(batch.counts.would_replay);
        body["items"] = json!(render_planned(&items));
        Ok((StatusCode::OK, Json(body)).into_response())
    } else {
        Ok((StatusCode::ACCEPTED, Json(render(&batch))).into_response())
    }
}

/// `POST /v1/batches` `{"delivery_ids": [...]}` or `{"filter": {...}}`, with `dry_run` and
/// `allow_repeat`.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "replay",
    summary = "Replay dead letters as one batch, or plan it (dry run)",
    request_body(content = schemas::BatchCreate, content_type = "application/json"),
    responses(
        (status = 202, description = "the batch, running", body = schemas::Batch),
        (status = 200, description = "a dry run, with every item it would take", body = schemas::Batch),
        schemas::Problems,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let mut fields = JsonObject::parse(body, state.max_body_bytes)?;
    let ids = fields.optional_str_list("delivery_ids")?;
    let filter = fields.optional("filter");
    let dry_run = fields.optional_bool("dry_run")?.unwrap_or(false);
    let allow_repeat = fields.optional_bool("allow_repeat")?.unwrap_or(false);
    fields.finish()?;
    let selection = match (ids, filter) {
        (Some(ids), None) => {
            if ids.is_empty() {
                return Err(Problem::invalid("delivery_ids", "`delivery_ids` is empty"));
            }
            if ids.len() > replay_plan::MAX_BATCH_ITEMS {
                return Err(Problem::invalid(
                    "delivery_ids",
                    format!("at most {} delivery ids", replay_plan::MAX_BATCH_ITEMS),
                ));
            }
            let ids = ids
                .iter()
                .enumerate()
                .map(|(i, id)| DeliveryId::parse(id, &format!("delivery_ids[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            BatchSelection::Deliveries(ids)
        }
        (None, Some(filter)) => {
            let mut filter = parse_filter(filter)?;
            filter.tenant = caller.scope(filter.tenant.take(), "filter.tenant")?;
            BatchSelection::Filter(filter)
        }
        _ => {
            return Err(Problem::invalid(
                "body",
                "give either `delivery_ids` or `filter`",
            ));
        }
    };
    // An admin batch belongs to a tenant when its filter names one.
    let tenant = match &selection {
        BatchSelection::Filter(filter) => filter.tenant.clone(),
        BatchSelection::Deliveries(_) => caller.tenant().cloned(),
    };
    start(
        &state,
        ReplayRequest {
            selection,
            dry_run,
            allow_repeat,
            created_by: caller.key_id(),
            tenant,
        },
    )
    .await
}

fn parse_id(text: &str) -> Result<BatchId, Problem> {
    BatchId::parse(text, "id").map_err(|_| Problem::not_found("batch"))
}

/// `GET /v1/batches?tenant=`, newest first: a tenant key sees its tenant's batches only.
#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "replay",
    summary = "Batches, newest first",
    params(
        ("tenant" = Option<String>, Query, description = "a tenant key lists its own tenant only", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        schemas::PageParams,
    ),
    responses(
        (status = 200, description = "a page of batches", body = schemas::BatchPage),
        schemas::Problems,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let tenant = caller.scope_query(&query)?;
    let page = state
        .intake
        .store
        .list_batches(tenant.as_ref(), &page_request(&query)?)
        .await?;
    Ok(Json(page_json(page, render)))
}

/// The batch an `{id}` path names, or 404: a tenant key sees only its tenant's batches.
async fn visible_batch(state: &AppState, caller: &Caller, id: &str) -> Result<Batch, Problem> {
    state
        .intake
        .store
        .get_batch(parse_id(id)?)
        .await?
        .filter(|batch| {
            caller
                .tenant()
                .is_none_or(|own| batch.tenant.as_ref() == Some(own))
        })
        .ok_or_else(|| Problem::not_found("batch"))
}

/// `GET /v1/batches/{id}`
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "replay",
    summary = "One batch",
    params(
        ("id" = String, Path, description = "the batch id", pattern = "^bat_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the batch", body = schemas::Batch),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(render(&visible_batch(&state, &caller, &id).await?)))
}

/// `GET /v1/batches/{id}/items`: each dead letter of the batch and what became of it; a
/// created item links the new delivery to the dead one it replaces.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/items",
    tag = "replay",
    summary = "A batch's items",
    params(
        ("id" = String, Path, description = "the batch id", pattern = "^bat_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        schemas::PageParams,
    ),
    responses(
        (status = 200, description = "a page of items", body = schemas::BatchItemPage),
        schemas::Problems,
    ),
)]
pub async fn items(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let id = visible_batch(&state, &caller, &id).await?.id;
    let page = state
        .intake
        .store
        .list_batch_items(id, &page_request(&query)?)
        .await?;
    Ok(Json(page_json(page, render_item)))
}

/// `POST /v1/batches/{id}/cancel`: no more deliveries are created; those created stay.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    tag = "replay",
    summary = "Stop a running batch",
    params(
        ("id" = String, Path, description = "the batch id", pattern = "^bat_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the batch", body = schemas::Batch),
        schemas::Problems,
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = visible_batch(&state, &caller, &id).await?.id;
    let batch = state
        .intake
        .store
        .finish_batch(id, BatchStatus::Cancelled, None)
        .await?
        .ok_or_else(|| Problem::not_found("batch"))?;
    tracing::info!(batch_id = %batch.id, status = %batch.status, "replay batch cancel asked");
    // Told here too: no runner may have the batch (cancelled within a second of its creation,
    // or while the replay service is down). Told twice, it has the same id and is taken once.
    if batch.status == BatchStatus::Cancelled && !batch.dry_run {
        let event = OpsEvent::batch_finished(&batch);
        let outcome = match state.ops_events.publish(&event).await {
            Ok(()) => "published",
            Err(err) => {
                tracing::error!(batch_id = %batch.id, error = %err, "a cancelled batch's operational event not published");
                "failed"
            }
        };
        metrics::OPS_EVENTS
            .with_label_values(&[event.kind.event_type(), outcome])
            .inc();
    }
    Ok(Json(render(&batch)))
}

/// Reads the optional `{"allow_repeat": bool}` body of the shortcuts, and `since` for recover.
fn shortcut_fields(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    with_since: bool,
) -> Result<(bool, bool, Option<String>), Problem> {
    let mut fields = JsonObject::parse_optional(body, state.max_body_bytes)?;
    let allow_repeat = fields.optional_bool("allow_repeat")?.unwrap_or(false);
    let dry_run = fields.optional_bool("dry_run")?.unwrap_or(false);
    let since = if with_since {
        fields.optional_str("since")?
    } else {
        None
    };
    fields.finish()?;
    Ok((allow_repeat, dry_run, since))
}

/// `POST /v1/deliveries/{id}/resend`: replays one dead-lettered delivery (a batch of one).
#[utoipa::path(
    post,
    path = "/v1/deliveries/{id}/resend",
    tag = "replay",
    summary = "Replay one dead-lettered delivery",
    params(
        ("id" = String, Path, description = "the delivery id", pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    request_body(content = Option<schemas::Resend>, content_type = "application/json"),
    responses(
        (status = 202, description = "the batch, running", body = schemas::Batch),
        (status = 200, description = "a dry run", body = schemas::Batch),
        schemas::Problems,
    ),
)]
pub async fn resend(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = DeliveryId::parse(&id, "id").map_err(|_| Problem::not_found("delivery"))?;
    let (allow_repeat, dry_run, _) = shortcut_fields(&state, body, false)?;
    let store = &state.intake.store;
    let Some(dead) = store
        .get_dead_letter(id)
        .await?
        .filter(|dead| caller.sees(&dead.letter.task.tenant))
    else {
        let delivery = store
            .get_delivery(id)
            .await?
            .filter(|delivery| caller.sees(&delivery.tenant));
        return match delivery {
            None => Err(Problem::not_found("delivery")),
            // The replay service indexes dead letters from their topic, moments after the
            // delivery is recorded dead-lettered.
            Some(delivery) if delivery.status == DeliveryStatus::DeadLettered => Err(Problem::new(
                StatusCode::CONFLICT,
                "dead-letter-not-indexed",
                "Dead letter not indexed yet",
                format!(
                    "delivery {id} is dead-lettered, and its dead letter is not indexed yet \
                     (the replay service reads the dead-letter topic); try again in a moment"
                ),
            )),
            Some(delivery) => Err(Problem::new(
                StatusCode::CONFLICT,
                "not-dead-lettered",
                "Not a dead letter",
                format!(
                    "delivery {id} is {}; only dead-lettered deliveries are resent",
                    delivery.status
                ),
            )),
        };
    };
    start(
        &state,
        ReplayRequest {
            selection: BatchSelection::Deliveries(vec![id]),
            dry_run,
            allow_repeat,
            created_by: caller.key_id(),
            tenant: Some(dead.letter.task.tenant),
        },
    )
    .await
}

/// `POST /v1/endpoints/{id}/recover` `{"since": …}`: replays, as one batch, everything that
/// died for the endpoint since then.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/recover",
    tag = "replay",
    summary = "Replay everything that died for an endpoint since a time",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    request_body(content = schemas::Recover, content_type = "application/json"),
    responses(
        (status = 202, description = "the batch, running", body = schemas::Batch),
        (status = 200, description = "a dry run", body = schemas::Batch),
        schemas::Problems,
    ),
)]
pub async fn recover(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let endpoint = live_endpoint(&state, &caller, &id).await?;
    let (allow_repeat, dry_run, since) = shortcut_fields(&state, body, true)?;
    let since = since.ok_or_else(|| Problem::invalid("since", "`since` is required"))?;
    let since = parse_time("since", &since)?;
    start(
        &state,
        ReplayRequest {
            selection: BatchSelection::Filter(DeadLetterFilter {
                endpoint_id: Some(endpoint.id),
                since: Some(since),
                ..Default::default()
            }),
            dry_run,
            allow_repeat,
            created_by: caller.key_id(),
            tenant: Some(endpoint.tenant),
        },
    )
    .await
}
