//! Who is calling: the admin token from config, or a tenant API key. Every request is
//! authenticated here and handlers receive the [`Caller`], which scopes what they may see.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use hookstream_model::ids::ApiKeyId;
use hookstream_model::names::Tenant;
use hookstream_store::Store;

use super::problem::Problem;
use crate::api_key_token;
use crate::portal_link::PortalLinks;

/// The admin token, from config.
#[derive(Clone)]
pub struct ApiToken(pub Arc<str>);

/// What authentication needs: the admin token, the store of tenant keys, and the key portal
/// links are signed with.
#[derive(Clone)]
pub struct Access {
    pub admin: ApiToken,
    pub store: Arc<dyn Store>,
    pub portal: PortalLinks,
}

/// What starts the `created_by` of what a portal link's holder creates (`portal:pl_…`).
pub const PORTAL_KEY_ID: &str = "portal";

/// The `created_by` of what the admin token creates.
pub const ADMIN_KEY_ID: &str = "admin";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    /// A tenant key: sees only its tenant; another tenant's ids answer 404.
    Tenant {
        key_id: ApiKeyId,
        tenant: Tenant,
    },
    /// A portal link: what a tenant key may do in the management API, until the link expires;
    /// it sends no events (a platform's customer receives webhooks, it does not publish them).
    Portal {
        tenant: Tenant,
        expires_at: time::OffsetDateTime,
        /// Which link (`pl_…`), so what it does can be told apart from other links'.
        link_id: String,
    },
}

impl Caller {
    /// The id recorded as the creator of what this caller creates.
    pub fn key_id(&self) -> String {
        match self {
            Self::Admin => ADMIN_KEY_ID.to_owned(),
            Self::Tenant { key_id, .. } => key_id.to_string(),
            Self::Portal { link_id, .. } => format!("{PORTAL_KEY_ID}:{link_id}"),
        }
    }

    /// The tenant a tenant key is for; `None` for the admin.
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Self::Admin => None,
            Self::Tenant { tenant, .. } | Self::Portal { tenant, .. } => Some(tenant),
        }
    }

    /// Refuses tenant keys: for routes that act across tenants or reveal secrets.
    pub fn require_admin(&self) -> Result<(), Problem> {
        match self {
            Self::Admin => Ok(()),
            Self::Tenant { .. } | Self::Portal { .. } => Err(Problem::forbidden(
                "this route needs the admin token; a tenant API key or portal link cannot use it",
            )),
        }
    }

    /// Refuses portal links: for sending events, which only the admin and tenant keys do.
    pub fn require_key(&self) -> Result<(), Problem> {
        match self {
            Self::Portal { .. } => Err(Problem::forbidden(
                "a portal link cannot send events; use the admin token or a tenant API key",
            )),
            Self::Admin | Self::Tenant { .. } => Ok(()),
        }
    }

    /// Whether something of `tenant` exists for this caller. Handlers answer 404 when not, so
    /// a tenant cannot even learn that another tenant's id exists.
    pub fn sees(&self, tenant: &Tenant) -> bool {
        self.tenant().is_none_or(|own| own == tenant)
    }

    /// Refuses a tenant named in a request (an event's, an endpoint's) that is not the key's.
    pub fn may_act_for(&self, tenant: &Tenant, field: &str) -> Result<(), Problem> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this API key is for another tenant than `{tenant}`"
            ))
            .with_field(field))
        }
    }

    /// The tenant a listing is narrowed to: as asked for the admin (`None`: every tenant);
    /// always the key's own for a tenant key, which may name only its own.
    pub fn scope(&self, asked: Option<Tenant>, field: &str) -> Result<Option<Tenant>, Problem> {
        match (self.tenant(), asked) {
            (None, asked) => Ok(asked),
            (Some(own), None) => Ok(Some(own.clone())),
            (Some(_), Some(asked)) => {
                self.may_act_for(&asked, field)?;
                Ok(Some(asked))
            }
        }
    }

    /// [`Caller::scope`] of a list's `?tenant=` query.
    pub fn scope_query(&self, query: &HashMap<String, String>) -> Result<Option<Tenant>, Problem> {
        let asked = query
            .get("tenant")
            .map(|t| Tenant::parse(t, "tenant"))
            .transpose()?;
        self.scope(asked, "tenant")
    }
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Who `presented` is: the admin token (compared in constant time, so it cannot be guessed
/// byte by byte from timings), or a live tenant key whose hash matches.
async fn identify(access: &Access, presented: &str) -> Result<Option<Caller>, Problem> {
    if bool::from(presented.as_bytes().ct_eq(access.admin.0.as_bytes())) {
        return Ok(Some(Caller::Admin));
    }
    if PortalLinks::looks_like_link(presented) {
        // An expired or altered link says which, so its holder knows to ask for a new one.
        let claims = access
            .portal
            .check(presented, time::OffsetDateTime::now_utc())
            .map_err(|err| Problem::unauthorized_because(err.to_string()))?;
        if let Some(revoked_at) = access.store.portal_link_revoked(&claims.link_id).await? {
            return Err(Problem::unauthorized_because(format!(
                "this portal link was revoked at {}: ask for a new one",
                crate::api::times::rfc3339(revoked_at)
            )));
        }
        return Ok(Some(Caller::Portal {
            tenant: claims.tenant,
            expires_at: claims.expires_at,
            link_id: claims.link_id,
        }));
    }
    let Some(id) = api_key_token::key_id_of(presented) else {
        return Ok(None);
    };
    Ok(access
        .store
        .get_api_key(id)
        .await?
        .filter(|key| !key.is_revoked() && api_key_token::matches(key, presented))
        .map(|key| Caller::Tenant {
            key_id: key.id,
            tenant: key.tenant,
        }))
}

/// The intake routes (`/v1/events`, `/v1/events:batch`).
const EVENTS_PATH: &str = "/v1/events";

/// Refuses requests without `Authorization: Bearer <token>` naming the admin token or a live
/// tenant key; hands the [`Caller`] to the handler.
pub async fn authenticate(
    State(access): State<Access>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(presented) = bearer(&request) else {
        return Problem::unauthorized().into_response();
    };
    match identify(&access, presented).await {
        Ok(Some(caller)) => {
            // Refused before a body is read: event intake is no portal link's (the handlers
            // refuse it too).
            if request.uri().path().starts_with(EVENTS_PATH)
                && let Err(problem) = caller.require_key()
            {
                return problem.into_response();
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Ok(None) => Problem::unauthorized().into_response(),
        Err(problem) => problem.into_response(),
    }
}
