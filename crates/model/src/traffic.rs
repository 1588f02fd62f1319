//! The installation's traffic, as the console's overview shows it for all tenants at once.
//!
//! Each dispatcher reports, per minute, how many attempts it made and how many succeeded, and
//! which endpoints' breakers it holds open; the API sums the reports of the last minutes. A
//! report is the running total of one dispatcher's minute, written again as it grows, so
//! writing it twice counts nothing twice. The figures are for watching: counts a dispatcher
//! made in its last seconds before a crash are not reported.

use time::OffsetDateTime;

use crate::ids::EndpointId;

/// Minutes the overview sums: the minute under way and the whole ones before it.
pub const WINDOW_MINUTES: i64 = 5;

/// A dispatcher not heard from for this long has stopped or left: the breakers it reported are
/// no longer counted (its partitions' new owners report theirs).
pub const REPORTER_SILENT_AFTER: time::Duration = time::Duration::seconds(30);

/// The most open breakers one report lists; the overview says when there may be more.
pub const MOST_BREAKERS_REPORTED: usize = 100;

/// What one dispatcher counted in one minute, as last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficReport {
    /// The dispatcher process (one id per start).
    pub reporter: String,
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub attempts: u64,
    pub succeeded: u64,
    /// Endpoints whose breaker the reporter held open (or probing) when it wrote, at most
    /// [`MOST_BREAKERS_REPORTED`].
    pub open_breakers: Vec<EndpointId>,
    /// Whether it held more open than it listed.
    pub more_breakers: bool,
    pub written_at: OffsetDateTime,
}

/// The minute `at` falls in, in minutes since the Unix epoch.
pub fn minute_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(60)
}

/// The first minute the overview sums as of `now`.
pub fn window_start(now: OffsetDateTime) -> i64 {
    minute_of(now) - (WINDOW_MINUTES - 1)
}

/// One minute's attempts, summed over the dispatchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteTotal {
    pub minute: i64,
    pub attempts: u64,
    pub succeeded: u64,
}

/// The installation's last minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSummary {
    /// Seconds the window covers: the whole minutes and the part of this one gone by.
    pub window_seconds: u64,
    pub attempts: u64,
    pub succeeded: u64,
    /// Per minute, oldest first; minutes without attempts included.
    pub minutes: Vec<MinuteTotal>,
    /// Dispatchers heard from within [`REPORTER_SILENT_AFTER`].
    pub reporters: usize,
    /// Endpoints some dispatcher heard from lately holds open, each once, in id order. What a
    /// dispatcher holds may be older than what the store says (the partition moved on): the
    /// API checks each against the store.
    pub open_breakers: Vec<EndpointId>,
    /// Whether some dispatcher held more open than it listed.
    pub more_breakers: bool,
}

impl TrafficSummary {
    /// Successes over attempts; `None` without attempts.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.succeeded as f64 / self.attempts as f64)
    }

    /// Attempts per second over the window.
    pub fn per_second(&self) -> f64 {
        self.attempts as f64 / self.window_seconds.max(1) as f64
    }

    /// Sums `reports` (of any minutes; those outside the window are left out) as of `now`.
    pub fn of(reports: &[TrafficReport], now: OffsetDateTime) -> Self {
        let first = window_start(now);
        let current = minute_of(now);
        let mut minutes: Vec<MinuteTotal> = (first..=current)
            .map(|minute| MinuteTotal {
                minute,
                attempts: 0,
                succeeded: 0,
            })
            .collect();
        for report in reports {
            let Ok(index) = usize::try_from(report.minute - first) else {
                continue;
            };
            if let Some(total) = minutes.get_mut(index) {
                total.attempts += report.attempts;
                total.succeeded += report.succeeded;
            }
        }
        // Each reporter's newest report says what it holds open now.
        let mut newest: std::collections::HashMap<&str, &TrafficReport> = Default::default();
        for report in reports {
            let slot = newest.entry(&report.reporter).or_insert(report);
            if report.written_at > slot.written_at {
                *slot = report;
            }
        }
        let heard: Vec<&TrafficReport> = newest
            .into_values()
            .filter(|report| now - report.written_at <= REPORTER_SILENT_AFTER)
            .collect();
        let mut open_breakers: Vec<EndpointId> = heard
            .iter()
            .flat_map(|report| report.open_breakers.iter().copied())
            .collect();
        open_breakers.sort();
        open_breakers.dedup();
        let into_minute = (now.unix_timestamp() - current * 60).clamp(0, 59) as u64 + 1;
        Self {
            window_seconds: (WINDOW_MINUTES as u64 - 1) * 60 + into_minute,
            attempts: minutes.iter().map(|m| m.attempts).sum(),
            succeeded: minutes.iter().map(|m| m.succeeded).sum(),
            minutes,
            reporters: heard.len(),
            more_breakers: heard.iter().any(|report| report.more_breakers),
            open_breakers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn report(reporter: &str, minute: i64, attempts: u64, written: i64) -> TrafficReport {
        TrafficReport {
            reporter: reporter.into(),
            minute,
            attempts,
            succeeded: attempts / 2,
            open_breakers: Vec::new(),
            more_breakers: false,
            written_at: at(written),
        }
    }

    #[test]
    fn sums_the_dispatchers_minutes_in_the_window_and_leaves_older_ones_out() {
        // Now: 10 s into minute 100; the window is minutes 96 to 100.
        let now = at(100 * 60 + 10);
        let reports = [
            report("a", 95, 1_000, 96 * 60),
            report("a", 96, 10, 97 * 60),
            report("b", 96, 20, 97 * 60),
            report("a", 100, 4, 100 * 60 + 9),
            report("b", 101, 7, 100 * 60 + 9),
        ];
        let summary = TrafficSummary::of(&reports, now);
        assert_eq!(summary.minutes.len(), 5);
        assert_eq!(summary.minutes[0].minute, 96);
        assert_eq!(summary.minutes[0].attempts, 30);
        assert_eq!(summary.minutes[4].attempts, 4);
        assert_eq!(summary.attempts, 34);
        assert_eq!(summary.succeeded, 5 + 10 + 2);
        assert_eq!(summary.window_seconds, 4 * 60 + 11);
        assert!((summary.per_second() - 34.0 / 251.0).abs() < 1e-9);
        assert_eq!(summary.reporters, 2);
    }

    #[test]
    fn open_breakers_come_from_each_dispatchers_newest_report_while_it_is_heard_from() {
        let now = at(100 * 60 + 50);
        let one = EndpointId::generate();
        let two = EndpointId::generate();
        let mut old = report("a", 99, 1, 99 * 60 + 30);
        old.open_breakers = vec![one];
        // a's newest report: the breaker closed since.
        let mut newer = report("a", 100, 1, 100 * 60 + 45);
        newer.open_breakers = vec![two];
        // b stopped a minute ago: what it held is not counted.
        let mut gone = report("b", 99, 1, 99 * 60 + 5);
        gone.open_breakers = vec![one];
        gone.more_breakers = true;
        let mut also = report("c", 100, 0, 100 * 60 + 40);
        also.open_breakers = vec![two];
        let summary = TrafficSummary::of(&[old, newer, gone, also], now);
        assert_eq!(summary.open_breakers, vec![two]);
        assert!(!summary.more_breakers);
        assert_eq!(summary.reporters, 2);
    }

    #[test]
    fn nothing_reported_is_no_attempts_and_no_rate() {
        let summary = TrafficSummary::of(&[], at(1_000_000));
        assert_eq!(summary.attempts, 0);
        assert_eq!(summary.success_rate(), None);
        assert_eq!(summary.per_second(), 0.0);
        assert!(summary.minutes.iter().all(|m| m.attempts == 0));
    }
}
