//! `/v1/dead-letters`: what could not be delivered, with its event, endpoint, attempts and why.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use hookstream_model::delivery::AttemptClass;
use hookstream_model::ids::{DeliveryId, EndpointId};
use hookstream_model::names::EventType;
use hookstream_model::replay::{DeadLetterFilter, IndexedDeadLetter};
use hookstream_store::Store;

use super::deliveries::render_attempt;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::paging::page_request;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;

/// A time given as RFC 3339 (`2026-11-23T10:00:00Z`).
pub(super) fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, Problem> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        Problem::invalid(
            field,
            format!("`{field}` must be an RFC 3339 time such as 2026-11-23T10:00:00Z"),
        )
    })
}

pub(super) fn parse_class(text: &str) -> Result<AttemptClass, Problem> {
    AttemptClass::parse(text).ok_or_else(|| {
        Problem::invalid(
            "class",
            format!("`{text}` is not an attempt class (HTTP_4XX_PERMANENT, NETWORK_ERROR, ...)"),
        )
    })
}

/// The filter of `GET /v1/dead-letters` from its query.
fn filter(caller: &Caller, query: &HashMap<String, String>) -> Result<DeadLetterFilter, Problem> {
    let get = |name: &str| query.get(name).map(String::as_str);
    Ok(DeadLetterFilter {
        tenant: caller.scope_query(query)?,
        endpoint_id: get("endpoint_id")
            .map(|id| EndpointId::parse(id, "endpoint_id"))
            .transpose()?,
        event_type: get("event_type")
            .map(|t| EventType::parse(t, "event_type"))
            .transpose()?,
        class: get("class").map(parse_class).transpose()?,
        since: get("since").map(|t| parse_time("since", t)).transpose()?,
        until: get("until").map(|t| parse_time("until", t)).transpose()?,
        reason: get("reason")
            .map(|r| parse_reason("reason", r))
            .transpose()?,
    })
}

/// Words a dead letter's reason must contain (ignoring case): not empty, not too long.
pub(super) fn parse_reason(field: &str, words: &str) -> Result<String, Problem> {
    if words.is_empty()
        || words.chars().count() > DeadLetterFilter::MAX_REASON_CHARS
        || words.chars().any(char::is_control)
    {
        return Err(Problem::invalid(
            field,
            format!(
                "`{field}` must be 1 to {} characters of a dead letter's reason, without control characters",
                DeadLetterFilter::MAX_REASON_CHARS
            ),
        ));
    }
    Ok(words.to_owned())
}

/// A dead letter with its event, its endpoint (`null` once deleted) and every attempt.
async fn render(store: &dyn Store, dead: &IndexedDeadLetter) -> Result<Value, Problem> {
    let letter = &dead.letter;
    let task = &letter.task;
    let endpoint = store.get_endpoint(task.endpoint_id).await?;
    let attempts = store.list_attempts(task.delivery_id).await?;
    let payload: Value =
        serde_json::from_str(&task.payload).unwrap_or_else(|_| Value::String(task.payload.clone()));
    Ok(json!({
        "delivery_id": task.delivery_id,
        "event": {
            "id": task.event_id,
            "tenant": task.tenant,
            "type": task.event_type,
            "payload": payload,
            "created_at": rfc3339(task.event_created_at),
        },
        "endpoint": {
            "id": task.endpoint_id,
            "url": endpoint.as_ref().map(|e| e.url.to_string()),
            "disabled": endpoint.as_ref().map(|e| e.disabled),
            "deleted": endpoint.is_none(),
        },
        "reason": letter.reason,
        "class": letter.last_class,
        "status_code": letter.last_status_code,
        "error": letter.last_error,
        "response_snippet": letter.last_response_snippet,
        "attempts_made": task.attempts_made,
        "attempts": attempts.iter().map(render_attempt).collect::<Vec<_>>(),
        "dead_lettered_at": rfc3339(letter.dead_lettered_at),
        "replays": dead.replays,
    }))
}

/// `GET /v1/dead-letters?endpoint_id=&event_type=&class=&since=&until=&reason=&tenant=&limit=&after=`
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead letters",
    summary = "Dead letters, oldest first",
    params(
        ("tenant" = Option<String>, Query, description = "a tenant key lists its own tenant only", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("endpoint_id" = Option<String>, Query, description = "ep_…", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("event_type" = Option<String>, Query, description = "an event type", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("class" = Option<String>, Query, description = "the last attempt's class, such as HTTP_4XX_PERMANENT"),
        ("since" = Option<String>, Query, description = "RFC 3339"),
        ("until" = Option<String>, Query, description = "RFC 3339"),
        ("reason" = Option<String>, Query, description = "words the reason contains, ignoring case (such as `gave up`)", min_length = 1, max_length = 200),
        schemas::PageParams,
    ),
    responses(
        (status = 200, description = "a page of dead letters", body = schemas::DeadLetterPage),
        schemas::Problems,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let store = state.intake.store.as_ref();
    let page = store
        .list_dead_letters(&filter(&caller, &query)?, &page_request(&query)?)
        .await?;
    let mut data = Vec::with_capacity(page.items.len());
    for dead in &page.items {
        data.push(render(store, dead).await?);
    }
    Ok(Json(json!({"data": data, "next": page.next})))
}

/// `GET /v1/dead-letters/{delivery_id}`
#[utoipa::path(
    get,
    path = "/v1/dead-letters/{id}",
    tag = "dead letters",
    summary = "One dead letter",
    params(
        ("id" = String, Path, description = "the dead delivery's id", pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the dead letter", body = schemas::DeadLetter),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = DeliveryId::parse(&id, "id").map_err(|_| Problem::not_found("dead letter"))?;
    let store = state.intake.store.as_ref();
    let dead = store
        .get_dead_letter(id)
        .await?
        .filter(|dead| caller.sees(&dead.letter.task.tenant))
        .ok_or_else(|| Problem::not_found("dead letter"))?;
    Ok(Json(render(store, &dead).await?))
}
