//! The management plane: endpoints and their secrets, API keys, deliveries, dead letters and
//! replay batches, the kill switch. It stays inside the ingest process (it shares the store
//! handle, the destination resolver and the task publisher with intake, and a process of its
//! own would add a deployment without removing a dependency), but listens apart when
//! `HOOKSTREAM_MANAGEMENT_ADDR` is set, so a deployment keeps it internal.

mod api_keys;
mod batches;
mod control;
mod dead_letters;
mod deliveries;
mod endpoint_fields;
mod endpoint_health;
mod endpoint_lookup;
mod endpoints;
mod overview;
mod portal_links;
mod queues;
mod whoami;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The management routes.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(endpoints::create, endpoints::list))
        .routes(routes!(
            endpoints::get,
            endpoints::update,
            endpoints::delete
        ))
        .routes(routes!(endpoint_health::get))
        .routes(routes!(endpoints::pause))
        .routes(routes!(endpoints::resume))
        .routes(routes!(batches::recover))
        .routes(routes!(endpoints::reveal_secret))
        .routes(routes!(endpoints::rotate_secret))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(whoami::get))
        .routes(routes!(portal_links::create))
        .routes(routes!(portal_links::revoke))
        .routes(routes!(queues::get))
        .routes(routes!(overview::get))
        .routes(routes!(control::get))
        .routes(routes!(control::pause))
        .routes(routes!(control::resume))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::get))
        .routes(routes!(deliveries::attempts))
        .routes(routes!(batches::resend))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::get))
        .routes(routes!(batches::create, batches::list))
        .routes(routes!(batches::get))
        .routes(routes!(batches::items))
        .routes(routes!(batches::cancel))
}
