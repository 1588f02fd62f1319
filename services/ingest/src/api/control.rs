//! `/v1/control`: the kill switch. Pausing stops all sending within about 2 s in every
//! dispatcher (they watch the store); tasks are held, not failed, and spend no attempts.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::problem::Problem;

fn render(paused: bool) -> Json<Value> {
    Json(json!({"sending_paused": paused}))
}

pub async fn get(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    Ok(render(state.intake.store.sending_paused().await?))
}

pub async fn pause(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    state.intake.store.set_sending_paused(true).await?;
    tracing::warn!("kill switch: all sending paused");
    Ok(render(true))
}

pub async fn resume(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    state.intake.store.set_sending_paused(false).await?;
    tracing::info!("kill switch: sending resumed");
    Ok(render(false))
}
