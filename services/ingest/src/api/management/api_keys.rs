//! `/v1/tenants/{tenant}/api-keys`: tenant-scoped API keys, managed with the admin token. A key
//! is shown once, when it is created; the store keeps only its hash.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use serde_json::{Value, json};
use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;
use hookstream_model::ids::ApiKeyId;
use hookstream_model::names::Tenant;

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::body::JsonObject;
use crate::api::problem::Problem;
use crate::api::schemas;
use crate::api::times::rfc3339;
use crate::api_key_token;

/// The longest description a key may carry.
const MAX_NAME_CHARS: usize = 100;

fn render(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "created_at": rfc3339(key.created_at),
        "revoked_at": key.revoked_at.map(rfc3339),
    })
}

fn parse_tenant(text: &str) -> Result<Tenant, Problem> {
    Tenant::parse(text, "tenant").map_err(Problem::from)
}

fn parse_name(name: Option<String>) -> Result<String, Problem> {
    let name = name.unwrap_or_default();
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "name",
            format!(
                "`name` must be at most {MAX_NAME_CHARS} characters, without control characters"
            ),
        ));
    }
    Ok(name)
}

/// `POST /v1/tenants/{tenant}/api-keys` `{"name": "ci"}`?: `201` with the key, shown this once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/api-keys",
    tag = "api keys",
    summary = "Create a tenant API key (admin token only); the key is in this answer only",
    params(
        ("tenant" = String, Path, description = "the tenant", pattern = "^[A-Za-z0-9._-]{1,64}$"),
    ),
    request_body(content = Option<schemas::ApiKeyCreate>, content_type = "application/json"),
    responses(
        (status = 201, description = "the key", body = schemas::ApiKey),
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
    let tenant = parse_tenant(&tenant)?;
    let mut fields = JsonObject::parse_optional(body, state.max_body_bytes)?;
    let name = parse_name(fields.optional_str("name")?)?;
    fields.finish()?;
    let issued = api_key_token::issue().map_err(|e| Problem::unavailable(e.to_string()))?;
    let key = ApiKey {
        id: issued.id,
        tenant,
        name,
        key_hash: issued.hash,
        created_at: OffsetDateTime::now_utc(),
        revoked_at: None,
    };
    state.intake.store.create_api_key(&key).await?;
    tracing::info!(key_id = %key.id, tenant = %key.tenant, "tenant API key created");
    let mut body = render(&key);
    body["key"] = json!(issued.token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tenants/{tenant}/api-keys`: the tenant's keys, revoked ones too, never the keys.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/api-keys",
    tag = "api keys",
    summary = "A tenant's API keys (admin token only)",
    params(
        ("tenant" = String, Path, description = "the tenant", pattern = "^[A-Za-z0-9._-]{1,64}$"),
    ),
    responses(
        (status = 200, description = "the keys, never their text", body = schemas::ApiKeyList),
        schemas::Problems,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    let keys = state
        .intake
        .store
        .list_api_keys(&parse_tenant(&tenant)?)
        .await?;
    Ok(Json(
        json!({"data": keys.iter().map(render).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /v1/tenants/{tenant}/api-keys/{id}`: the key authenticates nothing from now on. It
/// stays listed, with when it was revoked.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/api-keys/{id}",
    tag = "api keys",
    summary = "Revoke a tenant API key (admin token only)",
    params(
        ("tenant" = String, Path, description = "the tenant", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("id" = String, Path, description = "the API key id", pattern = "^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    ),
    responses(
        (status = 200, description = "the key, revoked", body = schemas::ApiKey),
        schemas::Problems,
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.require_admin()?;
    let tenant = parse_tenant(&tenant)?;
    let id = ApiKeyId::parse(&id, "id").map_err(|_| Problem::not_found("API key"))?;
    let key = state
        .intake
        .store
        .revoke_api_key(&tenant, id, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(|| Problem::not_found("API key"))?;
    tracing::warn!(key_id = %key.id, tenant = %key.tenant, "tenant API key revoked");
    Ok(Json(render(&key)))
}
