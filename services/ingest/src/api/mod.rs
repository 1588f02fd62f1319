//! The HTTP API: thin handlers over the domain and the store, one module per resource, in two
//! planes that can listen apart: [`intake`] (events in: the part that may be public) and
//! [`management`] (everything else). What both use sits here: authentication, bodies,
//! problems, paging, the OpenAPI document and its schemas.

mod auth;
mod body;
mod intake;
mod management;
mod openapi;
mod paging;
mod problem;
mod schemas;
mod times;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;

use hookstream_egress::DestinationResolver;
use hookstream_runtime::http_server::HttpLimits;

use crate::intake::Intake;
use crate::metrics;
pub use auth::{ADMIN_KEY_ID, ApiToken, Caller};
pub use intake::parse_event_body;
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
    /// Requests of one tenant handled at once.
    pub tenant_concurrency: Arc<crate::tenant_concurrency::TenantConcurrency>,
    /// Most live endpoints one tenant may have.
    pub max_endpoints_per_tenant: usize,
    /// The longest retry delay, which bounds an endpoint's `batch.max_wait`.
    pub longest_retry_wait: std::time::Duration,
    /// Tells a batch cancelled here as finished (its runner, if one has it, tells it too).
    pub ops_events: hookstream_kafka::ops_events::OpsEventPublisher,
    /// Signs the portal links the admin issues, and checks them on every request.
    pub portal_links: crate::portal_link::PortalLinks,
    /// Reads the delivery path's queue depths for `GET /v1/queues`.
    pub queues: Arc<crate::queues::QueueWatch>,
}

/// Which part of the API a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// All of it, on one listener (no `HOOKSTREAM_MANAGEMENT_ADDR`).
    All,
    /// Event intake only (`POST /v1/events` and its batch form): the part that may be public.
    Intake,
    /// Every other route: endpoints, secrets, API keys, deliveries, dead letters, batches,
    /// the kill switch.
    Management,
}

/// The `/v1` API (the `plane` of it), behind bearer-token authentication: the admin token, or a
/// tenant API key that sees only its own tenant. `GET /v1/openapi.json` (no token needed)
/// describes what this listener serves; the document is built from the same handlers the
/// router serves, so the two cannot drift apart.
pub fn router(state: AppState, token: ApiToken, http: &HttpLimits, plane: Plane) -> Router {
    let access = auth::Access {
        admin: token,
        store: state.intake.store.clone(),
        portal: state.portal_links.clone(),
    };
    let max_body = state.max_body_bytes;
    let max_batch_body = state.max_batch_body_bytes;
    let (api, document) = documented_routes(max_batch_body, plane).split_for_parts();
    // Innermost first: a place among the requests handled at once, then the body received
    // whole (after authentication: nothing is buffered for anonymous clients).
    let api = http.shed_load(api.fallback(|| async { Problem::not_found("route") }));
    let api = http.receive_body(api, move |path| {
        if path == BATCH_PATH {
            max_batch_body
        } else {
            max_body
        }
    });
    let api = api
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(access, auth::authenticate));
    let document = Arc::new(openapi::finish(document));
    Router::new()
        .route(
            "/v1/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .merge(api)
        .layer(middleware::from_fn(record_latency))
        .with_state(state)
}

/// What `/console` answers when this process serves no console.
pub fn console_not_installed() -> Response {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "console-not-installed",
        "Console not installed",
        "this API serves no console: set HOOKSTREAM_CONSOLE_DIR to its built files \
         (console/dist, built by `make console`)",
    )
    .into_response()
}

/// The one route that takes a body larger than `HOOKSTREAM_MAX_BODY_BYTES`.
const BATCH_PATH: &str = "/v1/events:batch";

/// The `/v1` routes of `plane`, each with its OpenAPI operation.
fn documented_routes(max_batch_body: usize, plane: Plane) -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::with_openapi(openapi::base());
    if plane != Plane::Management {
        routes = routes.merge(intake::routes(max_batch_body));
    }
    if plane != Plane::Intake {
        routes = routes.merge(management::routes());
    }
    routes
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
