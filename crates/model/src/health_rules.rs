//! When an endpoint's health calls for someone's attention: a warning when its success rate
//! drops or its failures run on, and disabling once it has failed for too long. The rules are
//! set for the whole installation (the dispatcher's settings) and may be set per endpoint; the
//! dispatcher that owns the endpoint judges its health by them each time it writes it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::ValidationError;
use crate::health::EndpointHealth;

/// The longest rate window: the health keeps an hour of per-minute counts.
pub const MAX_WARN_WINDOW_MINUTES: u32 = 60;
/// The shortest time an endpoint must fail before it may be disabled by time: a few retries.
pub const MIN_DISABLE_AFTER: Duration = Duration::from_secs(60);
/// The longest: past a year the setting is a typo.
pub const MAX_DISABLE_AFTER: Duration = Duration::from_secs(365 * 86_400);

/// Rules as set for the whole installation, or as they apply to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Warn when the success rate over the window is under this (a fraction, above 0, at
    /// most 1)…
    pub warn_success_rate: f64,
    /// …and the window holds at least this many attempts.
    pub warn_min_attempts: u64,
    /// The window, in whole minutes (1 to [`MAX_WARN_WINDOW_MINUTES`]).
    pub warn_window_minutes: u32,
    /// Warn when more than this many attempts in a row failed.
    pub warn_streak: u64,
    /// Disable once it has failed without a success for this long; `None`: never by time.
    pub disable_after: Option<Duration>,
    /// Disable once this many attempts in a row failed; `None`: never by count.
    pub disable_streak: Option<u64>,
}

impl Default for Rules {
    /// The design documents' defaults: warn under 90 % (of at least 20 attempts in 5 minutes)
    /// or past 10 failures in a row; disable after 5 days of failing.
    fn default() -> Self {
        Self {
            warn_success_rate: 0.9,
            warn_min_attempts: 20,
            warn_window_minutes: 5,
            warn_streak: 10,
            disable_after: Some(Duration::from_secs(5 * 86_400)),
            disable_streak: None,
        }
    }
}

/// An endpoint's own rules: each one it sets replaces the installation's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_success_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_min_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_window_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_streak: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_streak: Option<u64>,
}

/// How long an endpoint may fail before it is disabled, or never (`"never"` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Never,
    /// Seconds.
    At(u64),
}

impl Limit {
    fn value(self) -> Option<u64> {
        match self {
            Self::Never => None,
            Self::At(n) => Some(n),
        }
    }
}

impl HealthRules {
    /// The rules that apply to the endpoint: its own over the installation's.
    pub fn over(&self, installation: &Rules) -> Rules {
        Rules {
            warn_success_rate: self
                .warn_success_rate
                .unwrap_or(installation.warn_success_rate),
            warn_min_attempts: self
                .warn_min_attempts
                .unwrap_or(installation.warn_min_attempts),
            warn_window_minutes: self
                .warn_window_minutes
                .unwrap_or(installation.warn_window_minutes),
            warn_streak: self.warn_streak.unwrap_or(installation.warn_streak),
            disable_after: self
                .disable_after
                .map_or(installation.disable_after, |limit| {
                    limit.value().map(Duration::from_secs)
                }),
            disable_streak: self.disable_streak.or(installation.disable_streak),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The API's view: the rules the endpoint sets, durations as text (`"5d"`), `"never"`.
    pub fn to_api_json(&self) -> Value {
        let mut object = Map::new();
        if let Some(rate) = self.warn_success_rate {
            object.insert("warn_success_rate".into(), rate.into());
        }
        if let Some(n) = self.warn_min_attempts {
            object.insert("warn_min_attempts".into(), n.into());
        }
        if let Some(minutes) = self.warn_window_minutes {
            object.insert("warn_window".into(), format!("{minutes}m").into());
        }
        if let Some(n) = self.warn_streak {
            object.insert("warn_streak".into(), n.into());
        }
        if let Some(limit) = self.disable_after {
            let shown = match limit {
                Limit::Never => "never".to_owned(),
                Limit::At(seconds) => duration_text(Duration::from_secs(seconds)),
            };
            object.insert("disable_after".into(), shown.into());
        }
        if let Some(n) = self.disable_streak {
            object.insert("disable_streak".into(), n.into());
        }
        Value::Object(object)
    }

    /// Parses the API's `health_rules` object (each key optional; see [`Rules`]). Rules that
    /// contradict each other among those given (a disabling streak not past the warning one)
    /// are refused, naming the field.
    pub fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        let Value::Object(object) = value else {
            return Err(ValidationError::new(
                field,
                "must be an object such as {\"warn_streak\": 10, \"disable_after\": \"5d\"}, or null for the installation's rules",
            ));
        };
        let name = |key: &str| format!("{field}.{key}");
        let mut rules = Self::default();
        for (key, value) in object {
            match key.as_str() {
                "warn_success_rate" => {
                    rules.warn_success_rate = Some(
                        value
                            .as_f64()
                            .filter(|rate| *rate > 0.0 && *rate <= 1.0)
                            .ok_or_else(|| {
                                ValidationError::new(
                                    name(key),
                                    "must be a fraction above 0 and at most 1, such as 0.9",
                                )
                            })?,
                    );
                }
                "warn_min_attempts" => {
                    rules.warn_min_attempts = Some(whole_number(value, &name(key))?);
                }
                "warn_window" => {
                    let window = duration_of(value, &name(key))?;
                    let minutes = window.as_secs() / 60;
                    if window.as_secs() % 60 != 0
                        || !(1..=u64::from(MAX_WARN_WINDOW_MINUTES)).contains(&minutes)
                    {
                        return Err(ValidationError::new(
                            name(key),
                            format!(
                                "must be whole minutes from 1m to {MAX_WARN_WINDOW_MINUTES}m (the health keeps an hour)"
                            ),
                        ));
                    }
                    rules.warn_window_minutes = u32::try_from(minutes).ok();
                }
                "warn_streak" => rules.warn_streak = Some(whole_number(value, &name(key))?),
                "disable_after" => {
                    rules.disable_after = Some(if value.as_str() == Some("never") {
                        Limit::Never
                    } else {
                        let after = duration_of(value, &name(key))?;
                        if !(MIN_DISABLE_AFTER..=MAX_DISABLE_AFTER).contains(&after) {
                            return Err(ValidationError::new(
                                name(key),
                                "must be from 1m to 365d, or \"never\"",
                            ));
                        }
                        Limit::At(after.as_secs())
                    });
                }
                "disable_streak" => {
                    rules.disable_streak = Some(whole_number(value, &name(key))?);
                }
                unknown => {
                    return Err(ValidationError::new(
                        name(unknown),
                        "is not a health rule (`warn_success_rate`, `warn_min_attempts`, `warn_window`, `warn_streak`, `disable_after`, `disable_streak`)",
                    ));
                }
            }
        }
        let warn_streak = rules.warn_streak.unwrap_or(Rules::default().warn_streak);
        if let Some(disable) = rules.disable_streak
            && disable <= warn_streak
        {
            return Err(ValidationError::new(
                name("disable_streak"),
                format!(
                    "must be more than the warning's streak ({warn_streak}): an endpoint would be disabled before it was warned of"
                ),
            ));
        }
        Ok(rules)
    }
}

impl Rules {
    /// Checks installation-wide rules, naming the offending one as `prefix` + its name.
    pub fn check(&self) -> Result<(), ValidationError> {
        if !(self.warn_success_rate > 0.0 && self.warn_success_rate <= 1.0) {
            return Err(ValidationError::new(
                "WARN_SUCCESS_RATE",
                "must be a fraction above 0 and at most 1",
            ));
        }
        if self.warn_min_attempts == 0 {
            return Err(ValidationError::new(
                "WARN_MIN_ATTEMPTS",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_WARN_WINDOW_MINUTES).contains(&self.warn_window_minutes) {
            return Err(ValidationError::new(
                "WARN_WINDOW",
                format!("must be whole minutes from 1m to {MAX_WARN_WINDOW_MINUTES}m"),
            ));
        }
        if self.warn_streak == 0 {
            return Err(ValidationError::new("WARN_STREAK", "must be at least 1"));
        }
        if let Some(after) = self.disable_after
            && !(MIN_DISABLE_AFTER..=MAX_DISABLE_AFTER).contains(&after)
        {
            return Err(ValidationError::new(
                "DISABLE_AFTER",
                "must be from 1m to 365d, or never",
            ));
        }
        if let Some(streak) = self.disable_streak
            && streak <= self.warn_streak
        {
            return Err(ValidationError::new(
                "DISABLE_STREAK",
                format!(
                    "must be more than the warning's streak ({}): endpoints would be disabled before they were warned of",
                    self.warn_streak
                ),
            ));
        }
        Ok(())
    }

    /// What the rules say of `health` at `now`, for an endpoint last changed (enabled again,
    /// given a new URL) at `changed_at`: failing before that does not count toward
    /// `disable_after`.
    pub fn judge(
        &self,
        health: &EndpointHealth,
        now: OffsetDateTime,
        changed_at: OffsetDateTime,
    ) -> Verdict {
        let streak = health.failure_streak;
        if let Some(limit) = self.disable_streak
            && streak >= limit
        {
            return Verdict::Disable(format!("{streak} attempts in a row failed"));
        }
        if let (Some(after), Some(since)) = (self.disable_after, health.failing_since)
            && streak > 0
            && now - since.max(changed_at) >= after
        {
            return Verdict::Disable(format!(
                "failing without a success since {since} (over {})",
                duration_text(after)
            ));
        }
        if streak > self.warn_streak {
            return Verdict::Warn(format!("{streak} attempts in a row failed"));
        }
        let (attempts, succeeded) = health.attempts_over(now, self.warn_window_minutes);
        if attempts >= self.warn_min_attempts && attempts > 0 {
            let rate = succeeded as f64 / attempts as f64;
            if rate < self.warn_success_rate {
                return Verdict::Warn(format!(
                    "{:.1} % of {attempts} attempts succeeded in the last {}m (under {:.1} %)",
                    rate * 100.0,
                    self.warn_window_minutes,
                    self.warn_success_rate * 100.0
                ));
            }
        }
        Verdict::Healthy
    }
}

/// What the rules say of an endpoint's health, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Warn(String),
    Disable(String),
}

fn whole_number(value: &Value, field: &str) -> Result<u64, ValidationError> {
    value
        .as_u64()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ValidationError::new(field, "must be a whole number, at least 1"))
}

/// A duration such as `"30m"`, `"12h"` or `"5d"`.
fn duration_of(value: &Value, field: &str) -> Result<Duration, ValidationError> {
    let text = value.as_str().ok_or_else(|| {
        ValidationError::new(
            field,
            "must be a duration such as \"30m\", \"12h\" or \"5d\"",
        )
    })?;
    parse_duration(text).map_err(|reason| ValidationError::new(field, reason))
}

/// Parses a duration such as `"90s"`, `"30m"`, `"12h"` or `"5d"` (humantime's syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("`{text}` is not a duration such as 30m, 12h or 5d: {err}"))
}

/// A duration in its largest whole unit: `5d`, `12h`, `30m`, `90s`.
pub fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::delivery::AttemptClass;

    /// 2026-12-05 12:00:30 UTC.
    const NOW_UNIX: i64 = 1_796_472_030;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).expect("a valid time")
    }

    /// When the endpoints of these tests were last changed.
    fn long_ago() -> OffsetDateTime {
        now() - time::Duration::days(365)
    }

    fn failing(times: u64, from: OffsetDateTime) -> EndpointHealth {
        let mut health = EndpointHealth::default();
        for n in 0..times {
            let at = from + time::Duration::seconds(i64::try_from(n).unwrap_or(0));
            health.record(at, Some(10), AttemptClass::Http5xxRetryable);
        }
        health
    }

    #[test]
    fn the_defaults_warn_past_ten_failures_in_a_row_and_disable_after_five_days() {
        let rules = Rules::default();
        assert_eq!(rules.check(), Ok(()));
        let ten = failing(10, now() - time::Duration::seconds(20));
        assert_eq!(
            rules.judge(&ten, now(), long_ago()),
            Verdict::Healthy,
            "ten is not past ten"
        );
        let eleven = failing(11, now() - time::Duration::seconds(20));
        assert!(
            matches!(rules.judge(&eleven, now(), long_ago()), Verdict::Warn(r) if r.contains("11 attempts"))
        );
        let long = failing(1, now() - time::Duration::days(5));
        assert!(
            matches!(rules.judge(&long, now(), long_ago()), Verdict::Disable(r) if r.contains("5d"))
        );
        // Failing since before it was changed (enabled again): counted from the change.
        assert_eq!(
            rules.judge(&long, now(), now() - time::Duration::days(1)),
            Verdict::Healthy
        );
        let shorter = failing(1, now() - time::Duration::days(4));
        assert_eq!(rules.judge(&shorter, now(), long_ago()), Verdict::Healthy);
    }

    #[test]
    fn a_low_success_rate_warns_only_with_enough_attempts_in_its_window() {
        let rules = Rules {
            warn_streak: 1_000,
            ..Rules::default()
        };
        let mut health = EndpointHealth::default();
        // 17 of 20 succeed (85 %), alternating so no streak builds.
        for n in 0..20_i64 {
            let class = if n % 7 == 3 {
                AttemptClass::Http5xxRetryable
            } else {
                AttemptClass::Http2xxDelivered
            };
            health.record(now() - time::Duration::seconds(n), Some(10), class);
        }
        assert!(
            matches!(rules.judge(&health, now(), long_ago()), Verdict::Warn(r) if r.contains("85.0 %"))
        );
        let fewer = Rules {
            warn_min_attempts: 21,
            ..rules
        };
        assert_eq!(
            fewer.judge(&health, now(), long_ago()),
            Verdict::Healthy,
            "too few to judge"
        );
        // Ten minutes on, the 5-minute window is empty.
        assert_eq!(
            rules.judge(&health, now() + time::Duration::minutes(10), long_ago()),
            Verdict::Healthy
        );
    }

    #[test]
    fn a_disabling_streak_comes_before_the_warning() {
        let rules = Rules {
            warn_streak: 2,
            disable_streak: Some(4),
            ..Rules::default()
        };
        let three = failing(3, now() - time::Duration::seconds(5));
        assert!(matches!(
            rules.judge(&three, now(), long_ago()),
            Verdict::Warn(_)
        ));
        let four = failing(4, now() - time::Duration::seconds(5));
        assert!(
            matches!(rules.judge(&four, now(), long_ago()), Verdict::Disable(r) if r.contains("4 attempts"))
        );
    }

    #[test]
    fn an_endpoints_own_rules_replace_the_installations_one_by_one() {
        let own = HealthRules::from_json(
            &json!({"warn_streak": 3, "disable_after": "never", "warn_window": "15m"}),
            "health_rules",
        )
        .expect("valid rules");
        let rules = own.over(&Rules::default());
        assert_eq!(rules.warn_streak, 3);
        assert_eq!(rules.disable_after, None);
        assert_eq!(rules.warn_window_minutes, 15);
        assert_eq!(rules.warn_success_rate, 0.9, "not set: the installation's");
        assert_eq!(
            own.to_api_json(),
            json!({"warn_streak": 3, "disable_after": "never", "warn_window": "15m"})
        );
        let shown = HealthRules::from_json(&json!({"disable_after": "120h"}), "r").unwrap();
        assert_eq!(shown.to_api_json(), json!({"disable_after": "5d"}));
        assert!(HealthRules::from_json(&json!({}), "r").unwrap().is_empty());
    }

    #[test]
    fn rules_out_of_range_or_contradicting_each_other_name_their_field() {
        for (value, field) in [
            (
                json!({"warn_streak": 5, "disable_streak": 5}),
                "r.disable_streak",
            ),
            (json!({"disable_streak": 10}), "r.disable_streak"),
            (json!({"warn_window": "0m"}), "r.warn_window"),
            (json!({"warn_window": "90s"}), "r.warn_window"),
            (json!({"warn_window": "61m"}), "r.warn_window"),
            (json!({"disable_after": "0s"}), "r.disable_after"),
            (json!({"disable_after": "400d"}), "r.disable_after"),
            (json!({"disable_after": 5}), "r.disable_after"),
            (json!({"warn_success_rate": 0}), "r.warn_success_rate"),
            (json!({"warn_success_rate": "0.9"}), "r.warn_success_rate"),
            (json!({"warn_min_attempts": -1}), "r.warn_min_attempts"),
            (json!({"warn_streak": 1.5}), "r.warn_streak"),
            (json!({"nope": 1}), "r.nope"),
            (json!([1]), "r"),
        ] {
            let err = HealthRules::from_json(&value, "r").expect_err("refused");
            assert_eq!(err.field, field, "{value}");
        }
        assert!(HealthRules::from_json(&json!({"disable_streak": 11}), "r").is_ok());
        let contradicting = Rules {
            disable_streak: Some(10),
            ..Rules::default()
        };
        assert_eq!(
            contradicting.check().map_err(|err| err.field),
            Err("DISABLE_STREAK".to_owned())
        );
        let zero_window = Rules {
            warn_window_minutes: 0,
            ..Rules::default()
        };
        assert_eq!(
            zero_window.check().map_err(|err| err.field),
            Err("WARN_WINDOW".to_owned())
        );
    }
}
