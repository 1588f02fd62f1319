//! `/v1/control`: the kill switch. Pausing stops all sending within about 2 s in every
//! dispatcher (they watch the store); tasks are held, not failed, and spend no attempts.
//! It acts on every tenant, so only the admin token may use it.

use axum::Json;
use axum::extract::{Extension, State};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::problem::Problem;
use crate::api::schemas;

fn render(paused: bool) -> Json<Value> {
    Json(json!({"sending_paused": paused}))
}

#[utoipa::path(
    get,
    path = "/v1/control",
    tag = "control",
    summary = "The kill switch (admin token only)",
    responses(
        (status = 200, description = "whether sending is paused", body = schemas::Control),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    Ok(render(state.intake.store.sending_paused().await?))
}

#[utoipa::path(
    post,
    path = "/v1/control/pause",
    tag = "control",
    summary = "Stop all sending (admin token only)",
    responses(
        (status = 200, description = "paused", body = schemas::Control),
        schemas::Problems,
    ),
)]
pub async fn pause(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    state.intake.store.set_sending_paused(true).await?;
    tracing::warn!("kill switch: all sending paused");
    Ok(render(true))
}

#[utoipa::path(
    post,
    path = "/v1/control/resume",
    tag = "control",
    summary = "Start sending again (admin token only)",
    responses(
        (status = 200, description = "resumed", body = schemas::Control),
        schemas::Problems,
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    state.intake.store.set_sending_paused(false).await?;
    tracing::info!("kill switch: sending resumed");
    Ok(render(false))
}
