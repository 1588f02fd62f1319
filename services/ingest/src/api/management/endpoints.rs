//! `/v1/endpoints`: where a tenant's webhooks go.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use hookstream_model::endpoint::{Endpoint, EndpointChanges, Subscription};
use hookstream_model::health::EndpointHealth;
use hookstream_model::health_rules::HealthRules;
use hookstream_model::ids::EndpointId;
use hookstream_model::names::Tenant;
use hookstream_model::shaping::{Batching, DEFAULT_MAX_IN_FLIGHT, Shaping};
use hookstream_signing::{SigningScheme, SigningSecret};
use hookstream_store::PageRequest;

use super::endpoint_fields::{
    check_batch_with_ordering, parse_batch, parse_health_rules, parse_max_attempts,
    parse_max_in_flight, parse_on_dead_letter, parse_ordering, parse_rate_limit, parse_signing,
    parse_url,
};
use super::endpoint_health;
use super::endpoint_lookup::{live_endpoint, parse_id};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::body::JsonObject;
use crate::api::paging::{page_json, page_request};
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;

/// The endpoint as the API shows it. An HMAC secret is shown once, when the endpoint is created
/// or its secret rotated; an ed25519 endpoint's public key is shown always, its secret key never.
fn render(endpoint: &Endpoint) -> Value {
    json!({
        "id": endpoint.id,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "event_types": endpoint.subscription,
        "disabled": endpoint.disabled,
        "max_attempts": endpoint.max_attempts,
        "rate_limit": endpoint.shaping.rate_limit,
        "ordering": endpoint.shaping.ordering.as_str(),
        "max_in_flight": endpoint.shaping.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        "on_dead_letter": endpoint.shaping.on_dead_letter.as_str(),
        "batch": endpoint.shaping.batch.as_ref().map(Batching::to_api_json),
        "health_rules": endpoint.shaping.health_rules.as_ref().map(HealthRules::to_api_json),
        "paused": endpoint.paused,
        "circuit": {
            "state": endpoint.circuit.state.as_str(),
            "open_until": endpoint.circuit.open_until.map(rfc3339),
        },
        "signing": endpoint.secret.scheme().as_str(),
        "public_key": endpoint.secret.public_key().map(|key| key.expose().to_owned()),
        "previous_secret_expires_at": endpoint
            .previous_secret
            .as_ref()
            .map(|p| rfc3339(p.expires_at)),
        "previous_public_key": endpoint
            .previous_secret
            .as_ref()
            .and_then(|p| p.secret.public_key())
            .map(|key| key.expose().to_owned()),
        "created_at": rfc3339(endpoint.created_at),
        "updated_at": rfc3339(endpoint.updated_at),
    })
}

/// A new secret of `scheme`.
fn new_secret(scheme: SigningScheme) -> Result<SigningSecret, Problem> {
    SigningSecret::generate_for(scheme)
        .map_err(|e| Problem::unavailable(format!("cannot generate a signing secret: {e}")))
}

/// A secret the receiver holds too (HMAC), as text; an ed25519 secret key never leaves the
/// store: whoever holds it could forge webhooks, and the receiver needs only the public key.
fn shared_secret(secret: &SigningSecret) -> Option<&str> {
    (secret.scheme() == SigningScheme::HmacSha256).then(|| secret.expose())
}

/// An HMAC secret goes out in the answer that made it (and to the admin who asks for it).
fn show_new_secret(body: &mut Value, endpoint: &Endpoint) {
    if let Some(secret) = shared_secret(&endpoint.secret) {
        body["secret"] = json!(secret);
    }
}

#[utoipa::path(
    post,
    path = "/v1/endpoints",
    tag = "endpoints",
    summary = "Create an endpoint; its HMAC secret is in this answer only",
    request_body(content = schemas::EndpointCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "created, with its HMAC secret (an ed25519 one has its public key instead)", body = schemas::Endpoint),
        schemas::Problems,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let mut fields = JsonObject::parse(body, state.max_body_bytes)?;
    let tenant = Tenant::parse(&fields.required_str("tenant")?, "tenant")?;
    caller.may_act_for(&tenant, "tenant")?;
    let url = parse_url(&state, &fields.required_str("url")?).await?;
    let subscription = Subscription::parse_requested(
        &fields.optional_str_list("event_types")?.unwrap_or_default(),
        "event_types",
    )?;
    let max_attempts = parse_max_attempts(fields.optional("max_attempts"))?;
    let rate_limit = parse_rate_limit(fields.optional("rate_limit"))?;
    let ordering = fields
        .optional("ordering")
        .map(parse_ordering)
        .transpose()?
        .unwrap_or_default();
    let max_in_flight = parse_max_in_flight(fields.optional("max_in_flight"))?;
    let on_dead_letter = fields
        .optional("on_dead_letter")
        .map(parse_on_dead_letter)
        .transpose()?
        .unwrap_or_default();
    let batch = parse_batch(&state, fields.optional("batch"))?;
    let health_rules = parse_health_rules(fields.optional("health_rules"))?;
    let signing = parse_signing(&mut fields, SigningScheme::default())?;
    fields.finish()?;
    let shaping = Shaping {
        rate_limit,
        ordering,
        max_in_flight,
        on_dead_letter,
        batch,
        health_rules,
    };
    check_batch_with_ordering(&shaping)?;
    // Each endpoint takes a copy of every event its tenant sends: bounded per tenant. (Two
    // creations at once can pass together; the limit is one of scale, not exact.)
    let existing = live_endpoints_of(&state, &tenant, state.max_endpoints_per_tenant).await?;
    if existing >= state.max_endpoints_per_tenant {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "endpoint-limit",
            "Too many endpoints",
            format!(
                "tenant `{tenant}` has {existing} endpoints, the most one tenant may have; delete one first"
            ),
        )
        .with_field("tenant"));
    }

    let secret = new_secret(signing)?;
    let now = OffsetDateTime::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::generate(),
        tenant,
        url,
        subscription,
        secret,
        previous_secret: None,
        disabled: false,
        max_attempts,
        paused: false,
        circuit: Default::default(),
        shaping,
        created_at: now,
        updated_at: now,
    };
    state.intake.store.create_endpoint(&endpoint).await?;
    tracing::info!(endpoint_id = %endpoint.id, tenant = %endpoint.tenant, signing = endpoint.secret.scheme().as_str(), "endpoint created");
    let mut body = render(&endpoint);
    show_new_secret(&mut body, &endpoint);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// How many live endpoints `tenant` has, counted up to `enough`.
async fn live_endpoints_of(
    state: &AppState,
    tenant: &Tenant,
    enough: usize,
) -> Result<usize, Problem> {
    let mut page = PageRequest {
        limit: PageRequest::MAX_LIMIT,
        after: None,
    };
    let mut count = 0;
    loop {
        let listed = state.intake.store.list_endpoints(tenant, &page).await?;
        count += listed.items.len();
        match listed.next {
            Some(next) if count < enough => page.after = Some(next),
            _ => return Ok(count),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}",
    tag = "endpoints",
    summary = "One endpoint",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the endpoint", body = schemas::Endpoint),
        schemas::Problems,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let endpoint = live_endpoint(&state, &caller, &id).await?;
    Ok(Json(render(&endpoint)))
}

#[utoipa::path(
    get,
    path = "/v1/endpoints",
    tag = "endpoints",
    summary = "A tenant's endpoints",
    params(
        ("tenant" = Option<String>, Query, description = "required with the admin token", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        schemas::PageParams,
    ),
    responses(
        (status = 200, description = "a page of endpoints", body = schemas::EndpointPage),
        schemas::Problems,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let tenant = caller
        .scope_query(&query)?
        .ok_or_else(|| Problem::invalid("tenant", "`tenant` is required"))?;
    let page = state
        .intake
        .store
        .list_endpoints(&tenant, &page_request(&query)?)
        .await?;
    // The endpoints matter more than their figures: a failing read shows empty health.
    let healths = endpoint_health::of(&state, &page.items)
        .await
        .unwrap_or_else(|problem| {
            tracing::warn!(?problem, "endpoint health not read for a list; shown empty");
            HashMap::new()
        });
    let now = OffsetDateTime::now_utc();
    let never_sent = EndpointHealth::default();
    Ok(Json(page_json(page, |endpoint| {
        let mut shown = render(endpoint);
        let health = healths.get(&endpoint.id).unwrap_or(&never_sent);
        shown["health"] = endpoint_health::render(endpoint, health, now);
        shown
    })))
}

#[utoipa::path(
    patch,
    path = "/v1/endpoints/{id}",
    tag = "endpoints",
    summary = "Change an endpoint",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    request_body(content = schemas::EndpointPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "the endpoint as changed", body = schemas::Endpoint),
        schemas::Problems,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = parse_id(&id)?;
    let mut fields = JsonObject::parse(body, state.max_body_bytes)?;
    let url = match fields.optional_str("url")? {
        Some(text) => Some(parse_url(&state, &text).await?),
        None => None,
    };
    let subscription = fields
        .optional_str_list("event_types")?
        .map(|types| Subscription::parse_requested(&types, "event_types"))
        .transpose()?;
    let disabled = fields.optional_bool("disabled")?;
    // Absent: unchanged; null: back to the retry policy's limit.
    let max_attempts = fields
        .optional("max_attempts")
        .map(|v| parse_max_attempts(Some(v)))
        .transpose()?;
    // Absent: unchanged; null: no limit.
    let rate_limit = fields
        .optional("rate_limit")
        .map(|v| parse_rate_limit(Some(v)))
        .transpose()?;
    let ordering = fields
        .optional("ordering")
        .map(parse_ordering)
        .transpose()?;
    // Absent: unchanged; null: the default.
    let max_in_flight = fields
        .optional("max_in_flight")
        .map(|v| parse_max_in_flight(Some(v)))
        .transpose()?;
    let on_dead_letter = fields
        .optional("on_dead_letter")
        .map(parse_on_dead_letter)
        .transpose()?;
    // Absent: unchanged; null: no batching.
    let batch = fields
        .optional("batch")
        .map(|v| parse_batch(&state, Some(v)))
        .transpose()?;
    // Absent: unchanged; null: the installation's rules.
    let health_rules = fields
        .optional("health_rules")
        .map(|v| parse_health_rules(Some(v)))
        .transpose()?;
    fields.finish()?;

    // Only the fields given change: a pause, or a `410` disabling the endpoint, made while
    // this request runs is kept.
    let changes = EndpointChanges {
        url,
        subscription,
        disabled,
        paused: None,
        max_attempts,
        rate_limit,
        ordering,
        max_in_flight,
        on_dead_letter,
        batch,
        health_rules,
    };
    let endpoint = change(&state, &caller, id, &changes).await?;
    Ok(Json(render(&endpoint)))
}

/// Applies `changes` to the caller's live endpoint `id`; 404 for one it cannot see.
async fn change(
    state: &AppState,
    caller: &Caller,
    id: EndpointId,
    changes: &EndpointChanges,
) -> Result<Endpoint, Problem> {
    // The tenant check first: another tenant's endpoint is not touched.
    let current = live_endpoint(state, caller, &id.to_string()).await?;
    // Against the settings as they stand: a change made side by side can still combine the
    // two, and then the dispatcher sends each delivery alone (strict wins).
    if changes.changes_shaping() {
        check_batch_with_ordering(&changes.apply_to_shaping(current.shaping))?;
    }
    state
        .intake
        .store
        .change_endpoint(id, changes, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(|| Problem::not_found("endpoint"))
}

#[utoipa::path(
    delete,
    path = "/v1/endpoints/{id}",
    tag = "endpoints",
    summary = "Delete an endpoint; its undelivered webhooks are dead-lettered",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 204, description = "deleted"),
        schemas::Problems,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let endpoint = live_endpoint(&state, &caller, &id).await?;
    if state.intake.store.delete_endpoint(endpoint.id).await? {
        tracing::info!(endpoint_id = %id, "endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("endpoint"))
    }
}

/// `POST /v1/endpoints/{id}/secret/rotate` `{"overlap": "24h", "signing": "ed25519"}`?: a new
/// secret signs from now on; the old one also signs until the overlap ends (`0s`: at once no
/// more). A new HMAC secret is shown in this answer only; `signing` switches the scheme.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/secret/rotate",
    tag = "endpoints",
    summary = "Rotate the signing secret; the old one also signs until the overlap ends",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    request_body(content = Option<schemas::SecretRotation>, content_type = "application/json"),
    responses(
        (status = 200, description = "the endpoint with its new secret", body = schemas::Endpoint),
        schemas::Problems,
    ),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let current = live_endpoint(&state, &caller, &id).await?;
    let mut fields = JsonObject::parse_optional(body, state.max_body_bytes)?;
    let overlap = fields
        .optional_str("overlap")?
        .map(|text| {
            hookstream_kafka::parse_duration(&text).map_err(|_| {
                Problem::invalid("overlap", "`overlap` must be a duration such as 24h or 30m")
            })
        })
        .transpose()?
        .unwrap_or(state.secret_overlap);
    // The scheme stays as it was unless asked; a rotation is how an endpoint changes it.
    let signing = parse_signing(&mut fields, current.secret.scheme())?;
    fields.finish()?;
    let secret = new_secret(signing)?;
    let expires_at = OffsetDateTime::now_utc() + overlap;
    let endpoint = state
        .intake
        .store
        .rotate_secret(current.id, &secret, expires_at)
        .await?
        .ok_or_else(|| Problem::not_found("endpoint"))?;
    tracing::info!(endpoint_id = %endpoint.id, signing = signing.as_str(), previous_expires_at = %rfc3339(expires_at), "endpoint secret rotated");
    let mut body = render(&endpoint);
    show_new_secret(&mut body, &endpoint);
    Ok(Json(body))
}

/// `GET /v1/endpoints/{id}/secret`: the HMAC signing secret, for an operator who lost it (the
/// admin token only), or an ed25519 endpoint's public key. Logged, without the secret.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}/secret",
    tag = "endpoints",
    summary = "The HMAC signing secret, or the ed25519 public key (admin token only)",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the secret", body = schemas::Secret),
        schemas::Problems,
    ),
)]
pub async fn reveal_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    let endpoint = live_endpoint(&state, &caller, &id).await?;
    tracing::warn!(endpoint_id = %endpoint.id, "endpoint secret revealed through the API");
    let previous = endpoint.previous_secret.as_ref();
    Ok(Json(json!({
        "secret": shared_secret(&endpoint.secret),
        "previous_secret": previous.and_then(|p| shared_secret(&p.secret)),
        "previous_secret_expires_at": previous.map(|p| rfc3339(p.expires_at)),
        "public_key": endpoint.secret.public_key().map(|key| key.expose().to_owned()),
        "previous_public_key": previous
            .and_then(|p| p.secret.public_key())
            .map(|key| key.expose().to_owned()),
    })))
}

/// `POST /v1/endpoints/{id}/pause`: hold this endpoint's tasks (no attempts spent) until resumed.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/pause",
    tag = "endpoints",
    summary = "Hold this endpoint's webhooks",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the endpoint", body = schemas::Endpoint),
        schemas::Problems,
    ),
)]
pub async fn pause(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_paused(&state, &caller, &id, true).await
}

/// `POST /v1/endpoints/{id}/resume`: send this endpoint's held tasks again.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/resume",
    tag = "endpoints",
    summary = "Send this endpoint's held webhooks",
    params(
        ("id" = String, Path, description = "the endpoint id", pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the endpoint", body = schemas::Endpoint),
        schemas::Problems,
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_paused(&state, &caller, &id, false).await
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    id: &str,
    paused: bool,
) -> Result<Json<Value>, Problem> {
    let changes = EndpointChanges {
        paused: Some(paused),
        ..EndpointChanges::default()
    };
    let endpoint = change(state, caller, parse_id(id)?, &changes).await?;
    tracing::info!(endpoint_id = %endpoint.id, paused, "endpoint pause changed");
    Ok(Json(render(&endpoint)))
}
