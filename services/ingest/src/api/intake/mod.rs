//! The data plane: event intake, `POST /v1/events` and its batch form. The only part of the API
//! that may face the public internet (`HOOKSTREAM_MANAGEMENT_ADDR` serves the rest apart).

mod batch_body;
mod events;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
pub use events::parse_event_body;

/// The intake routes; the batch route takes bodies up to `max_batch_body` bytes.
pub(super) fn routes(max_batch_body: usize) -> OpenApiRouter<AppState> {
    let (schemas, paths, batch) = routes!(events::create_batch);
    let batch = batch.layer(axum::extract::DefaultBodyLimit::max(max_batch_body));
    OpenApiRouter::new()
        .routes(routes!(events::create))
        .routes((schemas, paths, batch))
}
