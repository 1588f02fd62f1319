//! How an endpoint wants its deliveries shaped: its ordering, how many requests it takes at once,
//! and its rate limit. Kept with the endpoint and enforced by the dispatcher that owns the
//! endpoint's partition.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ValidationError;
use crate::health_rules::HealthRules;
use crate::retry::parse_delay;

/// An endpoint's delivery settings, stored as one JSON document so settings added later need
/// no new column. Unknown keys in a stored document are ignored, so an older version reads what
/// a newer one wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shaping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Ordering::is_default")]
    pub ordering: Ordering,
    /// Requests at once under [`Ordering::None`]; [`DEFAULT_MAX_IN_FLIGHT`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Under [`Ordering::Strict`], what a dead letter does to the deliveries behind it.
    #[serde(default, skip_serializing_if = "OnDeadLetter::is_default")]
    pub on_dead_letter: OnDeadLetter,
    /// Whether, and how, the endpoint takes its deliveries in batches (one request each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batching>,
    /// Its own health rules, over the installation's; `None`: the installation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_rules: Option<HealthRules>,
}

impl Shaping {
    /// The stored form.
    pub fn to_json(&self) -> String {
        // A struct of numbers always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// How many of the endpoint's requests may be out at once: one unless its order does not
    /// matter.
    pub fn concurrency(&self) -> u32 {
        match self.ordering {
            Ordering::None => self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            Ordering::Partition | Ordering::Strict => 1,
        }
    }

    /// The nearest settings within today's bounds, for stored ones that are not (written by
    /// hand, or by a version with other bounds): the endpoint stays usable.
    pub fn within_bounds(self) -> Self {
        Self {
            rate_limit: self.rate_limit.map(RateLimit::within_bounds),
            ordering: self.ordering,
            max_in_flight: self.max_in_flight.map(|n| n.clamp(1, MAX_IN_FLIGHT_LIMIT)),
            on_dead_letter: self.on_dead_letter,
            batch: self.batch.map(Batching::within_bounds),
            // Only watched, never a bound on sending: kept as stored.
            health_rules: self.health_rules,
        }
    }

    /// How the endpoint's deliveries are batched; none under strict ordering, where each
    /// delivery waits for the one before it.
    pub fn batching(&self) -> Option<Batching> {
        self.batch.filter(|_| self.ordering != Ordering::Strict)
    }

    /// Reads the stored form; an empty or missing document is the defaults.
    pub fn from_json(text: Option<&str>) -> Result<Self, serde_json::Error> {
        match text {
            None | Some("") => Ok(Self::default()),
            Some(text) => serde_json::from_str(text),
        }
    }
}

/// Whether, and how far, an endpoint's deliveries keep the order their events were sent in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// No order: up to `max_in_flight` requests at once, for receivers that only need speed.
    None,
    /// One request at a time, and the next delivery waits until the one before it is delivered
    /// or dead-lettered, across retries, restarts and rebalances. The dispatcher keeps the
    /// endpoint's backlog in the store, in arrival order, and retries in place.
    Strict,
    /// One request at a time, first attempts in the order the events were sent; a retried
    /// delivery goes out when due, after later ones. Also what a setting written by a newer
    /// version and unknown here is taken for: the endpoint stays readable, one at a time.
    #[default]
    #[serde(other)]
    Partition,
}

/// Requests at once to an endpoint without ordering, unless it says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;
/// The most requests at once one endpoint may ask for: about what one dispatcher keeps of an
/// endpoint's backlog in memory (`HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT`, 500 by default) and
/// far past what lifts one endpoint's throughput over a round trip.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 500;

impl Ordering {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Partition => "partition",
            Self::Strict => "strict",
        }
    }

    /// Parses the API's `"none"`, `"partition"` or `"strict"`.
    pub fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        match value.as_str() {
            Some("none") => Ok(Self::None),
            Some("partition") => Ok(Self::Partition),
            Some("strict") => Ok(Self::Strict),
            _ => Err(ValidationError::new(
                field,
                "must be `none`, `partition` or `strict`",
            )),
        }
    }
}

/// Under strict ordering, what a dead letter does to the deliveries queued behind it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDeadLetter {
    /// The dead letter is left behind and the next delivery goes out.
    Continue,
    /// The queue stops at the dead letter until it is replayed (its replay is sent first, then
    /// the rest) or the setting is changed to `continue`. Nothing behind it goes out of order.
    /// Also what a setting written by a newer version and unknown here is taken for.
    #[default]
    #[serde(other)]
    Hold,
}

impl OnDeadLetter {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Continue => "continue",
        }
    }

    /// Parses the API's `"hold"` or `"continue"`.
    pub fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        match value.as_str() {
            Some("hold") => Ok(Self::Hold),
            Some("continue") => Ok(Self::Continue),
            _ => Err(ValidationError::new(field, "must be `hold` or `continue`")),
        }
    }
}

/// Parses the API's `max_in_flight`: a whole number from 1 to [`MAX_IN_FLIGHT_LIMIT`].
pub fn max_in_flight_from_json(value: &Value, field: &str) -> Result<u32, ValidationError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=MAX_IN_FLIGHT_LIMIT).contains(n))
        .ok_or_else(|| {
            ValidationError::new(
                field,
                format!("must be a whole number from 1 to {MAX_IN_FLIGHT_LIMIT}"),
            )
        })
}

/// At most `per_second` deliveries a second on average, with up to `burst` at once after a
/// quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: f64,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimit {
    /// The slowest rate: one delivery every 100 s. Slower than that, tasks would wait longer in
    /// the dispatcher than a claim's lease; pause the endpoint instead.
    pub const MIN_PER_SECOND: f64 = 0.01;
    /// The fastest rate one endpoint may ask for; more is no limit at all on one dispatcher.
    pub const MAX_PER_SECOND: f64 = 10_000.0;
    /// The largest burst.
    pub const MAX_BURST: u32 = 10_000;

    /// A checked limit. Without `burst`, one second's worth (at least 1).
    pub fn new(per_second: f64, burst: Option<u32>, field: &str) -> Result<Self, ValidationError> {
        if !per_second.is_finite()
            || !(Self::MIN_PER_SECOND..=Self::MAX_PER_SECOND).contains(&per_second)
        {
            return Err(ValidationError::new(
                format!("{field}.per_second"),
                format!(
                    "must be a number from {} to {}",
                    Self::MIN_PER_SECOND,
                    Self::MAX_PER_SECOND
                ),
            ));
        }
        let burst = match burst {
            Some(burst) if (1..=Self::MAX_BURST).contains(&burst) => burst,
            Some(_) => return Err(burst_error(field)),
            None => (per_second.ceil() as u32).clamp(1, Self::MAX_BURST),
        };
        Ok(Self { per_second, burst })
    }

    /// The nearest limit within today's bounds, for a stored one that is not (written by hand,
    /// or by a version with other bounds): the endpoint stays usable.
    pub fn within_bounds(self) -> Self {
        let per_second = if self.per_second.is_nan() {
            Self::MIN_PER_SECOND
        } else {
            self.per_second
                .clamp(Self::MIN_PER_SECOND, Self::MAX_PER_SECOND)
        };
        Self {
            per_second,
            burst: self.burst.clamp(1, Self::MAX_BURST),
        }
    }

    /// Parses the API's `{"per_second": X, "burst": N}`; `burst` may be left out.
    pub fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        let Value::Object(object) = value else {
            return Err(ValidationError::new(
                field,
                "must be an object like {\"per_second\": 10, \"burst\": 20}, or null for no limit",
            ));
        };
        if let Some(unknown) = object.keys().find(|k| *k != "per_second" && *k != "burst") {
            return Err(ValidationError::new(
                format!("{field}.{unknown}"),
                "is not a rate limit setting (`per_second`, `burst`)",
            ));
        }
        let per_second = match object.get("per_second") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(_) => f64::NAN,
            None => {
                return Err(ValidationError::new(
                    format!("{field}.per_second"),
                    "is required",
                ));
            }
        };
        let burst = match object.get("burst") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| burst_error(field))?,
            ),
            Some(_) => return Err(burst_error(field)),
        };
        Self::new(per_second, burst, field)
    }
}

fn burst_error(field: &str) -> ValidationError {
    ValidationError::new(
        format!("{field}.burst"),
        format!("must be a whole number from 1 to {}", RateLimit::MAX_BURST),
    )
}

/// Deliveries sent together, as one request whose body is a JSON array of their usual bodies:
/// up to `max_events` at once, and none waits longer than `max_wait` for its batch to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    pub max_events: u32,
    /// Stored in milliseconds; the API shows it as a delay such as `30s`.
    pub max_wait_ms: u64,
}

impl Batching {
    /// The most deliveries one batch may carry.
    pub const MAX_EVENTS: u32 = 1_000;
    /// The shortest wait: below it a batch would hardly ever hold more than one delivery.
    pub const MIN_WAIT: Duration = Duration::from_millis(10);

    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    /// `max_wait` as the API shows it: the largest whole unit (`30s`, `2m`, `1500ms`).
    pub fn max_wait_text(&self) -> String {
        let ms = self.max_wait_ms;
        match ms {
            0 => "0ms".to_owned(),
            ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
            ms => format!("{ms}ms"),
        }
    }

    /// The API's view: `{"max_events": N, "max_wait": "30s"}`.
    pub fn to_api_json(&self) -> Value {
        serde_json::json!({"max_events": self.max_events, "max_wait": self.max_wait_text()})
    }

    /// The nearest setting within today's bounds, for a stored one that is not.
    pub fn within_bounds(self) -> Self {
        Self {
            max_events: self.max_events.clamp(1, Self::MAX_EVENTS),
            max_wait_ms: self
                .max_wait_ms
                .clamp(millis(Self::MIN_WAIT), millis(crate::retry::MAX_DELAY)),
        }
    }

    /// Parses the API's `{"max_events": N, "max_wait": "30s"}`. A delivery that waits for its
    /// batch holds its partition's committed offset, so `max_wait` may be at most
    /// `longest_wait` (the longest retry tier), and it comes in the retry schedule's units.
    pub fn from_json(
        value: &Value,
        field: &str,
        longest_wait: Duration,
    ) -> Result<Self, ValidationError> {
        let Value::Object(object) = value else {
            return Err(ValidationError::new(
                field,
                "must be an object like {\"max_events\": 100, \"max_wait\": \"30s\"}, or null for no batching",
            ));
        };
        if let Some(unknown) = object
            .keys()
            .find(|k| *k != "max_events" && *k != "max_wait")
        {
            return Err(ValidationError::new(
                format!("{field}.{unknown}"),
                "is not a batch setting (`max_events`, `max_wait`)",
            ));
        }
        let events_field = format!("{field}.max_events");
        let max_events = match object.get("max_events") {
            None => return Err(ValidationError::new(events_field, "is required")),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=Self::MAX_EVENTS).contains(n))
                .ok_or_else(|| {
                    ValidationError::new(
                        &events_field,
                        format!("must be a whole number from 1 to {}", Self::MAX_EVENTS),
                    )
                })?,
        };
        let wait_field = format!("{field}.max_wait");
        let max_wait = match object.get("max_wait") {
            None => return Err(ValidationError::new(wait_field, "is required")),
            Some(Value::String(text)) => parse_delay(text.trim())
                .map_err(|reason| ValidationError::new(&wait_field, reason))?,
            Some(_) => {
                return Err(ValidationError::new(
                    wait_field,
                    "must be a delay such as \"500ms\", \"30s\" or \"2m\"",
                ));
            }
        };
        if max_wait < Self::MIN_WAIT {
            return Err(ValidationError::new(
                wait_field,
                format!("must be at least {}ms", Self::MIN_WAIT.as_millis()),
            ));
        }
        if max_wait > longest_wait {
            return Err(ValidationError::new(
                wait_field,
                format!(
                    "must be at most the longest retry delay ({}): a delivery waiting for its batch holds its partition's committed offset",
                    Batching {
                        max_events: 1,
                        max_wait_ms: millis(longest_wait)
                    }
                    .max_wait_text()
                ),
            ));
        }
        Ok(Self {
            max_events,
            max_wait_ms: millis(max_wait),
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_rate_limit_is_read_with_a_default_burst() {
        let limit = RateLimit::from_json(&json!({"per_second": 2.5}), "rate_limit").unwrap();
        assert_eq!(
            limit,
            RateLimit {
                per_second: 2.5,
                burst: 3
            }
        );
        let slow = RateLimit::from_json(&json!({"per_second": 0.5}), "rate_limit").unwrap();
        assert_eq!(slow.burst, 1);
        let given = RateLimit::from_json(&json!({"per_second": 10, "burst": 50}), "rate_limit");
        assert_eq!(given.unwrap().burst, 50);
    }

    #[test]
    fn bad_rate_limits_name_their_field() {
        let cases = [
            (json!({"per_second": -1}), "rate_limit.per_second"),
            (json!({"per_second": 0}), "rate_limit.per_second"),
            (json!({"per_second": 0.001}), "rate_limit.per_second"),
            (json!({"per_second": 1e9}), "rate_limit.per_second"),
            (json!({"per_second": "10"}), "rate_limit.per_second"),
            (json!({"burst": 5}), "rate_limit.per_second"),
            (json!({"per_second": 1, "burst": 0}), "rate_limit.burst"),
            (json!({"per_second": 1, "burst": 1.5}), "rate_limit.burst"),
            (json!({"per_second": 1, "burst": -2}), "rate_limit.burst"),
            (
                json!({"per_second": 1, "burst": 10_001}),
                "rate_limit.burst",
            ),
            (json!({"per_second": 1, "brust": 2}), "rate_limit.brust"),
            (json!(10), "rate_limit"),
        ];
        for (input, field) in cases {
            let err = RateLimit::from_json(&input, "rate_limit").unwrap_err();
            assert_eq!(err.field, field, "{input}");
        }
    }

    #[test]
    fn ordering_and_max_in_flight_are_read_and_bad_values_name_their_field() {
        assert_eq!(
            Ordering::from_json(&json!("none"), "ordering").unwrap(),
            Ordering::None
        );
        assert_eq!(
            Ordering::from_json(&json!("partition"), "ordering").unwrap(),
            Ordering::Partition
        );
        assert_eq!(
            Ordering::from_json(&json!("strict"), "ordering").unwrap(),
            Ordering::Strict
        );
        for bad in [json!("random"), json!(1), json!(null)] {
            let err = Ordering::from_json(&bad, "ordering").unwrap_err();
            assert_eq!(err.field, "ordering", "{bad}");
        }
        assert_eq!(
            OnDeadLetter::from_json(&json!("continue"), "on_dead_letter").unwrap(),
            OnDeadLetter::Continue
        );
        for bad in [json!("skip"), json!(true), json!(null)] {
            let err = OnDeadLetter::from_json(&bad, "on_dead_letter").unwrap_err();
            assert_eq!(err.field, "on_dead_letter", "{bad}");
        }
        assert_eq!(max_in_flight_from_json(&json!(25), "m").unwrap(), 25);
        for bad in [
            json!(0),
            json!(-1),
            json!(501),
            json!(2.5),
            json!("4"),
            json!(1e12),
        ] {
            let err = max_in_flight_from_json(&bad, "max_in_flight").unwrap_err();
            assert_eq!(err.field, "max_in_flight", "{bad}");
        }
    }

    #[test]
    fn only_an_unordered_endpoint_takes_more_than_one_request_at_once() {
        let mut shaping = Shaping::default();
        assert_eq!(shaping.ordering, Ordering::Partition);
        assert_eq!(shaping.concurrency(), 1);
        shaping.max_in_flight = Some(40);
        assert_eq!(shaping.concurrency(), 1, "partition order is one at a time");
        shaping.ordering = Ordering::None;
        assert_eq!(shaping.concurrency(), 40);
        shaping.max_in_flight = None;
        assert_eq!(shaping.concurrency(), DEFAULT_MAX_IN_FLIGHT);
        shaping.ordering = Ordering::Strict;
        assert_eq!(shaping.concurrency(), 1, "strict order is one at a time");
        let stored = r#"{"ordering":"none","max_in_flight":100000}"#;
        let read = Shaping::from_json(Some(stored)).unwrap().within_bounds();
        assert_eq!(read.concurrency(), MAX_IN_FLIGHT_LIMIT);
    }

    #[test]
    fn stored_settings_read_back_and_tolerate_what_they_do_not_know() {
        let shaping = Shaping {
            rate_limit: Some(RateLimit::new(5.0, Some(7), "r").unwrap()),
            ordering: Ordering::Strict,
            max_in_flight: Some(3),
            on_dead_letter: OnDeadLetter::Continue,
            batch: Some(Batching {
                max_events: 50,
                max_wait_ms: 2_000,
            }),
            health_rules: Some(crate::health_rules::HealthRules {
                warn_streak: Some(20),
                disable_after: Some(crate::health_rules::Limit::Never),
                ..Default::default()
            }),
        };
        assert_eq!(
            Shaping::from_json(Some(&shaping.to_json())).unwrap(),
            shaping
        );
        assert_eq!(Shaping::from_json(None).unwrap(), Shaping::default());
        assert_eq!(Shaping::from_json(Some("")).unwrap(), Shaping::default());
        assert_eq!(Shaping::default().to_json(), "{}");
        let newer = r#"{"rate_limit":{"per_second":1.0,"burst":1},"compress":{"gzip":true}}"#;
        assert_eq!(
            Shaping::from_json(Some(newer)).unwrap().rate_limit,
            Some(RateLimit {
                per_second: 1.0,
                burst: 1
            })
        );
        let unknown = r#"{"ordering":"sorted","on_dead_letter":"escalate"}"#;
        let unknown = Shaping::from_json(Some(unknown)).unwrap();
        assert_eq!(unknown.ordering, Ordering::Partition);
        assert_eq!(unknown.on_dead_letter, OnDeadLetter::Hold);
        assert!(Shaping::from_json(Some("not json")).is_err());
        let by_hand = Shaping::from_json(Some(r#"{"rate_limit":{"per_second":0}}"#)).unwrap();
        assert_eq!(
            by_hand.rate_limit.map(RateLimit::within_bounds),
            Some(RateLimit {
                per_second: RateLimit::MIN_PER_SECOND,
                burst: 1
            })
        );
        let huge = RateLimit {
            per_second: 1e12,
            burst: 0,
        };
        assert_eq!(
            huge.within_bounds(),
            RateLimit {
                per_second: RateLimit::MAX_PER_SECOND,
                burst: 1
            }
        );
    }

    #[test]
    fn a_batch_setting_is_read_and_bad_values_name_their_field() {
        let longest = Duration::from_secs(60);
        let batch = Batching::from_json(
            &json!({"max_events": 100, "max_wait": "30s"}),
            "batch",
            longest,
        )
        .unwrap();
        assert_eq!(
            batch,
            Batching {
                max_events: 100,
                max_wait_ms: 30_000
            }
        );
        assert_eq!(
            batch.to_api_json(),
            json!({"max_events": 100, "max_wait": "30s"})
        );
        let odd = Batching::from_json(
            &json!({"max_events": 1, "max_wait": "1500ms"}),
            "b",
            longest,
        );
        assert_eq!(odd.unwrap().max_wait_text(), "1500ms");
        let cases = [
            (
                json!({"max_events": 0, "max_wait": "1s"}),
                "batch.max_events",
            ),
            (
                json!({"max_events": 1001, "max_wait": "1s"}),
                "batch.max_events",
            ),
            (
                json!({"max_events": -3, "max_wait": "1s"}),
                "batch.max_events",
            ),
            (
                json!({"max_events": "10", "max_wait": "1s"}),
                "batch.max_events",
            ),
            (json!({"max_wait": "1s"}), "batch.max_events"),
            (json!({"max_events": 10}), "batch.max_wait"),
            (json!({"max_events": 10, "max_wait": 30}), "batch.max_wait"),
            (
                json!({"max_events": 10, "max_wait": "soon"}),
                "batch.max_wait",
            ),
            (
                json!({"max_events": 10, "max_wait": "5ms"}),
                "batch.max_wait",
            ),
            (
                json!({"max_events": 10, "max_wait": "2m"}),
                "batch.max_wait",
            ),
            (
                json!({"max_events": 10, "max_wait": "1s", "max_bytes": 5}),
                "batch.max_bytes",
            ),
            (json!([10]), "batch"),
        ];
        for (input, field) in cases {
            let err = Batching::from_json(&input, "batch", longest).unwrap_err();
            assert_eq!(err.field, field, "{input}");
        }
        let over = Batching::from_json(
            &json!({"max_events": 10, "max_wait": "2m"}),
            "batch",
            longest,
        );
        assert!(over.unwrap_err().reason.contains("(1m)"));
    }

    #[test]
    fn strict_ordering_sends_each_delivery_alone() {
        let batch = Batching {
            max_events: 10,
            max_wait_ms: 1_000,
        };
        let mut shaping = Shaping {
            batch: Some(batch),
            ..Shaping::default()
        };
        assert_eq!(shaping.batching(), Some(batch));
        shaping.ordering = Ordering::None;
        assert_eq!(shaping.batching(), Some(batch));
        shaping.ordering = Ordering::Strict;
        assert_eq!(shaping.batching(), None);
        let stored = r#"{"batch":{"max_events":5000,"max_wait_ms":0}}"#;
        let read = Shaping::from_json(Some(stored)).unwrap().within_bounds();
        assert_eq!(
            read.batch,
            Some(Batching {
                max_events: Batching::MAX_EVENTS,
                max_wait_ms: 10
            })
        );
    }
}
