//! The HTTP API: one module per resource, thin handlers over the domain and the store.

mod api_keys;
mod auth;
mod batches;
mod body;
mod control;
mod dead_letters;
mod deliveries;
mod endpoints;
mod events;
mod paging;
mod problem;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use hookstream_runtime::resolver::DestinationResolver;

use crate::intake::Intake;
use crate::metrics;
pub use auth::{ADMIN_KEY_ID, ApiToken, Caller};
pub use events::parse_event_body;
use problem::Problem;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub intake: Intake,
    pub destinations: DestinationResolver,
    pub max_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    /// How long a rotated-out secret keeps signing, unless the rotation says otherwise.
    pub secret_overlap: std::time::Duration,
    pub tenant_limiter: Arc<crate::rate_limit::TenantLimiter>,
}

/// The `/v1` API, behind bearer-token authentication: the admin token, or a tenant API key
/// that sees only its own tenant.
pub fn router(state: AppState, token: ApiToken) -> Router {
    let access = auth::Access {
        admin: token,
        store: state.intake.store.clone(),
    };
    let max_body = state.max_body_bytes;
    let max_batch_body = state.max_batch_body_bytes;
    Router::new()
        .route(
            "/v1/endpoints",
            post(endpoints::create).get(endpoints::list),
        )
        .route(
            "/v1/endpoints/{id}",
            get(endpoints::get)
                .patch(endpoints::update)
                .delete(endpoints::delete),
        )
        .route("/v1/endpoints/{id}/pause", post(endpoints::pause))
        .route("/v1/endpoints/{id}/resume", post(endpoints::resume))
        .route("/v1/endpoints/{id}/recover", post(batches::recover))
        .route("/v1/endpoints/{id}/secret", get(endpoints::reveal_secret))
        .route(
            "/v1/endpoints/{id}/secret/rotate",
            post(endpoints::rotate_secret),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys",
            post(api_keys::create).get(api_keys::list),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys/{id}",
            axum::routing::delete(api_keys::revoke),
        )
        .route("/v1/control", get(control::get))
        .route("/v1/control/pause", post(control::pause))
        .route("/v1/control/resume", post(control::resume))
        .route("/v1/events", post(events::create))
        .route(
            "/v1/events:batch",
            post(events::create_batch).layer(axum::extract::DefaultBodyLimit::max(max_batch_body)),
        )
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/attempts", get(deliveries::attempts))
        .route("/v1/deliveries/{id}/resend", post(batches::resend))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/{id}", get(dead_letters::get))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/items", get(batches::items))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .fallback(|| async { Problem::not_found("route") })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(access, auth::authenticate))
        .layer(middleware::from_fn(record_latency))
        .with_state(state)
}

/// Records each request's latency by route template (never the raw path: ids would explode the
/// label set) and status.
async fn record_latency(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::HTTP_REQUESTS
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response.into_response()
}
