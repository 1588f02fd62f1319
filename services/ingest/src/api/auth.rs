//! Bearer-token authentication of API requests.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::problem::Problem;

/// The token API requests must present.
#[derive(Clone)]
pub struct ApiToken(pub Arc<str>);

/// Refuses requests without `Authorization: Bearer <token>` matching the configured token.
/// Compares in constant time so the token cannot be guessed byte by byte from timings.
pub async fn require_token(
    State(token): State<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(token.0.as_bytes())) => {
            next.run(request).await
        }
        _ => Problem::unauthorized().into_response(),
    }
}
