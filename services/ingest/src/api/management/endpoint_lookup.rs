//! The endpoint an `{id}` path names, as the caller may see it: another tenant's answers as one
//! that does not exist.

use hookstream_model::endpoint::Endpoint;
use hookstream_model::ids::EndpointId;

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::problem::Problem;

/// The id an `{id}` path holds; 404 for one of the wrong shape.
pub(super) fn parse_id(text: &str) -> Result<EndpointId, Problem> {
    // An id of the wrong shape cannot exist: answer as for any unknown endpoint.
    EndpointId::parse(text, "id").map_err(|_| Problem::not_found("endpoint"))
}

/// The live endpoint an `{id}` path names, or 404 (also for another tenant's).
pub(super) async fn live_endpoint(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Endpoint, Problem> {
    state
        .intake
        .store
        .get_endpoint(parse_id(id)?)
        .await?
        .filter(|endpoint| caller.sees(&endpoint.tenant))
        .ok_or_else(|| Problem::not_found("endpoint"))
}
