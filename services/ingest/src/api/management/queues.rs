//! `/v1/queues`: how deep the delivery path's queues are now (the console's overview). It shows
//! every tenant's traffic together, so only the admin token may read it.

use axum::Json;
use axum::extract::{Extension, State};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;

#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "control",
    summary = "Queue depth per topic of the delivery path (admin token only)",
    description = "For the deliveries topic, each retry tier's topic and the dead-letter topic: \
                   the records it holds and how far its consumer group (the dispatchers, the \
                   retry tier, the replay service) is behind, read from the broker now. A topic \
                   that cannot be read has `error` instead.",
    responses(
        (status = 200, description = "each topic's depth", body = schemas::Queues),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    let depths = state
        .queues
        .read()
        .await
        .map_err(|e| Problem::unavailable(format!("cannot read the queues: {e}")))?;
    let data: Vec<Value> = depths
        .iter()
        .map(|queue| {
            let (depth, error) = match &queue.read {
                Ok(depth) => (Some(*depth), None),
                Err(error) => (None, Some(error.as_str())),
            };
            json!({
                "topic": queue.topic,
                "kind": queue.kind.as_str(),
                "group": queue.group,
                "records": depth.map(|d| d.records),
                "lag": depth.map(|d| d.lag),
                "partitions": depth.map(|d| d.partitions),
                "error": error,
            })
        })
        .collect();
    Ok(Json(
        json!({"data": data, "read_at": rfc3339(OffsetDateTime::now_utc())}),
    ))
}
