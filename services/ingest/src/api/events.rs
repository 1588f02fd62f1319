//! `POST /v1/events`: accept an event for delivery.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use hookstream_model::names::{EventType, IdempotencyKey, Tenant};

use super::AppState;
use super::body::JsonObject;
use super::problem::Problem;
use crate::intake::{Accepted, EventRequest, IntakeError};

/// Reads and validates the body of `POST /v1/events`.
fn parse_request(mut fields: JsonObject) -> Result<EventRequest, Problem> {
    let tenant = Tenant::parse(&fields.required_str("tenant")?, "tenant")?;
    let event_type = EventType::parse(&fields.required_str("type")?, "type")?;
    let payload = fields.required("payload")?;
    let idempotency_key = fields
        .optional_str("idempotency_key")?
        .map(|key| IdempotencyKey::parse(&key, "idempotency_key"))
        .transpose()?;
    fields.finish()?;
    Ok(EventRequest {
        tenant,
        event_type,
        payload,
        idempotency_key,
    })
}

/// `202 {"id", "deliveries"}` once Kafka has the tasks; `200` with the original id for a repeat
/// of an idempotency key within the window.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let request = parse_request(JsonObject::parse(body, state.max_body_bytes)?)?;
    match state.intake.accept(request).await {
        Ok(Accepted::New { id, deliveries }) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "deliveries": deliveries})),
        )
            .into_response()),
        Ok(Accepted::Repeat { id, deliveries }) => Ok((
            StatusCode::OK,
            Json(json!({"id": id, "deliveries": deliveries, "repeat": true})),
        )
            .into_response()),
        Err(IntakeError::KeyConflict { original }) => Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            "Idempotency key reused",
            format!(
                "this idempotency_key was used within the idempotency window for a different \
                 request (event {original}); use a new key for a new event"
            ),
        )
        .with_field("idempotency_key")),
        Err(IntakeError::Store(err)) => Err(err.into()),
        Err(IntakeError::Publish(err)) => {
            tracing::warn!(error = %err, "publishing delivery tasks failed");
            Err(Problem::unavailable(
                "Kafka did not acknowledge the delivery tasks. The event is kept and will be \
                 published when Kafka is back; retry with the same idempotency_key to learn its id",
            ))
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
