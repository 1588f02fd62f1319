//! The retry policy: when a failed delivery is tried again, on which delay tier, and when it stops.
//!
//! Each delay of the schedule is a tier, and each tier is one Kafka topic
//! (`<prefix>retry.<tier>`), so every task in a topic waits the same delay and the topic is FIFO by
//! due time. The schedule lists the wait before each retry: the first attempt, then one retry per
//! entry, so the default schedule of 12 delays allows 13 attempts over about 3.3 days.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

/// One delay tier: a delay, and the name its topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tier(pub Duration);

impl Tier {
    /// Where held tasks wait (those of a paused endpoint): checked again every second, whatever
    /// the schedule, so a resume takes effect within about two seconds.
    pub const HOLD: Tier = Tier(Duration::from_secs(1));

    /// The topic-safe name: `500ms`, `5s`, `2m`, `24h`.
    pub fn name(&self) -> String {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) {
            format!("{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            format!("{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// When and where a failed delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPlan {
    /// The tier (topic) the task waits on.
    pub tier: Tier,
    /// When the next attempt is due.
    pub due_at: OffsetDateTime,
}

/// Why a policy configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("the retry schedule needs at least one delay")]
    EmptySchedule,
    #[error("retry delays must be at least 1 ms, got {0:?}")]
    TooShort(Duration),
    #[error("the jitter must be between 0 and 0.5, got {0}")]
    BadJitter(f64),
}

/// The retry schedule and its jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let hours = |h: u64| Duration::from_secs(3600 * h);
        Self {
            schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(30),
                hours(1),
                hours(2),
                hours(4),
                hours(8),
                hours(16),
                hours(24),
                hours(24),
            ],
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy from delays (the wait before each retry, in order) and a jitter fraction: each
    /// delay is stretched or shrunk by a random factor in `[1 - jitter, 1 + jitter]`.
    pub fn new(schedule: Vec<Duration>, jitter: f64) -> Result<Self, PolicyError> {
        if schedule.is_empty() {
            return Err(PolicyError::EmptySchedule);
        }
        if let Some(short) = schedule.iter().find(|d| **d < Duration::from_millis(1)) {
            return Err(PolicyError::TooShort(*short));
        }
        if !(0.0..=0.5).contains(&jitter) {
            return Err(PolicyError::BadJitter(jitter));
        }
        Ok(Self { schedule, jitter })
    }

    /// Most attempts a delivery gets: the first, plus one per scheduled delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len() + 1).unwrap_or(u32::MAX)
    }

    /// Every tier, shortest first, without repeats: the retry topics to create and consume.
    pub fn tiers(&self) -> Vec<Tier> {
        let mut tiers: Vec<Tier> = self.schedule.iter().copied().map(Tier).collect();
        tiers.sort();
        tiers.dedup();
        tiers
    }

    /// Every tier topic the services create and read: the schedule's tiers and [`Tier::HOLD`].
    pub fn topic_tiers(&self) -> Vec<Tier> {
        let mut tiers = self.tiers();
        tiers.push(Tier::HOLD);
        tiers.sort();
        tiers.dedup();
        tiers
    }

    /// The tier for a task that must wait `at_least` without spending an attempt (an open
    /// circuit breaker): the smallest topic tier not shorter, else the longest. The task is
    /// then due one full tier delay from now, which keeps the tier in due-time order.
    pub fn tier_for_wait(&self, at_least: Duration) -> Tier {
        let tiers = self.topic_tiers();
        tiers
            .iter()
            .copied()
            .find(|t| t.0 >= at_least)
            .or_else(|| tiers.last().copied())
            .unwrap_or(Tier::HOLD)
    }

    /// The plan after `attempts_made` attempts failed (1 after the first), or `None` when the
    /// delivery has had all it may: the policy's attempts, or fewer if `endpoint_max_attempts`
    /// lowers them. `retry_after` is the endpoint's `Retry-After`: the task then waits on the
    /// smallest tier not shorter than it and is not due before it. A `Retry-After` longer than
    /// the longest tier is capped at that tier: a tier topic is read in order, so one task due
    /// later than its tier's delay would hold back every task behind it (and outlive the topic's
    /// retention); the endpoint that keeps asking for more runs out of attempts instead.
    /// `random` is a number in `[0, 1)` that picks the jitter.
    pub fn plan(
        &self,
        attempts_made: u32,
        endpoint_max_attempts: Option<u32>,
        retry_after: Option<Duration>,
        now: OffsetDateTime,
        random: f64,
    ) -> Option<RetryPlan> {
        let max = endpoint_max_attempts.map_or(self.max_attempts(), |m| m.min(self.max_attempts()));
        if attempts_made == 0 || attempts_made >= max {
            return None;
        }
        let scheduled = self.schedule[(attempts_made - 1) as usize];
        let longest = self.schedule.iter().copied().max().unwrap_or(scheduled);
        // Not tried before the endpoint asked, whatever the jitter, up to the longest tier.
        let floor = retry_after.map_or(Duration::ZERO, |wanted| wanted.min(longest));
        let tier = if floor > scheduled {
            self.tiers()
                .into_iter()
                .find(|t| t.0 >= floor)
                .unwrap_or(Tier(longest))
        } else {
            Tier(scheduled)
        };
        let factor = 1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        let delay = tier.0.mul_f64(factor).max(floor);
        Some(RetryPlan {
            tier,
            due_at: now + delay,
        })
    }
}

/// Parses a schedule such as `5s,30s,2m,1h` (each delay in humantime's syntax).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_delay)
        .collect()
}

/// Parses one delay such as `500ms`, `30s`, `2m`, `1h` or `2d` (humantime's syntax, the one
/// every Hookstream duration is written in), in whole milliseconds, up to 30 days.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(text.trim())
        .map_err(|err| format!("`{text}` is not a delay such as 500ms, 5s, 2m or 1h: {err}"))?;
    if delay.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`{text}`: a delay is a whole number of milliseconds"
        ));
    }
    // A tier is a topic whose retention is its delay plus a margin, and a task waits on it that
    // long: beyond a month the schedule is a typo.
    if delay > MAX_DELAY {
        return Err(format!(
            "`{text}` is longer than a retry delay may be (30 days)"
        ));
    }
    Ok(delay)
}

/// The longest wait before a retry.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);

/// Reads a `Retry-After` header: delay-seconds or an HTTP date, relative to `now`. A date in the
/// past means "now"; anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn short_policy() -> RetryPolicy {
        RetryPolicy::new(parse_schedule("1s,5s,30s").unwrap(), 0.2).unwrap()
    }

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    #[test]
    fn the_default_is_twelve_delays_from_5s_to_24h() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 13);
        let names: Vec<String> = policy.tiers().iter().map(Tier::name).collect();
        assert_eq!(
            names,
            [
                "5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h", "16h", "24h"
            ]
        );
        let total: Duration = policy.schedule.iter().sum();
        assert!(total > Duration::from_secs(3 * 86_400) && total < Duration::from_secs(4 * 86_400));
    }

    #[test]
    fn each_failure_moves_to_the_next_delay() {
        let policy = short_policy();
        let plan = |attempts| policy.plan(attempts, None, None, NOW, 0.5).unwrap();
        // random 0.5 is no jitter at all.
        assert_eq!(
            plan(1),
            RetryPlan {
                tier: Tier(Duration::from_secs(1)),
                due_at: NOW + Duration::from_secs(1)
            }
        );
        assert_eq!(plan(2).tier, Tier(Duration::from_secs(5)));
        assert_eq!(plan(3).due_at, NOW + Duration::from_secs(30));
    }

    #[test]
    fn attempts_end_with_the_schedule_or_the_endpoint_limit() {
        let policy = short_policy();
        assert_eq!(policy.max_attempts(), 4);
        assert!(policy.plan(3, None, None, NOW, 0.5).is_some());
        assert!(
            policy.plan(4, None, None, NOW, 0.5).is_none(),
            "4 attempts made: exhausted"
        );
        assert!(policy.plan(1, Some(2), None, NOW, 0.5).is_some());
        assert!(
            policy.plan(2, Some(2), None, NOW, 0.5).is_none(),
            "the endpoint allows 2"
        );
        assert!(
            policy.plan(3, Some(10), None, NOW, 0.5).is_some(),
            "an endpoint cannot raise the limit"
        );
        assert!(policy.plan(4, Some(10), None, NOW, 0.5).is_none());
        assert!(
            policy.plan(0, None, None, NOW, 0.5).is_none(),
            "nothing failed yet"
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = short_policy();
        let earliest = policy.plan(2, None, None, NOW, 0.0).unwrap().due_at;
        let latest = policy.plan(2, None, None, NOW, 0.999_999).unwrap().due_at;
        assert_eq!(earliest, NOW + Duration::from_secs(4));
        assert!(
            latest > NOW + Duration::from_millis(5990) && latest <= NOW + Duration::from_secs(6)
        );
    }

    #[test]
    fn retry_after_picks_the_smallest_tier_not_shorter_and_is_never_cut_short() {
        let policy = short_policy();
        // After the first failure the schedule says 1s; the endpoint asks for 3s.
        let plan = policy
            .plan(1, None, Some(Duration::from_secs(3)), NOW, 0.0)
            .unwrap();
        assert_eq!(plan.tier, Tier(Duration::from_secs(5)));
        assert_eq!(
            plan.due_at,
            NOW + Duration::from_secs(4),
            "5s with -20% jitter is 4s, over 3s"
        );
        // Longer than every tier: capped at the longest tier (due after its delay, stretched at
        // most by the jitter).
        let plan = policy
            .plan(1, None, Some(Duration::from_secs(100)), NOW, 0.0)
            .unwrap();
        assert_eq!(plan.tier, Tier(Duration::from_secs(30)));
        assert_eq!(plan.due_at, NOW + Duration::from_secs(30));
        // Absurd values (a year, an overflow of `now + delay`, an HTTP date in 9999) likewise.
        let far = SystemTime::UNIX_EPOCH;
        for wanted in [
            Duration::from_secs(31_536_000),
            Duration::from_secs(999_999_999_999),
            Duration::MAX,
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", far).unwrap(),
        ] {
            for random in [0.0, 0.5, 0.999] {
                let plan = policy.plan(1, None, Some(wanted), NOW, random).unwrap();
                assert_eq!(plan.tier, Tier(Duration::from_secs(30)));
                assert!(
                    plan.due_at <= NOW + Duration::from_secs(36),
                    "{wanted:?} is due at {}",
                    plan.due_at
                );
            }
        }
        // Shorter than the schedule's own delay: the schedule's tier, and still not before it.
        let plan = policy
            .plan(2, None, Some(Duration::from_secs(1)), NOW, 0.5)
            .unwrap();
        assert_eq!(plan.tier, Tier(Duration::from_secs(5)));
        let plan = policy
            .plan(2, None, Some(Duration::from_millis(4500)), NOW, 0.0)
            .unwrap();
        assert_eq!(
            plan.due_at,
            NOW + Duration::from_millis(4500),
            "jitter shrank 5s to 4s"
        );
        // On the last retry the schedule already is the longest tier: a capped Retry-After
        // still holds it to the whole tier.
        let plan = policy
            .plan(3, None, Some(Duration::from_secs(100)), NOW, 0.0)
            .unwrap();
        assert_eq!(plan.tier, Tier(Duration::from_secs(30)));
        assert_eq!(plan.due_at, NOW + Duration::from_secs(30));
    }

    #[test]
    fn schedules_and_policies_are_validated() {
        assert_eq!(
            parse_schedule("500ms, 5s,2m,1h").unwrap(),
            vec![
                Duration::from_millis(500),
                Duration::from_secs(5),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert!(parse_schedule("5").is_err());
        assert_eq!(
            parse_schedule("5d").unwrap(),
            vec![Duration::from_secs(5 * 86_400)]
        );
        assert!(parse_schedule("1500us").is_err(), "not whole milliseconds");
        assert!(parse_schedule("fast").is_err());
        assert!(
            parse_schedule("99999999999999999h").is_err(),
            "an overflowing delay is refused, not wrapped"
        );
        assert!(parse_schedule("721h").is_err(), "over 30 days");
        assert_eq!(
            parse_schedule("720h").unwrap(),
            vec![Duration::from_secs(720 * 3600)]
        );
        assert_eq!(
            RetryPolicy::new(vec![], 0.2),
            Err(PolicyError::EmptySchedule)
        );
        assert!(RetryPolicy::new(vec![Duration::ZERO], 0.2).is_err());
        assert!(RetryPolicy::new(vec![Duration::from_secs(1)], 0.9).is_err());
    }

    #[test]
    fn waits_take_the_smallest_tier_that_covers_them() {
        let policy = short_policy(); // tiers 1s (also the hold tier), 5s, 30s
        assert_eq!(
            policy.tier_for_wait(Duration::from_millis(10)),
            Tier(Duration::from_secs(1))
        );
        assert_eq!(
            policy.tier_for_wait(Duration::from_secs(2)),
            Tier(Duration::from_secs(5))
        );
        assert_eq!(
            policy.tier_for_wait(Duration::from_secs(600)),
            Tier(Duration::from_secs(30))
        );
    }

    #[test]
    fn tier_names_are_short_and_topic_safe() {
        assert_eq!(Tier(Duration::from_millis(250)).name(), "250ms");
        assert_eq!(Tier(Duration::from_secs(90)).name(), "90s");
        assert_eq!(Tier(Duration::from_secs(120)).name(), "2m");
        assert_eq!(Tier(Duration::from_secs(86_400)).name(), "24h");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
