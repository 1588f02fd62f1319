//! `/v1/tenants/{tenant}/portal-links`: a short-lived signed link into the console's tenant
//! pages, for a platform to give its customer (see [`crate::portal_link`]). Admin token only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use hookstream_model::names::Tenant;

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::body::JsonObject;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;
use crate::console;
use crate::portal_link::{self, PortalLinks};

/// How long a link lasts unless asked otherwise: one visit's worth.
const DEFAULT_SECONDS: i64 = 3600;
/// The bounds of `expires_in`: a link is a visit's key, not a standing one.
const MIN_SECONDS: i64 = 60;
const MAX_SECONDS: i64 = portal_link::MOST_LIFETIME.whole_seconds();

fn parse_expires_in(value: Option<serde_json::Value>) -> Result<Duration, Problem> {
    let seconds = match value {
        None => DEFAULT_SECONDS,
        Some(value) => value
            .as_i64()
            .filter(|s| (MIN_SECONDS..=MAX_SECONDS).contains(s))
            .ok_or_else(|| {
                Problem::invalid(
                    "expires_in",
                    format!(
                        "`expires_in` must be whole seconds from {MIN_SECONDS} to {MAX_SECONDS}"
                    ),
                )
            })?,
    };
    Ok(Duration::seconds(seconds))
}

/// `POST /v1/tenants/{tenant}/portal-links` `{"expires_in": 3600}`?: `201` with the link.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/portal-links",
    tag = "access",
    summary = "Issue a portal link into the console for one tenant (admin token only)",
    description = "The link opens the console's tenant pages (endpoints, deliveries, dead \
                   letters and their replay) for this tenant until it expires or is revoked by \
                   its `id`; it cannot send events. Changing the admin token ends every link.",
    params(
        ("tenant" = String, Path, description = "the tenant", pattern = "^[A-Za-z0-9._-]{1,64}$"),
    ),
    request_body(content = Option<schemas::PortalLinkCreate>, content_type = "application/json"),
    responses(
        (status = 201, description = "the link", body = schemas::PortalLink),
        schemas::Problems,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require_admin()?;
    let tenant = Tenant::parse(&tenant, "tenant")?;
    let mut fields = JsonObject::parse_optional(body, state.max_body_bytes)?;
    let lifetime = parse_expires_in(fields.optional("expires_in"))?;
    fields.finish()?;
    // Whole seconds, as the link's claims carry it.
    let expires_at = OffsetDateTime::now_utc() + lifetime;
    let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
    let (token, link_id) = state
        .portal_links
        .issue(&tenant, expires_at)
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::info!(%tenant, %link_id, expires_at = %rfc3339(expires_at), "portal link issued");
    let body = json!({
        "id": link_id,
        "tenant": tenant,
        // In the fragment, so the link never reaches a server's logs or a Referer header.
        "path": format!("{}/#portal={token}", console::PATH),
        "token": token,
        "expires_at": rfc3339(expires_at),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/tenants/{tenant}/portal-links/{id}`: the link lets nobody in from now on (each
/// ingest replica looks for its revocation on every request).
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/portal-links/{id}",
    tag = "access",
    summary = "Revoke a portal link before it expires (admin token only)",
    description = "Takes the link's `id` (`pl_…`, as issued; also in the `created_by` of what \
                   its holder created). No list of links is kept, so any well-formed id is \
                   accepted: revoking one that was never issued, or again, changes nothing; the \
                   tenant is recorded with the revocation, not checked against the link.",
    params(
        ("tenant" = String, Path, description = "the tenant", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("id" = String, Path, description = "the link's id", pattern = "^pl_[A-Za-z0-9_-]{16}$"),
    ),
    responses(
        (status = 204, description = "revoked"),
        schemas::Problems,
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    caller.require_admin()?;
    let tenant = Tenant::parse(&tenant, "tenant")?;
    if !PortalLinks::is_link_id(&id) {
        return Err(Problem::invalid(
            "id",
            "must be a portal link's id, `pl_` and 16 characters, as it was issued",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let keep_until = now + portal_link::MOST_LIFETIME + portal_link::CLOCK_MARGIN;
    state
        .intake
        .store
        .revoke_portal_link(&tenant, &id, now, keep_until)
        .await?;
    tracing::warn!(%tenant, link_id = %id, "portal link revoked");
    Ok(StatusCode::NO_CONTENT)
}
