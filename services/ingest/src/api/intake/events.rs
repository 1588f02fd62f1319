//! `POST /v1/events`: accept an event for delivery.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use hookstream_model::ValidationError;
use hookstream_model::event::check_payload_depth;
use hookstream_model::names::{IdempotencyKey, Tenant};
use hookstream_model::ops_event;

use super::batch_body::batch_events;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::body::JsonObject;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::intake::{Accepted, EventRequest, EventSource, IntakeError};

/// Reads and validates the body of `POST /v1/events`.
fn parse_request(mut fields: JsonObject) -> Result<EventRequest, Problem> {
    let tenant = Tenant::parse(&fields.required_str("tenant")?, "tenant")?;
    let event_type = ops_event::tenant_event_type(&fields.required_str("type")?, "type")?;
    let payload = fields.required("payload")?;
    check_payload_depth(&payload, "payload")?;
    let idempotency_key = fields
        .optional_str("idempotency_key")?
        .map(|key| tenant_idempotency_key(&key))
        .transpose()?;
    fields.finish()?;
    Ok(EventRequest {
        tenant,
        event_type,
        payload,
        idempotency_key,
        source: EventSource::Http,
    })
}

/// A client's idempotency key: not one of the keys operational events take, so that no tenant
/// can take one before its event comes.
fn tenant_idempotency_key(key: &str) -> Result<IdempotencyKey, ValidationError> {
    if key.starts_with(ops_event::IDEMPOTENCY_PREFIX) {
        return Err(ValidationError::new(
            "idempotency_key",
            format!(
                "keys starting `{}` are reserved for Hookstream's operational events",
                ops_event::IDEMPOTENCY_PREFIX
            ),
        ));
    }
    IdempotencyKey::parse(key, "idempotency_key")
}

/// The most events one `POST /v1/events:batch` may carry.
/// Parses a `POST /v1/events` body as the route does: the request, or the problem document the
/// client would get. (The fuzz target's way in.)
pub fn parse_event_body(body: &[u8], limit: usize) -> Result<EventRequest, Value> {
    JsonObject::parse(Ok(Bytes::copy_from_slice(body)), limit)
        .and_then(parse_request)
        .map_err(|problem| problem.document())
}

pub const MAX_BATCH_EVENTS: usize = 1000;

/// Most JSON values (objects, arrays, scalars) the payloads of one batch may hold together.
pub const MAX_BATCH_VALUES: usize = 1_000_000;

/// How many JSON values `value` holds, itself included.
fn json_values(value: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        count += 1;
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(fields) => stack.extend(fields.values()),
            _ => {}
        }
    }
    count
}

/// `202 {"id", "deliveries"}` once Kafka has the tasks; `200` with the original id for a repeat
/// of an idempotency key within the window.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    summary = "Accept an event for delivery",
    request_body(content = schemas::EventCreate, content_type = "application/json"),
    responses(
        (status = 202, description = "accepted: Kafka has its delivery tasks", body = schemas::EventAccepted),
        (status = 200, description = "a repeat of an idempotency key within the window", body = schemas::EventAccepted),
        schemas::Problems,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require_key()?;
    let request = parse_request(JsonObject::parse(body, state.max_body_bytes)?)?;
    caller.may_act_for(&request.tenant, "tenant")?;
    let _in_progress = state
        .tenant_concurrency
        .try_enter(&request.tenant)
        .ok_or_else(|| Problem::tenant_busy(request.tenant.as_str()))?;
    state
        .tenant_limiter
        .check(&request.tenant)
        .map_err(|wait| Problem::rate_limited(request.tenant.as_str(), wait))?;
    let accepted = state.intake.accept(request).await.map_err(intake_problem)?;
    let (status, body) = accepted_body(accepted);
    Ok((status, Json(body)).into_response())
}

/// `POST /v1/events:batch` `{"events": [...]}`: up to [`MAX_BATCH_EVENTS`] events accepted
/// together (one store write, one round of Kafka acknowledgements). Answers `200` with one result
/// per event, in order: what `POST /v1/events` would have answered for it (`status` and body, or
/// `status` and `problem`). An invalid event fails alone; the others are accepted.
#[utoipa::path(
    post,
    path = "/v1/events:batch",
    tag = "events",
    summary = "Accept up to 1,000 events at once",
    request_body(content = schemas::EventBatch, content_type = "application/json"),
    responses(
        (status = 200, description = "one result per event, in order", body = schemas::EventBatchResults),
        schemas::Problems,
    ),
)]
pub async fn create_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require_key()?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(state.max_batch_body_bytes)
        } else {
            Problem::invalid("body", format!("cannot read the request body: {rejection}"))
        }
    })?;
    let items = batch_events(&body, MAX_BATCH_EVENTS)?;

    // Parsed events are held until the batch is stored: bounded by the JSON values they hold
    // (a few hundred kilobytes of `[[],[],…]` is a hundred thousand values).
    let mut values_left = MAX_BATCH_VALUES;
    let mut results = vec![Value::Null; items.len()];
    let mut requests = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    // One place per tenant of the batch while it is handled.
    let mut in_progress = std::collections::HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let parsed = parse_batch_item(item, state.max_body_bytes).and_then(|request| {
            let values = json_values(&request.payload);
            values_left = values_left.checked_sub(values).ok_or_else(|| {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    format!(
                        "the batch's payloads hold more than {MAX_BATCH_VALUES} JSON values; send fewer events per batch"
                    ),
                )
                .with_field("payload")
            })?;
            caller.may_act_for(&request.tenant, "tenant")?;
            if !in_progress.contains_key(&request.tenant) {
                let permit = state
                    .tenant_concurrency
                    .try_enter(&request.tenant)
                    .ok_or_else(|| Problem::tenant_busy(request.tenant.as_str()))?;
                in_progress.insert(request.tenant.clone(), permit);
            }
            state
                .tenant_limiter
                .check(&request.tenant)
                .map_err(|wait| Problem::rate_limited(request.tenant.as_str(), wait))?;
            Ok(request)
        });
        match parsed {
            Ok(request) => {
                positions.push(index);
                requests.push(request);
            }
            Err(problem) => {
                results[index] = problem_result(problem.nested_under(&format!("events[{index}]")));
            }
        }
    }
    if !requests.is_empty() {
        let outcomes = state
            .intake
            .accept_batch(requests)
            .await
            .map_err(intake_problem)?;
        for (index, outcome) in positions.into_iter().zip(outcomes) {
            results[index] = match outcome {
                Ok(accepted) => {
                    let (status, mut body) = accepted_body(accepted);
                    body["status"] = json!(status.as_u16());
                    body
                }
                Err(err) => problem_result(intake_problem(err)),
            };
        }
    }
    Ok((StatusCode::OK, Json(json!({"results": results}))).into_response())
}

/// One event of a batch: an object, no larger than a single `POST /v1/events` body may be
/// (checked before it is parsed).
fn parse_batch_item(item: &RawValue, max_bytes: usize) -> Result<EventRequest, Problem> {
    let size = item.get().len();
    if size > max_bytes {
        return Err(Problem::invalid(
            "",
            format!("the event is {size} bytes, over the limit of {max_bytes} bytes"),
        ));
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(item.get()) else {
        return Err(Problem::invalid("", "each event must be a JSON object"));
    };
    parse_request(JsonObject::from_map(map))
}

fn accepted_body(accepted: Accepted) -> (StatusCode, Value) {
    match accepted {
        Accepted::New { id, deliveries } => (
            StatusCode::ACCEPTED,
            json!({"id": id, "deliveries": deliveries}),
        ),
        Accepted::Repeat { id, deliveries } => (
            StatusCode::OK,
            json!({"id": id, "deliveries": deliveries, "repeat": true}),
        ),
    }
}

fn problem_result(problem: Problem) -> Value {
    let document = problem.document();
    json!({"status": document["status"], "problem": document})
}

fn intake_problem(err: IntakeError) -> Problem {
    match err {
        IntakeError::KeyConflict { original } => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            "Idempotency key reused",
            format!(
                "this idempotency_key was used within the idempotency window for a different \
                 request (event {original}); use a new key for a new event"
            ),
        )
        .with_field("idempotency_key"),
        err @ IntakeError::FanOutTooLarge { .. } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "fan-out-too-large",
            "Fan-out too large",
            format!("{err}; send a smaller payload, or fewer events per request"),
        )
        .with_field("payload"),
        // Only the ops-events topic brings operational events; the API refuses their types.
        err @ IntakeError::NoOperator => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-operator-endpoint",
            "No operator endpoint",
            err.to_string(),
        ),
        IntakeError::Store(err) => err.into(),
        IntakeError::Publish(err) => {
            tracing::warn!(error = %err, "publishing delivery tasks failed");
            Problem::unavailable(
                "Kafka did not acknowledge the delivery tasks. The event is kept and will be \
                 published when Kafka is back; retry with the same idempotency_key to learn its id",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;

    use super::*;

    fn parse(body: &str) -> Result<EventRequest, Problem> {
        parse_request(JsonObject::parse(Ok(Bytes::from(body.to_owned())), 1024)?)
    }

    #[test]
    fn values_are_counted_however_they_nest() {
        assert_eq!(json_values(&json!(null)), 1);
        assert_eq!(json_values(&json!([[], [], {"a": [1, 2]}])), 7);
        let bomb = Value::Array(vec![json!([]); 100_000]);
        assert_eq!(json_values(&bomb), 100_001);
    }

    #[test]
    fn a_complete_request_parses() {
        let request = parse(
            r#"{"tenant":"acme","type":"order.created","payload":{"id":1},"idempotency_key":"k-1"}"#,
        )
        .unwrap();
        assert_eq!(request.tenant.as_str(), "acme");
        assert_eq!(request.event_type.as_str(), "order.created");
        assert_eq!(request.payload, json!({"id": 1}));
        assert_eq!(request.idempotency_key.unwrap().as_str(), "k-1");
    }

    #[test]
    fn tenants_cannot_send_operational_events() {
        // Single and batch requests both come through here.
        let problem = parse(r#"{"tenant":"acme","type":"hookstream.batch.finished","payload":{}}"#)
            .unwrap_err()
            .document();
        assert_eq!(problem["status"], 400);
        assert!(problem.to_string().contains("reserved"), "{problem}");
        let problem = parse(
            r#"{"tenant":"acme","type":"order.created","payload":{},"idempotency_key":"hookstream-ops-1"}"#,
        )
        .unwrap_err()
        .document();
        assert!(problem.to_string().contains("idempotency_key"), "{problem}");
    }

    #[test]
    fn the_idempotency_key_is_optional_and_payload_may_be_null() {
        let request = parse(r#"{"tenant":"acme","type":"order.created","payload":null}"#).unwrap();
        assert!(request.idempotency_key.is_none());
        assert_eq!(request.payload, serde_json::Value::Null);
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases = [
            (r#"{"type":"a","payload":{}}"#, "tenant"),
            (r#"{"tenant":"acme","payload":{}}"#, "type"),
            (r#"{"tenant":"acme","type":"a"}"#, "payload"),
            (r#"{"tenant":7,"type":"a","payload":{}}"#, "tenant"),
            (r#"{"tenant":"ac me","type":"a","payload":{}}"#, "tenant"),
            (r#"{"tenant":"acme","type":"a b","payload":{}}"#, "type"),
            (
                r#"{"tenant":"acme","type":"a","payload":{},"idempotency_key":""}"#,
                "idempotency_key",
            ),
            (
                r#"{"tenant":"acme","type":"a","payload":{},"extra":1}"#,
                "extra",
            ),
            (r#"not json"#, "body"),
            (r#"[1,2]"#, "body"),
        ];
        for (body, field) in cases {
            let problem = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{body} was accepted"));
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(problem.field(), Some(field), "{body}");
        }
    }
}
