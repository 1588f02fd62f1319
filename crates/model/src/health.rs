//! How an endpoint has been doing: its attempts' success and latency over rolling windows, its
//! current run of failures, its last success and last failure. The dispatcher that owns the
//! endpoint's partition keeps it and writes it to the store now and then; the API reads it and
//! sums the windows as of the moment it is asked, so a quiet endpoint's figures age out though
//! nothing new is written.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::delivery::AttemptClass;
use crate::traffic::minute_of;

/// The windows shown, by name and length in minutes. Counts are kept per minute: a window
/// covers the minute under way and the whole minutes before it.
pub const WINDOWS: [(&str, i64); 2] = [("5m", 5), ("1h", 60)];

/// Minutes of counts kept: the longest window.
const KEPT_MINUTES: i64 = 60;

/// Upper bounds (ms) of the latency buckets; one more bucket takes the slower ones.
pub const LATENCY_BOUNDS_MS: [u64; 11] =
    [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// One endpoint's health, as kept and as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// Minutes with attempts, oldest first, none older than [`KEPT_MINUTES`].
    minutes: Vec<MinuteCounts>,
    /// Attempts failed in a row since the last success.
    pub failure_streak: u64,
    /// When the current run of failures began.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub failing_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_failure: Option<LastFailure>,
    /// The warning of its health rules in force (see [`crate::health_rules`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Notice>,
    /// Set when its health rules disabled the endpoint (not when an operator or a `410` did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_by_rules: Option<Notice>,
}

/// A change its health rules made: when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: String,
}

/// The attempts of one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MinuteCounts {
    /// Minutes since the Unix epoch.
    minute: i64,
    attempts: u64,
    succeeded: u64,
    /// Attempts per latency bucket (see [`LATENCY_BOUNDS_MS`]).
    latency: Vec<u64>,
}

/// The most recent failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub class: AttemptClass,
}

/// One window's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    pub window: &'static str,
    pub attempts: u64,
    pub succeeded: u64,
    /// Successes over attempts; `None` without attempts.
    pub success_rate: Option<f64>,
    /// Latency percentiles (p50, p90, p99) in ms, as the upper bound of the bucket they fall
    /// in; `None` without attempts, or (for the slowest bucket) past the last bound.
    pub latency_ms: [Option<u64>; 3],
}

impl EndpointHealth {
    /// Counts one attempt that reached (or tried to reach) the endpoint; `latency_ms` is
    /// `None` for one refused before any request (a blocked address), which has no latency.
    pub fn record(&mut self, at: OffsetDateTime, latency_ms: Option<u64>, class: AttemptClass) {
        let minute = minute_of(at);
        self.forget_before(minute - KEPT_MINUTES + 1);
        let counts = match self.minutes.last_mut() {
            // A clock stepping back counts in the newest minute kept: order stays.
            Some(last) if last.minute >= minute => last,
            _ => {
                self.minutes.push(MinuteCounts {
                    minute,
                    attempts: 0,
                    succeeded: 0,
                    latency: vec![0; LATENCY_BOUNDS_MS.len() + 1],
                });
                // Just pushed: `last_mut` is that minute.
                let Some(last) = self.minutes.last_mut() else {
                    return;
                };
                last
            }
        };
        counts.attempts += 1;
        if let Some(latency_ms) = latency_ms {
            let bucket = LATENCY_BOUNDS_MS
                .iter()
                .position(|bound| latency_ms <= *bound)
                .unwrap_or(LATENCY_BOUNDS_MS.len());
            if let Some(slot) = counts.latency.get_mut(bucket) {
                *slot += 1;
            }
        }
        // Requests run side by side: the last to finish is not always the last started.
        if class.is_success() {
            counts.succeeded += 1;
            self.failure_streak = 0;
            self.failing_since = None;
            self.last_success_at = self.last_success_at.max(Some(at));
        } else {
            self.failure_streak += 1;
            self.failing_since.get_or_insert(at);
            if self.last_failure.as_ref().is_none_or(|last| last.at <= at) {
                self.last_failure = Some(LastFailure { at, class });
            }
        }
    }

    /// Drops the minutes no window reaches any more as of `now`.
    pub fn prune(&mut self, now: OffsetDateTime) {
        self.forget_before(minute_of(now) - KEPT_MINUTES + 1);
    }

    fn forget_before(&mut self, first_kept: i64) {
        let stale = self
            .minutes
            .iter()
            .take_while(|counts| counts.minute < first_kept)
            .count();
        self.minutes.drain(..stale);
    }

    /// Each of [`WINDOWS`] as of `now`.
    pub fn windows(&self, now: OffsetDateTime) -> Vec<WindowSummary> {
        let current = minute_of(now);
        WINDOWS
            .iter()
            .map(|(name, minutes)| {
                let first = current - minutes + 1;
                let mut attempts = 0;
                let mut succeeded = 0;
                let mut latency = vec![0_u64; LATENCY_BOUNDS_MS.len() + 1];
                for counts in self.minutes.iter().filter(|c| c.minute >= first) {
                    attempts += counts.attempts;
                    succeeded += counts.succeeded;
                    for (sum, n) in latency.iter_mut().zip(&counts.latency) {
                        *sum += n;
                    }
                }
                let timed = latency.iter().sum();
                WindowSummary {
                    window: name,
                    attempts,
                    succeeded,
                    success_rate: (attempts > 0).then(|| ratio(succeeded, attempts)),
                    latency_ms: [0.5, 0.9, 0.99].map(|q| percentile(&latency, timed, q)),
                }
            })
            .collect()
    }

    /// Takes over `earlier`, what the endpoint's previous owner (another dispatcher, or this
    /// one before a restart) stored, under what this one recorded since. Counts of the same
    /// minute add up; a success recorded here ends the earlier run of failures, else that run
    /// goes on.
    pub fn continue_from(&mut self, earlier: EndpointHealth) {
        let mine = std::mem::take(&mut self.minutes);
        let mut merged: Vec<MinuteCounts> = Vec::with_capacity(mine.len() + earlier.minutes.len());
        let (mut a, mut b) = (
            earlier.minutes.into_iter().peekable(),
            mine.into_iter().peekable(),
        );
        loop {
            let next = match (a.peek().map(|c| c.minute), b.peek().map(|c| c.minute)) {
                (Some(x), Some(y)) if x == y => match (a.next(), b.next()) {
                    (Some(mut x), Some(y)) => {
                        x.attempts += y.attempts;
                        x.succeeded += y.succeeded;
                        for (sum, n) in x.latency.iter_mut().zip(&y.latency) {
                            *sum += n;
                        }
                        Some(x)
                    }
                    _ => None,
                },
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(_), None) => a.next(),
                (_, Some(_)) => b.next(),
                (None, None) => None,
            };
            let Some(next) = next else {
                break;
            };
            merged.push(next);
        }
        self.minutes = merged;
        if self.last_success_at.is_none() {
            self.failure_streak += earlier.failure_streak;
            if earlier.failure_streak > 0 {
                self.failing_since = earlier.failing_since.or(self.failing_since);
            }
            self.last_success_at = earlier.last_success_at;
        }
        if self.last_failure.is_none() {
            self.last_failure = earlier.last_failure;
        }
        if self.warning.is_none() {
            self.warning = earlier.warning;
        }
        if self.disabled_by_rules.is_none() {
            self.disabled_by_rules = earlier.disabled_by_rules;
        }
    }

    /// Starts the run of failures over from `since` (what was counted since the last write),
    /// for an endpoint enabled again after its rules disabled it: the failures before do not
    /// count against it. The windows keep their counts.
    pub fn start_over(&mut self, since: &EndpointHealth) {
        self.failure_streak = since.failure_streak;
        self.failing_since = since.failing_since;
        self.disabled_by_rules = None;
        self.warning = None;
    }

    /// Attempts and successes over the last `minutes` (the minute under way included).
    pub fn attempts_over(&self, now: OffsetDateTime, minutes: u32) -> (u64, u64) {
        let first = minute_of(now) - i64::from(minutes) + 1;
        self.minutes
            .iter()
            .filter(|counts| counts.minute >= first)
            .fold((0, 0), |(attempts, succeeded), counts| {
                (attempts + counts.attempts, succeeded + counts.succeeded)
            })
    }

    /// Whether anything was ever recorded.
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty() && self.last_success_at.is_none() && self.last_failure.is_none()
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    part as f64 / whole as f64
}

/// The upper bound of the bucket holding the `q` quantile; `None` without attempts or past the
/// last bound.
fn percentile(buckets: &[u64], total: u64, q: f64) -> Option<u64> {
    if total == 0 {
        return None;
    }
    // The rank of the quantile, counting from 1.
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (n, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return LATENCY_BOUNDS_MS.get(n).copied();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_window_counts_only_its_own_minutes() {
        let mut health = EndpointHealth::default();
        // Twenty minutes ago: in the hour, not in the five minutes.
        for _ in 0..10 {
            health.record(at(0), Some(20), AttemptClass::Http5xxRetryable);
        }
        for _ in 0..30 {
            health.record(at(20 * 60), Some(4), AttemptClass::Http2xxDelivered);
        }
        let windows = health.windows(at(20 * 60 + 30));
        assert_eq!(windows[0].window, "5m");
        assert_eq!((windows[0].attempts, windows[0].succeeded), (30, 30));
        assert_eq!(windows[0].success_rate, Some(1.0));
        assert_eq!(windows[0].latency_ms, [Some(5), Some(5), Some(5)]);
        assert_eq!((windows[1].attempts, windows[1].succeeded), (40, 30));
        assert_eq!(windows[1].success_rate, Some(0.75));
        // 30 of 40 within 5 ms, the rest within 25 ms.
        assert_eq!(windows[1].latency_ms, [Some(5), Some(25), Some(25)]);
        // An hour and more later, nothing is left in either window, nor kept.
        let windows = health.windows(at(20 * 60 + 3600));
        assert!(
            windows
                .iter()
                .all(|w| w.attempts == 0 && w.success_rate.is_none())
        );
        health.record(at(20 * 60 + 3600), Some(4), AttemptClass::Http2xxDelivered);
        assert_eq!(health.minutes.len(), 1);
    }

    #[test]
    fn the_streak_counts_failures_since_the_last_success() {
        let mut health = EndpointHealth::default();
        health.record(at(0), Some(10), AttemptClass::Http2xxDelivered);
        health.record(at(1), Some(10), AttemptClass::Timeout);
        health.record(at(2), Some(10), AttemptClass::Http5xxRetryable);
        assert_eq!(health.failure_streak, 2);
        assert_eq!(health.failing_since, Some(at(1)));
        assert_eq!(health.last_success_at, Some(at(0)));
        assert_eq!(
            health.last_failure,
            Some(LastFailure {
                at: at(2),
                class: AttemptClass::Http5xxRetryable
            })
        );
        health.record(at(3), Some(10), AttemptClass::Http2xxDelivered);
        assert_eq!((health.failure_streak, health.failing_since), (0, None));
        // The last failure stays known after the recovery.
        assert_eq!(health.last_failure.as_ref().map(|f| f.at), Some(at(2)));
    }

    #[test]
    fn a_new_owner_goes_on_from_what_the_last_one_stored() {
        let mut stored = EndpointHealth::default();
        stored.record(at(0), Some(10), AttemptClass::Http2xxDelivered);
        stored.record(at(30), Some(10), AttemptClass::Timeout);
        stored.record(at(90), Some(10), AttemptClass::Timeout);
        // The new owner's own failures in the same minute and the next: one run of four.
        let mut mine = EndpointHealth::default();
        mine.record(at(100), Some(10), AttemptClass::NetworkError);
        mine.record(at(200), Some(10), AttemptClass::NetworkError);
        mine.continue_from(stored.clone());
        assert_eq!(mine.failure_streak, 4);
        assert_eq!(mine.failing_since, Some(at(30)));
        assert_eq!(mine.last_success_at, Some(at(0)));
        assert_eq!(mine.last_failure.as_ref().map(|f| f.at), Some(at(200)));
        let hour = &mine.windows(at(200))[1];
        assert_eq!((hour.attempts, hour.succeeded), (5, 1));
        assert_eq!(mine.minutes.len(), 3);
        // A success of the new owner's ends the stored run.
        let mut recovered = EndpointHealth::default();
        recovered.record(at(100), Some(10), AttemptClass::Http2xxDelivered);
        recovered.continue_from(stored);
        assert_eq!(
            (recovered.failure_streak, recovered.failing_since),
            (0, None)
        );
        assert_eq!(recovered.last_failure.as_ref().map(|f| f.at), Some(at(90)));
    }

    #[test]
    fn latency_past_the_last_bound_has_no_figure() {
        let mut health = EndpointHealth::default();
        health.record(at(0), Some(30_000), AttemptClass::Timeout);
        assert_eq!(health.windows(at(0))[0].latency_ms, [None, None, None]);
        // A refusal before any request is a failed attempt without a latency.
        health.record(at(0), None, AttemptClass::DestinationBlocked);
        health.record(at(0), Some(3), AttemptClass::Http2xxDelivered);
        let window = &health.windows(at(0))[0];
        assert_eq!((window.attempts, window.succeeded), (3, 1));
        assert_eq!(window.latency_ms, [Some(5), None, None]);
    }

    #[test]
    fn it_survives_a_round_trip_through_json() {
        let mut health = EndpointHealth::default();
        health.record(at(0), Some(7), AttemptClass::Http2xxDelivered);
        health.record(at(61), Some(700), AttemptClass::Gone);
        let text = serde_json::to_string(&health).unwrap_or_default();
        let back: EndpointHealth = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, health);
        assert!(!back.is_empty());
    }
}
