//! An endpoint's fields as a request gives them: each parsed and checked, or a problem that
//! names the field.

use serde_json::Value;

use hookstream_egress::ResolveError;
use hookstream_model::destination::EndpointUrl;
use hookstream_model::health_rules::HealthRules;
use hookstream_model::shaping::{
    Batching, OnDeadLetter, Ordering, RateLimit, Shaping, max_in_flight_from_json,
};
use hookstream_signing::SigningScheme;

use crate::api::AppState;
use crate::api::body::JsonObject;
use crate::api::problem::Problem;

/// A URL endpoints may use: by the policy, and with its host name resolved. A name that does not
/// resolve (yet) is accepted: every attempt resolves and checks it again.
pub(super) async fn parse_url(state: &AppState, text: &str) -> Result<EndpointUrl, Problem> {
    let url = EndpointUrl::parse(text, "url")?;
    match state.destinations.check(&url).await {
        Ok(()) | Err(ResolveError::Lookup { .. }) => Ok(url),
        Err(ResolveError::Blocked(blocked)) => Err(Problem::invalid("url", blocked.0)),
        Err(err @ ResolveError::Setup(_)) => Err(Problem::unavailable(err.to_string())),
    }
}

/// `max_attempts`: a whole number from 1, or null for the retry policy's limit.
pub(super) fn parse_max_attempts(value: Option<Value>) -> Result<Option<u32>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| {
                Problem::invalid(
                    "max_attempts",
                    "`max_attempts` must be a whole number from 1",
                )
            }),
        Some(_) => Err(Problem::invalid(
            "max_attempts",
            "`max_attempts` must be a whole number from 1",
        )),
    }
}

/// `rate_limit`: `{"per_second": X, "burst": N}`, or null for none.
pub(super) fn parse_rate_limit(value: Option<Value>) -> Result<Option<RateLimit>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Ok(Some(RateLimit::from_json(&value, "rate_limit")?)),
    }
}

/// `on_dead_letter`: `"hold"` or `"continue"`, or null for the default (`hold`).
pub(super) fn parse_on_dead_letter(value: Value) -> Result<OnDeadLetter, Problem> {
    match value {
        Value::Null => Ok(OnDeadLetter::default()),
        value => Ok(OnDeadLetter::from_json(&value, "on_dead_letter")?),
    }
}

/// `ordering`: `"none"`, `"partition"` or `"strict"`, or null for the default (`partition`).
pub(super) fn parse_ordering(value: Value) -> Result<Ordering, Problem> {
    match value {
        Value::Null => Ok(Ordering::default()),
        value => Ok(Ordering::from_json(&value, "ordering")?),
    }
}

/// `signing`: `hmac-sha256` or `ed25519`; absent or null is `default`.
pub(super) fn parse_signing(
    fields: &mut JsonObject,
    default: SigningScheme,
) -> Result<SigningScheme, Problem> {
    match fields.optional_str("signing")? {
        None => Ok(default),
        Some(text) => SigningScheme::parse(&text).ok_or_else(|| {
            Problem::invalid(
                "signing",
                format!("`signing` must be `hmac-sha256` or `ed25519`, not `{text}`"),
            )
        }),
    }
}

/// `batch`: `{"max_events": N, "max_wait": "30s"}`, or null for none.
pub(super) fn parse_batch(
    state: &AppState,
    value: Option<Value>,
) -> Result<Option<Batching>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Ok(Some(Batching::from_json(
            &value,
            "batch",
            state.longest_retry_wait,
        )?)),
    }
}

/// `health_rules`: the endpoint's own rules (each optional), or null for the installation's.
pub(super) fn parse_health_rules(value: Option<Value>) -> Result<Option<HealthRules>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let rules = HealthRules::from_json(&value, "health_rules")?;
            Ok((!rules.is_empty()).then_some(rules))
        }
    }
}

/// Batches and strict ordering exclude each other: under strict ordering each delivery waits
/// for the one before it, so there is never more than one to send.
pub(super) fn check_batch_with_ordering(shaping: &Shaping) -> Result<(), Problem> {
    if shaping.batch.is_some() && shaping.ordering == Ordering::Strict {
        return Err(Problem::invalid(
            "batch",
            "cannot be combined with `\"ordering\": \"strict\"` (each delivery waits for the one before it); use `partition` or `none`, or set `batch` to null",
        ));
    }
    Ok(())
}

/// `max_in_flight`: a whole number, or null for the default.
pub(super) fn parse_max_in_flight(value: Option<Value>) -> Result<Option<u32>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Ok(Some(max_in_flight_from_json(&value, "max_in_flight")?)),
    }
}
