//! Endpoints: where a tenant's webhooks go, and which event types they want.

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use hookstream_signing::SigningSecret;

use crate::ValidationError;
use crate::destination::EndpointUrl;
use crate::health_rules::HealthRules;
use crate::ids::EndpointId;
use crate::names::{EventType, Tenant};
use crate::ops_event::{self, OpsKind};
use crate::shaping::{Batching, OnDeadLetter, Ordering, RateLimit, Shaping};

/// Which event types an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every event type (written as `[]` or `["*"]`).
    All,
    /// Exactly these types.
    Types(Vec<EventType>),
}

impl Subscription {
    /// The most event types one endpoint may name; more is a sign of misuse (`*` takes all).
    pub const MAX_TYPES: usize = 256;

    /// Parses a client's `event_types` list: empty or `["*"]` means every type.
    pub fn parse(types: &[String], field: &str) -> Result<Self, ValidationError> {
        if types.is_empty() || (types.len() == 1 && types[0] == "*") {
            return Ok(Self::All);
        }
        if types.len() > Self::MAX_TYPES {
            return Err(ValidationError::new(
                field,
                format!(
                    "names {} event types; at most {} (or `*` for every type)",
                    types.len(),
                    Self::MAX_TYPES
                ),
            ));
        }
        let mut parsed = Vec::with_capacity(types.len());
        for (index, text) in types.iter().enumerate() {
            let field = format!("{field}[{index}]");
            if text == "*" {
                return Err(ValidationError::new(
                    field,
                    "`*` subscribes to every type and cannot be combined with other types",
                ));
            }
            let event_type = EventType::parse(text, &field)?;
            if !parsed.contains(&event_type) {
                parsed.push(event_type);
            }
        }
        Ok(Self::Types(parsed))
    }

    /// Parses a subscription a client asks for: as [`Self::parse`], and a type in the reserved
    /// namespace must be an operational event. (What the store has is read with
    /// [`Self::parse`], so an endpoint saved before a name was reserved stays readable.)
    pub fn parse_requested(types: &[String], field: &str) -> Result<Self, ValidationError> {
        let subscription = Self::parse(types, field)?;
        if let Self::Types(parsed) = &subscription {
            for event_type in parsed.iter().filter(|t| ops_event::is_operational(t)) {
                if OpsKind::of(event_type.as_str()).is_none() {
                    let index = types
                        .iter()
                        .position(|t| t == event_type.as_str())
                        .unwrap_or_default();
                    let known: Vec<&str> = OpsKind::ALL.iter().map(|k| k.event_type()).collect();
                    return Err(ValidationError::new(
                        format!("{field}[{index}]"),
                        format!(
                            "`{event_type}` is in the reserved `{}` namespace but is not an operational event; they are {}",
                            ops_event::NAMESPACE,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(subscription)
    }

    /// Whether it takes events of `event_type`. `*` takes every type of the tenant's own, not
    /// Hookstream's operational events: those go only to endpoints that name them.
    pub fn matches(&self, event_type: &EventType) -> bool {
        match self {
            Self::All => !ops_event::is_operational(event_type),
            Self::Types(types) => types.contains(event_type),
        }
    }

    /// Whether it names an operational event type: the endpoint is one of its tenant's
    /// operator endpoints, whose own failures raise no operational events (they would go
    /// round to it again).
    pub fn is_operational(&self) -> bool {
        match self {
            Self::All => false,
            Self::Types(types) => types.iter().any(ops_event::is_operational),
        }
    }

    /// The list form used by the API and the store (`["*"]` for every type).
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Self::All => vec!["*".to_owned()],
            Self::Types(types) => types.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_list().serialize(serializer)
    }
}

/// An endpoint's circuit breaker as recorded in the store: `closed`, `open` (until a time),
/// or `half_open` (one probe out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CircuitView {
    pub state: CircuitState,
    pub open_until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Closed, Self::Open, Self::HalfOpen]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A secret that was rotated out and still signs until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiringSecret {
    pub secret: SigningSecret,
    pub expires_at: OffsetDateTime,
}

impl Endpoint {
    /// The secrets that sign a webhook sent `at`: the current one, and the previous one while it
    /// has not expired.
    pub fn signing_secrets(&self, at: OffsetDateTime) -> Vec<&SigningSecret> {
        let mut secrets = vec![&self.secret];
        if let Some(previous) = self.previous_secret.as_ref().filter(|p| p.expires_at > at) {
            secrets.push(&previous.secret);
        }
        secrets
    }
}

/// A tenant's webhook receiver.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: EndpointId,
    pub tenant: Tenant,
    pub url: EndpointUrl,
    pub subscription: Subscription,
    /// Signs every webhook sent to this endpoint.
    pub secret: SigningSecret,
    /// The secret it replaced, which also signs until it expires, so receivers can switch over
    /// without refusing a webhook.
    pub previous_secret: Option<RetiringSecret>,
    /// A disabled endpoint receives nothing; its deliveries wait, unsent, in its queue in the
    /// store until it is enabled again. An endpoint that answers `410 Gone`, or whose health
    /// rules say so, is disabled; the API enables it again.
    pub disabled: bool,
    /// Lowers the retry policy's attempt limit for this endpoint.
    pub max_attempts: Option<u32>,
    /// A paused endpoint's tasks are held (not failed, no attempt spent) until it is resumed.
    pub paused: bool,
    /// The circuit breaker as its dispatcher last recorded it.
    pub circuit: CircuitView,
    /// How its deliveries are shaped (rate limit).
    pub shaping: Shaping,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What one request changes of an endpoint; `None` leaves a field as it stands. The store applies
/// it to the endpoint as it is then, so changes made side by side (a `PATCH`, a pause, a
/// dispatcher disabling the endpoint after a `410`) do not undo one another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointChanges {
    pub url: Option<EndpointUrl>,
    pub subscription: Option<Subscription>,
    pub disabled: Option<bool>,
    pub paused: Option<bool>,
    /// `Some(None)`: back to the retry policy's limit.
    pub max_attempts: Option<Option<u32>>,
    /// `Some(None)`: no limit.
    pub rate_limit: Option<Option<RateLimit>>,
    pub ordering: Option<Ordering>,
    /// `Some(None)`: back to the default.
    pub max_in_flight: Option<Option<u32>>,
    pub on_dead_letter: Option<OnDeadLetter>,
    /// `Some(None)`: no batching.
    pub batch: Option<Option<Batching>>,
    /// `Some(None)`: the installation's rules.
    pub health_rules: Option<Option<HealthRules>>,
}

impl EndpointChanges {
    /// Whether any delivery setting (kept together in one document) changes.
    pub fn changes_shaping(&self) -> bool {
        self.rate_limit.is_some()
            || self.ordering.is_some()
            || self.max_in_flight.is_some()
            || self.on_dead_letter.is_some()
            || self.batch.is_some()
            || self.health_rules.is_some()
    }

    /// `shaping` with these changes.
    pub fn apply_to_shaping(&self, mut shaping: Shaping) -> Shaping {
        if let Some(rate_limit) = self.rate_limit {
            shaping.rate_limit = rate_limit;
        }
        if let Some(ordering) = self.ordering {
            shaping.ordering = ordering;
        }
        if let Some(max_in_flight) = self.max_in_flight {
            shaping.max_in_flight = max_in_flight;
        }
        if let Some(on_dead_letter) = self.on_dead_letter {
            shaping.on_dead_letter = on_dead_letter;
        }
        if let Some(batch) = self.batch {
            shaping.batch = batch;
        }
        if let Some(health_rules) = self.health_rules {
            shaping.health_rules = health_rules;
        }
        shaping
    }

    /// `endpoint` with these changes, as changed `at`.
    pub fn apply(&self, mut endpoint: Endpoint, at: OffsetDateTime) -> Endpoint {
        if let Some(url) = &self.url {
            endpoint.url = url.clone();
        }
        if let Some(subscription) = &self.subscription {
            endpoint.subscription = subscription.clone();
        }
        if let Some(disabled) = self.disabled {
            endpoint.disabled = disabled;
        }
        if let Some(paused) = self.paused {
            endpoint.paused = paused;
        }
        if let Some(max_attempts) = self.max_attempts {
            endpoint.max_attempts = max_attempts;
        }
        endpoint.shaping = self.apply_to_shaping(endpoint.shaping);
        endpoint.updated_at = at;
        endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_and_star_subscribe_to_everything() {
        let created = EventType::parse("order.created", "t").unwrap();
        assert_eq!(
            Subscription::parse(&[], "event_types").unwrap(),
            Subscription::All
        );
        let star = Subscription::parse(&types(&["*"]), "event_types").unwrap();
        assert!(star.matches(&created));
        assert_eq!(star.to_list(), vec!["*"]);
    }

    #[test]
    fn typed_subscriptions_match_exactly() {
        let sub = Subscription::parse(&types(&["order.created", "order.paid"]), "e").unwrap();
        assert!(sub.matches(&EventType::parse("order.paid", "t").unwrap()));
        assert!(!sub.matches(&EventType::parse("order.refunded", "t").unwrap()));
    }

    #[test]
    fn bad_types_are_reported_with_their_index() {
        let err =
            Subscription::parse(&types(&["order.created", "bad type"]), "event_types").unwrap_err();
        assert_eq!(err.field, "event_types[1]");
        let err = Subscription::parse(&types(&["order.created", "*"]), "event_types").unwrap_err();
        assert_eq!(err.field, "event_types[1]");
    }

    #[test]
    fn operational_types_go_only_to_endpoints_that_name_them() {
        let disabled = EventType::parse("hookstream.endpoint.disabled", "t").unwrap();
        let star = Subscription::parse(&[], "event_types").unwrap();
        assert!(!star.matches(&disabled), "`*` is the tenant's own types");
        assert!(!star.is_operational());
        let operator = Subscription::parse(
            &types(&["hookstream.endpoint.disabled", "order.created"]),
            "event_types",
        )
        .unwrap();
        assert!(operator.matches(&disabled));
        assert!(operator.is_operational());
        let unknown = types(&["order.created", "hookstream.endpoint.deleted"]);
        assert!(
            Subscription::parse(&unknown, "event_types").is_ok(),
            "what the store has stays readable"
        );
        let err = Subscription::parse_requested(&unknown, "event_types").unwrap_err();
        assert_eq!(err.field, "event_types[1]");
        assert!(err.reason.contains("hookstream.batch.finished"), "{err}");
    }

    #[test]
    fn a_subscription_names_at_most_max_types() {
        let names: Vec<String> = (0..=Subscription::MAX_TYPES)
            .map(|i| format!("t.{i}"))
            .collect();
        let err = Subscription::parse(&names, "event_types").unwrap_err();
        assert_eq!(err.field, "event_types");
        assert!(Subscription::parse(&names[1..], "event_types").is_ok());
    }
}
