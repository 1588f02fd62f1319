//! A consumed task on its way through a lane, and the news that it is done, which the consume
//! loop waits for before its offset may be committed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::Timestamp;
use tokio::sync::mpsc::UnboundedSender;

use hookstream_model::ids::EndpointId;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::telemetry::TraceContext;

use crate::lanes::LaneId;
use crate::metrics;

/// One consumed task on its way through a lane.
pub(crate) struct Job {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The partition's assignment it was read in.
    pub(crate) generation: u64,
    /// Its record's payload size, counted against `max_in_flight_bytes`.
    pub(crate) bytes: usize,
    pub(crate) task: DeliveryTask,
    /// The trace the record carried (ingest's, or the retry hop's).
    pub(crate) trace: TraceContext,
    /// When its record was written (its timestamp, on this process's clock; when it was read
    /// if that is unknown or ahead): a batch waits at most `max_wait` from its first job's
    /// writing, so a task read again after a restart does not start its wait over.
    pub(crate) written_at: tokio::time::Instant,
    /// Whether `written_at` is its record's create time (known, and not ahead of our clock):
    /// only then can a hold tell how late the partition is.
    pub(crate) written_at_known: bool,
}

/// A job whose outcome is durable.
pub(crate) struct Done {
    /// The lane it went through; none for a task that never reached one (undecodable, parked).
    pub(crate) lane: Option<(EndpointId, LaneId)>,
    /// Its task's endpoint; none for a task that did not decode.
    pub(crate) endpoint: Option<EndpointId>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) generation: u64,
    pub(crate) bytes: usize,
    /// Whether its outcome is durable, so its offset may be committed. A job given up without
    /// one (its lane stopped, its outcome could not be stored) only frees its place: its offset
    /// stays uncommitted and the task is read again after a restart or rebalance.
    pub(crate) durable: bool,
}

/// The news of a job finishing in a task of its own, sent even should that task die (a panic):
/// a job that never reports keeps its lane open and its endpoint looking stalled for good.
pub(crate) struct Report {
    pub(crate) done: Option<Done>,
    pub(crate) to: UnboundedSender<Done>,
}

impl Report {
    pub(crate) fn send(mut self, durable: bool) {
        if let Some(done) = self.done.take() {
            let _ = self.to.send(Done { durable, ..done });
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = self.to.send(Done {
                durable: false,
                ..done
            });
        }
    }
}

/// How far ahead of ours a writer's clock may be for its create times to count: a little drift
/// between hosts shows as no wait at all.
const CLOCK_SLACK_MS: i64 = 1000;

/// How long ago a record was written, by its create time; none for a record without one, or
/// whose writer's clock is further ahead of ours than [`CLOCK_SLACK_MS`] (its times cannot be
/// trusted, and a hold must not take them for fresh).
pub(crate) fn record_age(written: Timestamp) -> Option<Duration> {
    let written = written.to_millis()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let age_ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX) - written;
    if age_ms < -CLOCK_SLACK_MS {
        return None;
    }
    Some(Duration::from_millis(u64::try_from(age_ms).unwrap_or(0)))
}

/// When a record of `age` was written, as an instant of this process's clock (now, when its
/// age is unknown).
pub(crate) fn written_at(age: Option<Duration>) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_sub(age.unwrap_or_default()).unwrap_or(now)
}

/// Records how long a task waited in Kafka, from the record's create time.
pub(crate) fn observe_queue_time(age: Option<Duration>) {
    if let Some(age) = age {
        metrics::TASK_QUEUE_SECONDS.observe(age.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_time_far_ahead_of_our_clock_gives_no_age() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |now| i64::try_from(now.as_millis()).unwrap_or(i64::MAX));
        let age = |ms| record_age(Timestamp::CreateTime(ms));
        assert!(age(now_ms - 5_000).is_some_and(|age| age >= Duration::from_secs(5)));
        assert_eq!(
            age(now_ms + 500),
            Some(Duration::ZERO),
            "a little drift is no wait"
        );
        assert_eq!(age(now_ms + 60_000), None, "a clock a minute fast");
        assert_eq!(record_age(Timestamp::NotAvailable), None);
    }
}
