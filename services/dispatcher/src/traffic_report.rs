//! This dispatcher's share of the installation's traffic (see [`hookstream_model::traffic`]):
//! its attempts per minute and the breakers it holds open, written with each health write so
//! the console's overview can sum all dispatchers'.
//!
//! A report holds the minute's running total, so a report written again (after a store error,
//! or as the minute grows) replaces the earlier one instead of adding to it.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use hookstream_model::ids::EndpointId;
use hookstream_model::traffic::{TrafficReport, WINDOW_MINUTES, minute_of};
use hookstream_store::TRAFFIC_KEPT;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    attempts: u64,
    succeeded: u64,
}

/// Attempts counted per minute, and which minutes' reports are not written yet.
pub struct TrafficCounter {
    reporter: String,
    minutes: BTreeMap<i64, Counts>,
    unwritten: BTreeSet<i64>,
    /// Minutes before this are forgotten: an attempt of one (a request that ran for minutes,
    /// a clock stepped back) counts in this one instead, so a report written anew does not
    /// replace the stored total with a smaller one.
    forgotten_before: i64,
}

impl TrafficCounter {
    /// A counter reporting as `reporter` (one name per process start).
    pub fn new(reporter: String) -> Self {
        Self {
            reporter,
            minutes: BTreeMap::new(),
            unwritten: BTreeSet::new(),
            forgotten_before: i64::MIN,
        }
    }

    /// A name for this process's reports: the host (the pod, on Kubernetes) and a random part,
    /// so a restarted dispatcher does not overwrite what it reported before.
    pub fn reporter_name() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "dispatcher".into());
        let mut random = [0u8; 4];
        // Without randomness, the process id tells starts apart nearly as well.
        let random = match getrandom::fill(&mut random) {
            Ok(()) => u32::from_be_bytes(random),
            Err(_) => std::process::id(),
        };
        format!("{host}-{random:08x}")
    }

    /// Counts one request.
    pub fn record(&mut self, at: OffsetDateTime, succeeded: bool) {
        let minute = minute_of(at).max(self.forgotten_before);
        let counts = self.minutes.entry(minute).or_default();
        counts.attempts += 1;
        counts.succeeded += u64::from(succeeded);
        self.unwritten.insert(minute);
    }

    /// The reports to write now: each minute counted since the last written report, and the
    /// minute under way in any case (at no attempts, if none), so the overview knows this
    /// dispatcher is running and which breakers it holds open now.
    pub fn due(
        &mut self,
        now: OffsetDateTime,
        open_breakers: &[EndpointId],
        more_breakers: bool,
    ) -> Vec<TrafficReport> {
        let current = minute_of(now);
        // Minutes the overview no longer reads are forgotten once written, and those the store
        // no longer keeps (after a long store outage) unwritten.
        let oldest_kept = minute_of(now - TRAFFIC_KEPT);
        self.unwritten.retain(|minute| *minute > oldest_kept);
        let unwritten = &self.unwritten;
        self.minutes
            .retain(|minute, _| *minute > current - WINDOW_MINUTES || unwritten.contains(minute));
        let first_kept = self.minutes.keys().next().copied().unwrap_or(current);
        self.forgotten_before = self
            .forgotten_before
            .max(first_kept.min(current - WINDOW_MINUTES + 1));
        let mut minutes: BTreeSet<i64> = self.unwritten.clone();
        minutes.insert(current);
        minutes
            .into_iter()
            .map(|minute| {
                let counts = self.minutes.get(&minute).copied().unwrap_or_default();
                TrafficReport {
                    reporter: self.reporter.clone(),
                    minute,
                    attempts: counts.attempts,
                    succeeded: counts.succeeded,
                    open_breakers: open_breakers.to_vec(),
                    more_breakers,
                    written_at: now,
                }
            })
            .collect()
    }

    /// Marks `reports` written; a minute counted again since they were made stays due.
    pub fn written(&mut self, reports: &[TrafficReport]) {
        for report in reports {
            let counts = self
                .minutes
                .get(&report.minute)
                .copied()
                .unwrap_or_default();
            if counts.attempts == report.attempts {
                self.unwritten.remove(&report.minute);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    #[test]
    fn reports_carry_running_totals_so_writing_again_counts_nothing_twice() {
        let mut counter = TrafficCounter::new("d1".into());
        counter.record(at(60 * 10 + 1), true);
        counter.record(at(60 * 10 + 2), false);
        let first = counter.due(at(60 * 10 + 5), &[], false);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].minute, first[0].attempts, first[0].succeeded),
            (10, 2, 1)
        );
        // The write failed: nothing marked; the next report of the minute holds all of it.
        counter.record(at(60 * 10 + 6), true);
        let again = counter.due(at(60 * 10 + 10), &[], false);
        assert_eq!((again[0].attempts, again[0].succeeded), (3, 2));
        counter.written(&again);
        assert!(counter.unwritten.is_empty());
    }

    #[test]
    fn a_minute_counted_while_its_report_was_written_stays_due() {
        let mut counter = TrafficCounter::new("d1".into());
        counter.record(at(60 * 10 + 1), true);
        let due = counter.due(at(60 * 10 + 58), &[], false);
        counter.record(at(60 * 10 + 59), true);
        counter.written(&due);
        // The next write is in the next minute: minute 10 is written again, with both.
        let next = counter.due(at(60 * 11 + 3), &[], false);
        let minutes: Vec<(i64, u64)> = next.iter().map(|r| (r.minute, r.attempts)).collect();
        assert_eq!(minutes, vec![(10, 2), (11, 0)]);
    }

    #[test]
    fn the_minute_under_way_is_reported_with_the_open_breakers_even_when_quiet() {
        let mut counter = TrafficCounter::new("d1".into());
        let open = [EndpointId::generate()];
        let due = counter.due(at(60 * 20), &open, true);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].minute, 20);
        assert_eq!(due[0].attempts, 0);
        assert_eq!(due[0].open_breakers, open);
        assert!(due[0].more_breakers);
    }

    #[test]
    fn written_minutes_the_overview_no_longer_reads_are_forgotten() {
        let mut counter = TrafficCounter::new("d1".into());
        counter.record(at(60 * 10), true);
        let due = counter.due(at(60 * 10 + 1), &[], false);
        counter.written(&due);
        counter.due(at(60 * 30), &[], false);
        assert!(!counter.minutes.contains_key(&10));
        // A request that began in minute 10 ends now: it counts in the oldest minute kept, so
        // minute 10's stored total is not written again as 1.
        counter.record(at(60 * 10 + 30), true);
        let due = counter.due(at(60 * 30 + 5), &[], false);
        assert!(due.iter().all(|r| r.minute >= 26), "{due:?}");
        assert_eq!(due.iter().map(|r| r.attempts).sum::<u64>(), 1);
    }

    #[test]
    fn minutes_the_store_no_longer_keeps_are_not_written_after_an_outage() {
        let mut counter = TrafficCounter::new("d1".into());
        counter.record(at(60 * 10), true);
        // Three hours of failed writes later.
        let due = counter.due(at(60 * (10 + 180)), &[], false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].minute, 190);
    }
}
