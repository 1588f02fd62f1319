//! The OpenAPI document's frame: what the API is, how it authenticates, the shared schemas.
//! Its paths come from the handlers' `#[utoipa::path]` annotations, gathered by the router.

use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

use super::schemas;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookstream API",
        description = "Accept events, manage the endpoints they go to, follow every delivery \
                       and attempt, and replay dead letters. Every route needs \
                       `Authorization: Bearer <token>`: the admin token, or a tenant API key \
                       that sees only its own tenant (another tenant's ids answer 404)."
    ),
    components(schemas(schemas::ProblemDoc))
)]
struct ApiDoc;

/// The document before the routes add their paths.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Declares bearer authentication, required by every operation.
pub(super) fn finish(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = document
        .components
        .get_or_insert_with(utoipa::openapi::Components::new);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    document.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}
