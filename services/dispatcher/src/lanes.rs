//! Per-endpoint lanes: an endpoint's tasks go out in partition order, one after another (or
//! up to its `max_in_flight` at once when it takes them in any order), while different
//! endpoints' tasks go out side by side. Each lane also knows how far behind its
//! endpoint is, so the consumer can park the tasks of one that does not keep up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::error::SendError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use hookstream_model::ids::EndpointId;

use crate::unrecorded::Unrecorded;

/// Which opening of an endpoint's lane a job went through. A lane whose worker stopped is
/// replaced; the old lane's late news must not count against its replacement.
pub type LaneId = u64;

/// How much of each new interval between finished jobs goes into the lane's average.
const SMOOTHING: f64 = 0.2;

/// A lane's own clock, stopped by its worker while the job it works on waits for a claim held
/// elsewhere (a dispatcher killed with the claim out: the claim runs out with its lease). That
/// wait says nothing of the endpoint's pace; counted as a stall, it would park the jobs queued
/// behind the waiting one, and they would go out after later ones.
#[derive(Debug, Default)]
pub struct Stopwatch {
    state: Mutex<Stopped>,
}

#[derive(Debug, Default)]
struct Stopped {
    /// Since when it is stopped, if it is.
    since: Option<Instant>,
    /// How long it was stopped since the lane last moved, not counting a stop still going on.
    total: Duration,
}

impl Stopwatch {
    fn state(&self) -> std::sync::MutexGuard<'_, Stopped> {
        // Two plain fields: a panic elsewhere cannot leave them half changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the lane's clock (it stays stopped until [`Stopwatch::start`]).
    pub fn stop(&self) {
        let mut state = self.state();
        if state.since.is_none() {
            state.since = Some(Instant::now());
        }
    }

    /// Lets the lane's clock run again.
    pub fn start(&self) {
        let mut state = self.state();
        if let Some(since) = state.since.take() {
            state.total += since.elapsed();
        }
    }

    /// How long the clock stood still since the lane last moved, up to `now`.
    fn stopped(&self, now: Instant) -> Duration {
        let state = self.state();
        state.total
            + state
                .since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Stops the lane's clock until the returned guard is dropped.
    pub fn stop_until_dropped(self: &Arc<Self>) -> StoppedClock {
        self.stop();
        StoppedClock(Arc::clone(self))
    }

    /// Whether the clock stands still now.
    fn is_stopped(&self) -> bool {
        self.state().since.is_some()
    }

    /// The lane moved at `now`: what stood still before is forgotten.
    fn moved(&self, now: Instant) {
        let mut state = self.state();
        state.total = Duration::ZERO;
        if state.since.is_some() {
            state.since = Some(now);
        }
    }
}

/// A lane's clock stopped for as long as this lives.
pub struct StoppedClock(Arc<Stopwatch>);

impl Drop for StoppedClock {
    fn drop(&mut self) {
        self.0.start();
    }
}

struct Lane<J> {
    id: LaneId,
    stopwatch: Arc<Stopwatch>,
    /// Its successes still being recorded: handed on to a lane that replaces it.
    unrecorded: Arc<Unrecorded>,
    queue: UnboundedSender<J>,
    /// Unfinished jobs (waiting or being worked on), and their bytes.
    pending: usize,
    bytes: usize,
    /// When the lane last moved: it opened, a job finished, or sending resumed.
    last_progress: Instant,
    /// The smoothed time between finished jobs; none before the first.
    per_job: Option<Duration>,
}

impl<J> Lane<J> {
    /// How long since the lane last moved, not counting while its clock stood still.
    fn stalled(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_progress)
            .saturating_sub(self.stopwatch.stopped(now))
    }

    /// How long a job queued at `now` would wait before its turn: the jobs ahead of it at the
    /// lane's pace. Until a job has finished the pace is unknown, and the time the lane has been
    /// going stands in for it; either way, a lane stalled for longer than its pace is taken at
    /// the pace of the stall, and never faster than `slowest_pace` (the endpoint's rate limit).
    fn behind(&self, now: Instant, slowest_pace: Duration) -> Duration {
        let stalled = self.stalled(now);
        let pace = self.per_job.map_or(stalled, |per_job| per_job.max(stalled));
        pace.max(slowest_pace)
            .saturating_mul(u32::try_from(self.pending).unwrap_or(u32::MAX))
    }
}

/// The open lanes, one per endpoint with unfinished jobs. Owned by the consumer loop alone, so
/// opening, feeding and closing a lane cannot race.
pub struct Lanes<J> {
    lanes: HashMap<EndpointId, Lane<J>>,
    next_id: LaneId,
    /// Since when sending is paused (the kill switch): the lanes' clocks stand still.
    paused_since: Option<Instant>,
}

impl<J> Default for Lanes<J> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            next_id: 0,
            paused_since: None,
        }
    }
}

impl<J> Lanes<J> {
    /// Queues `job` (of `bytes`) behind the endpoint's earlier jobs. When the endpoint had no
    /// open lane, or its worker has stopped, a lane is opened and its id and receiving end
    /// returned: the caller starts a worker on it, which takes jobs in order until the lane is
    /// closed, and reports each finished job with that id.
    pub fn push(
        &mut self,
        endpoint: EndpointId,
        job: J,
        bytes: usize,
    ) -> Option<(LaneId, UnboundedReceiver<J>)> {
        let (job, unrecorded) = match self.lanes.get_mut(&endpoint) {
            Some(lane) => match lane.queue.send(job) {
                Ok(()) => {
                    lane.pending += 1;
                    lane.bytes += bytes;
                    return None;
                }
                // The lane's worker is gone; replace the lane. The successes of its jobs still
                // being recorded count against the new one too.
                Err(SendError(job)) => (job, Arc::clone(&lane.unrecorded)),
            },
            // A lane closes only once all its jobs are finished, their records written.
            None => (job, Arc::default()),
        };
        let id = self.next_id;
        self.next_id += 1;
        let (queue, receiver) = unbounded_channel();
        // A fresh channel whose receiver we hold accepts the job.
        let _ = queue.send(job);
        let lane = Lane {
            id,
            stopwatch: Arc::default(),
            unrecorded,
            queue,
            pending: 1,
            bytes,
            last_progress: self.now(),
            per_job: None,
        };
        self.lanes.insert(endpoint, lane);
        Some((id, receiver))
    }

    /// Notes that a job of `bytes` went through lane `id` of `endpoint`; the lane closes when
    /// none is left, which ends its worker. News of a lane since replaced is ignored.
    pub fn finished(&mut self, endpoint: EndpointId, id: LaneId, bytes: usize) {
        let now = self.now();
        let Some(lane) = self.lanes.get_mut(&endpoint) else {
            return;
        };
        if lane.id != id {
            return;
        }
        // A job that finishes while sending is paused says nothing of the endpoint's pace.
        if self.paused_since.is_none() {
            let interval = lane.stalled(now);
            lane.per_job = Some(match lane.per_job {
                None => interval,
                Some(average) => average.mul_f64(1.0 - SMOOTHING) + interval.mul_f64(SMOOTHING),
            });
        }
        lane.last_progress = now;
        lane.stopwatch.moved(now);
        lane.pending = lane.pending.saturating_sub(1);
        lane.bytes = lane.bytes.saturating_sub(bytes);
        if lane.pending == 0 {
            self.lanes.remove(&endpoint);
        }
    }

    /// The count of the successes of the endpoint's lane still being recorded (for its worker,
    /// once the lane is opened).
    pub fn unrecorded(&self, endpoint: EndpointId) -> Option<Arc<Unrecorded>> {
        self.lanes
            .get(&endpoint)
            .map(|lane| Arc::clone(&lane.unrecorded))
    }

    /// The stopwatch of the endpoint's lane (for its worker, once the lane is opened).
    pub fn stopwatch(&self, endpoint: EndpointId) -> Option<Arc<Stopwatch>> {
        self.lanes
            .get(&endpoint)
            .map(|lane| Arc::clone(&lane.stopwatch))
    }

    /// The endpoint's open lane, unless its worker has stopped (it is replaced at the next push).
    fn live(&self, endpoint: EndpointId) -> Option<&Lane<J>> {
        self.lanes
            .get(&endpoint)
            .filter(|lane| !lane.queue.is_closed())
    }

    /// How many of the endpoint's jobs are unfinished (waiting or being worked on).
    pub fn pending(&self, endpoint: EndpointId) -> usize {
        self.live(endpoint).map_or(0, |lane| lane.pending)
    }

    /// The bytes of the endpoint's unfinished jobs.
    pub fn bytes(&self, endpoint: EndpointId) -> usize {
        self.live(endpoint).map_or(0, |lane| lane.bytes)
    }

    /// How long a job of the endpoint queued now would wait for its turn: its backlog at the
    /// pace its jobs have been finishing, or, when that is longer, how long the lane has gone
    /// without finishing one. An endpoint that keeps up is not behind however deep its lane.
    /// `slowest_pace` is the least time a job can take there (its rate limit allows one per
    /// period), known before the lane has shown it.
    pub fn behind(&self, endpoint: EndpointId, slowest_pace: Duration) -> Duration {
        let now = self.now();
        self.live(endpoint)
            .map_or(Duration::ZERO, |lane| lane.behind(now, slowest_pace))
    }

    /// Whether the endpoint's whole backlog would go out within `limit`: the lane has finished
    /// a job (or opened) within `limit`, and its backlog at its pace (never faster than
    /// `slowest_pace`) takes no longer. Until a job has finished the pace is unknown and only
    /// the first holds. Unlike [`Lanes::behind`], a short gap between finished jobs is not
    /// taken as the lane's pace: at a high rate such gaps are noise. A lane waiting for a claim
    /// held elsewhere (its clock stopped) does not drain at all: a partition held behind it
    /// would hold up the partition's other endpoints for the whole wait.
    pub fn drains_within(
        &self,
        endpoint: EndpointId,
        slowest_pace: Duration,
        limit: Duration,
    ) -> bool {
        let now = self.now();
        self.live(endpoint).is_some_and(|lane| {
            let pace = lane.per_job.unwrap_or_default().max(slowest_pace);
            !lane.stopwatch.is_stopped()
                && now.saturating_duration_since(lane.last_progress) <= limit
                && pace.saturating_mul(u32::try_from(lane.pending).unwrap_or(u32::MAX)) <= limit
        })
    }

    /// Like [`Lanes::behind`] for an endpoint whose jobs go out `per_batch` at a time, a batch
    /// gathering for up to `gather`: the batches ahead of a new job (the one it joins
    /// included), each at the pace of the lane's stall (or `slowest_pace`, a batch being one
    /// request), except that the first may spend `gather` of it filling: a lane only
    /// gathering is not stalled, one with full batches waiting is.
    pub fn behind_in_batches(
        &self,
        endpoint: EndpointId,
        slowest_pace: Duration,
        per_batch: usize,
        gather: Duration,
    ) -> Duration {
        let now = self.now();
        self.live(endpoint).map_or(Duration::ZERO, |lane| {
            let batches = (lane.pending + 1).div_ceil(per_batch.max(1));
            let stalled = lane.stalled(now);
            let first = stalled.saturating_sub(gather).max(slowest_pace);
            let rest = stalled
                .max(slowest_pace)
                .saturating_mul(u32::try_from(batches - 1).unwrap_or(u32::MAX));
            first.saturating_add(rest)
        })
    }

    /// The lanes' clock: it stands still while sending is paused.
    fn now(&self) -> Instant {
        self.paused_since.unwrap_or_else(Instant::now)
    }

    /// Stops the lanes' clock while sending is paused (the kill switch), or starts it again, so
    /// the pause is not taken for slow endpoints. Each lane keeps the pace it had.
    pub fn pause_clocks(&mut self, paused: bool) {
        match (paused, self.paused_since) {
            (true, None) => self.paused_since = Some(Instant::now()),
            (false, Some(since)) => {
                let paused_for = since.elapsed();
                for lane in self.lanes.values_mut() {
                    lane.last_progress += paused_for;
                }
                self.paused_since = None;
            }
            _ => {}
        }
    }

    /// Endpoints with unfinished jobs.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lanes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_lane_per_endpoint_in_order_closing_when_drained() {
        let mut lanes = Lanes::default();
        let a = EndpointId::generate();
        let b = EndpointId::generate();
        let (a_id, mut a_rx) = lanes.push(a, 1, 10).expect("a new lane for a");
        assert!(
            lanes.push(a, 2, 20).is_none(),
            "a's second job joins its lane"
        );
        assert_eq!((lanes.pending(a), lanes.bytes(a)), (2, 30));
        let (b_id, mut b_rx) = lanes.push(b, 10, 1).expect("a new lane for b");
        assert_eq!(lanes.open(), 2);

        assert_eq!(a_rx.recv().await, Some(1));
        assert_eq!(a_rx.recv().await, Some(2));
        assert_eq!(b_rx.recv().await, Some(10));

        lanes.finished(a, a_id, 10);
        assert_eq!(lanes.open(), 2, "a still has a job in flight");
        assert_eq!(lanes.bytes(a), 20);
        lanes.finished(a, a_id, 20);
        lanes.finished(b, b_id, 1);
        assert_eq!(lanes.open(), 0);
        assert_eq!(a_rx.recv().await, None, "a closed lane ends its worker");

        // A later job for a opens a new lane.
        assert!(lanes.push(a, 3, 1).is_some());
    }

    #[tokio::test]
    async fn a_lane_whose_worker_stopped_is_replaced_and_its_late_news_ignored() {
        let mut lanes = Lanes::default();
        let a = EndpointId::generate();
        let (old, old_rx) = lanes.push(a, 1, 1).expect("a new lane");
        assert!(lanes.push(a, 2, 1).is_none());
        drop(old_rx);
        assert_eq!(
            lanes.pending(a),
            0,
            "a stopped worker's jobs count for nothing"
        );

        let (new, mut new_rx) = lanes.push(a, 3, 1).expect("the lane is replaced");
        assert_ne!(old, new);
        lanes.finished(a, old, 1);
        assert_eq!(
            lanes.pending(a),
            1,
            "the old lane's news does not touch the new one"
        );
        assert_eq!(new_rx.recv().await, Some(3));
        lanes.finished(a, new, 1);
        assert_eq!(lanes.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_drains_within_a_limit_at_its_pace_unless_it_stalls_longer() {
        let limit = Duration::from_millis(250);
        let mut lanes = Lanes::default();
        let busy = EndpointId::generate();
        assert!(!lanes.drains_within(busy, Duration::ZERO, limit), "no lane");
        let (id, _rx) = lanes.push(busy, 0, 1).expect("a new lane");
        for n in 1..500 {
            assert!(lanes.push(busy, n, 1).is_none());
        }
        assert!(
            lanes.drains_within(busy, Duration::ZERO, limit),
            "no pace yet, and it just opened"
        );
        // A job every 0.2 ms: 499 left drain in about 100 ms, whatever one gap was.
        for _ in 0..50 {
            tokio::time::advance(Duration::from_micros(200)).await;
            lanes.finished(busy, id, 1);
        }
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(lanes.drains_within(busy, Duration::ZERO, limit));
        assert!(
            !lanes.drains_within(busy, Duration::from_millis(1), limit),
            "a rate limit of one job a millisecond drains 450 in 450 ms"
        );
        // Nothing finished for longer than the limit: it does not keep up.
        tokio::time::advance(limit).await;
        assert!(!lanes.drains_within(busy, Duration::ZERO, limit));

        // One job every 200 ms with a few waiting is too slow.
        let slow = EndpointId::generate();
        let (id, _rx) = lanes.push(slow, 0, 1).expect("a new lane");
        for n in 1..6 {
            assert!(lanes.push(slow, n, 1).is_none());
        }
        tokio::time::advance(Duration::from_millis(200)).await;
        lanes.finished(slow, id, 1);
        assert!(!lanes.drains_within(slow, Duration::ZERO, limit));
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_is_behind_by_its_backlog_at_its_pace_or_by_how_long_it_stalled() {
        let mut lanes = Lanes::default();
        let slow = EndpointId::generate();
        assert_eq!(
            lanes.behind(slow, Duration::ZERO),
            Duration::ZERO,
            "no lane, not behind"
        );

        let (id, _rx) = lanes.push(slow, 0, 1).expect("a new lane");
        for n in 1..10 {
            assert!(lanes.push(slow, n, 1).is_none());
        }
        // Nothing finished yet: the first job's time so far stands in for the pace.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(lanes.behind(slow, Duration::ZERO), Duration::from_secs(30));

        // Each job takes 5 s: nine left at 5 s each.
        tokio::time::advance(Duration::from_secs(2)).await;
        lanes.finished(slow, id, 1);
        assert_eq!(lanes.behind(slow, Duration::ZERO), Duration::from_secs(45));

        // A fast endpoint with a deep lane is hardly behind.
        let fast = EndpointId::generate();
        let (id, _rx) = lanes.push(fast, 0, 1).expect("a new lane");
        for n in 1..300 {
            assert!(lanes.push(fast, n, 1).is_none());
        }
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(10)).await;
            lanes.finished(fast, id, 1);
        }
        let behind = lanes.behind(fast, Duration::ZERO);
        assert!(
            behind.abs_diff(Duration::from_secs(2)) < Duration::from_millis(5),
            "200 left at 10 ms each, not {behind:?}"
        );

        // A lane that stops finishing is taken at the pace of its stall.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(lanes.behind(fast, Duration::ZERO), Duration::from_secs(200));

        // Under the kill switch the clock stands still and the pace is kept: neither the pause
        // nor a job finishing during it counts.
        lanes.pause_clocks(true);
        tokio::time::advance(Duration::from_secs(60)).await;
        lanes.finished(fast, id, 1);
        lanes.pause_clocks(false);
        tokio::time::advance(Duration::from_millis(10)).await;
        let behind = lanes.behind(fast, Duration::ZERO);
        assert!(
            behind.abs_diff(Duration::from_millis(10 * 199)) < Duration::from_millis(5),
            "199 left at 10 ms each, not {behind:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_a_claim_held_elsewhere_is_neither_a_stall_nor_the_pace() {
        let mut lanes = Lanes::default();
        let ordered = EndpointId::generate();
        let (id, _rx) = lanes.push(ordered, 0, 1).expect("a new lane");
        for n in 1..100 {
            assert!(lanes.push(ordered, n, 1).is_none());
        }
        let stopwatch = lanes.stopwatch(ordered).expect("the lane's stopwatch");
        // The first job waits 50 s for a killed dispatcher's claim, then takes 10 ms.
        tokio::time::advance(Duration::from_millis(5)).await;
        stopwatch.stop();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            lanes.behind(ordered, Duration::ZERO),
            Duration::from_millis(5 * 100),
            "the wait is no stall: 100 at the 5 ms gone so far"
        );
        assert!(
            !lanes.drains_within(ordered, Duration::ZERO, Duration::from_secs(100)),
            "waiting, it drains nothing: no partition is held behind it"
        );
        stopwatch.start();
        tokio::time::advance(Duration::from_millis(5)).await;
        lanes.finished(ordered, id, 1);
        assert_eq!(
            lanes.behind(ordered, Duration::ZERO),
            Duration::from_millis(10 * 99),
            "nor the pace: 99 left at 10 ms"
        );
        // A job that finishes within a stop ran for no time (8 ms = 0.8 * 10 + 0.2 * 0), and
        // the stop goes on counting from there.
        stopwatch.stop();
        tokio::time::advance(Duration::from_secs(5)).await;
        lanes.finished(ordered, id, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            lanes.behind(ordered, Duration::ZERO),
            Duration::from_millis(8 * 98)
        );
        stopwatch.start();
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(
            lanes.behind(ordered, Duration::ZERO),
            Duration::from_millis(20 * 98),
            "a stall once it runs again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_endpoint_is_behind_by_its_backlog_at_its_limit_from_the_start() {
        let mut lanes = Lanes::default();
        let limited = EndpointId::generate();
        let (_id, _rx) = lanes.push(limited, 0, 1).expect("a new lane");
        for n in 1..10 {
            assert!(lanes.push(limited, n, 1).is_none());
        }
        // Nothing has finished nor stalled yet, but one job a second is all the limit allows.
        assert_eq!(
            lanes.behind(limited, Duration::from_secs(1)),
            Duration::from_secs(10)
        );
        // A stall longer than the period counts as before.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            lanes.behind(limited, Duration::from_secs(1)),
            Duration::from_secs(40)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batching_lane_is_behind_by_its_stall_past_gathering_and_its_full_batches() {
        let mut lanes = Lanes::default();
        let batched = EndpointId::generate();
        let (id, _rx) = lanes.push(batched, 0, 1).expect("a new lane");
        for n in 1..5 {
            assert!(lanes.push(batched, n, 1).is_none());
        }
        let gather = Duration::from_secs(30);
        let behind = |lanes: &Lanes<i32>, pace| lanes.behind_in_batches(batched, pace, 10, gather);
        // Five of ten gathered for 20 s of 30: not behind.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(behind(&lanes, Duration::ZERO), Duration::ZERO);
        // 5 s past its gathering: 5 s behind.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(behind(&lanes, Duration::ZERO), Duration::from_secs(5));
        // A full batch waiting behind it counts its whole stall.
        for n in 5..15 {
            assert!(lanes.push(batched, n, 1).is_none());
        }
        assert_eq!(behind(&lanes, Duration::ZERO), Duration::from_secs(40));
        // A batch finishing is progress: the stall starts over.
        for _ in 0..10 {
            lanes.finished(batched, id, 1);
        }
        assert_eq!(behind(&lanes, Duration::ZERO), Duration::ZERO);
        // A rate limit is the least a batch (one request) takes.
        assert_eq!(
            behind(&lanes, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
