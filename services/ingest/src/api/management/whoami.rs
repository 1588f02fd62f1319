//! `/v1/whoami`: who the presented token is. The console asks it at sign-in, to tell the admin
//! token from a tenant key or a portal link (and which tenant) without trying routes that
//! might refuse.

use axum::Json;
use axum::extract::Extension;
use serde_json::{Value, json};

use crate::api::auth::Caller;
use crate::api::schemas;
use crate::api::times::rfc3339;

#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "access",
    summary = "The caller this token authenticates as",
    responses(
        (status = 200, description = "the admin token, or a tenant key and its tenant", body = schemas::WhoAmI),
        schemas::Problems,
    ),
)]
pub async fn get(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(match &caller {
        Caller::Admin => {
            json!({"role": "admin", "tenant": null, "key_id": caller.key_id(), "expires_at": null})
        }
        Caller::Tenant { key_id, tenant } => {
            json!({"role": "tenant", "tenant": tenant, "key_id": key_id, "expires_at": null})
        }
        Caller::Portal {
            tenant, expires_at, ..
        } => json!({
            "role": "portal",
            "tenant": tenant,
            "key_id": caller.key_id(),
            "expires_at": rfc3339(*expires_at),
        }),
    })
}
