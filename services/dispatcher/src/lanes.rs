//! Per-endpoint lanes: an endpoint's tasks go out one after another, in partition order, while
//! different endpoints' tasks go out side by side.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc::error::SendError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use hookstream_model::ids::EndpointId;

struct Lane<J> {
    queue: UnboundedSender<J>,
    /// When each unfinished job was queued, oldest first; its length is the lane's backlog.
    queued_at: VecDeque<Instant>,
}

/// The open lanes, one per endpoint with unfinished jobs. Owned by the consumer loop alone, so
/// opening, feeding and closing a lane cannot race.
pub struct Lanes<J> {
    lanes: HashMap<EndpointId, Lane<J>>,
}

impl<J> Default for Lanes<J> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
        }
    }
}

impl<J> Lanes<J> {
    /// Queues `job` behind the endpoint's earlier jobs. When the endpoint had no open lane, one
    /// is opened and its receiving end returned: the caller starts a worker on it, which takes
    /// jobs in order until the lane is closed.
    pub fn push(&mut self, endpoint: EndpointId, job: J) -> Option<UnboundedReceiver<J>> {
        let job = match self.lanes.get_mut(&endpoint) {
            Some(lane) => match lane.queue.send(job) {
                Ok(()) => {
                    lane.queued_at.push_back(Instant::now());
                    return None;
                }
                // The lane's worker is gone; replace the lane.
                Err(SendError(job)) => job,
            },
            None => job,
        };
        let (queue, receiver) = unbounded_channel();
        // A fresh channel whose receiver we hold accepts the job.
        let _ = queue.send(job);
        let queued_at = VecDeque::from([Instant::now()]);
        self.lanes.insert(endpoint, Lane { queue, queued_at });
        Some(receiver)
    }

    /// Notes that one job of `endpoint` finished; the lane closes when none is left, which ends
    /// its worker.
    pub fn finished(&mut self, endpoint: EndpointId) {
        if let Some(lane) = self.lanes.get_mut(&endpoint) {
            // Jobs start in order; a success's record may finish after the next job's outcome,
            // so this drops the oldest time rather than that job's own, which is at most one
            // job off.
            lane.queued_at.pop_front();
            if lane.queued_at.is_empty() {
                self.lanes.remove(&endpoint);
            }
        }
    }

    /// How many of the endpoint's jobs are unfinished (waiting or being worked on).
    pub fn pending(&self, endpoint: EndpointId) -> usize {
        self.lanes
            .get(&endpoint)
            .map_or(0, |lane| lane.queued_at.len())
    }

    /// How long the endpoint's oldest unfinished job has been in its lane: how far behind the
    /// endpoint is. An endpoint that keeps up has a short wait however deep its lane.
    pub fn oldest_wait(&self, endpoint: EndpointId) -> Duration {
        self.lanes
            .get(&endpoint)
            .and_then(|lane| lane.queued_at.front())
            .map_or(Duration::ZERO, Instant::elapsed)
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
        let mut a_rx = lanes.push(a, 1).expect("a new lane for a");
        assert!(lanes.push(a, 2).is_none(), "a's second job joins its lane");
        assert_eq!(lanes.pending(a), 2);
        let mut b_rx = lanes.push(b, 10).expect("a new lane for b");
        assert_eq!(lanes.open(), 2);

        assert_eq!(a_rx.recv().await, Some(1));
        assert_eq!(a_rx.recv().await, Some(2));
        assert_eq!(b_rx.recv().await, Some(10));

        lanes.finished(a);
        assert_eq!(lanes.open(), 2, "a still has a job in flight");
        lanes.finished(a);
        lanes.finished(b);
        assert_eq!(lanes.open(), 0);
        assert_eq!(a_rx.recv().await, None, "a closed lane ends its worker");

        // A later job for a opens a new lane.
        assert!(lanes.push(a, 3).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_wait_is_the_age_of_the_oldest_unfinished_job() {
        let mut lanes = Lanes::default();
        let a = EndpointId::generate();
        assert_eq!(lanes.oldest_wait(a), Duration::ZERO, "no lane, no wait");

        let _a_rx = lanes.push(a, 1).expect("a new lane for a");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(lanes.push(a, 2).is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(lanes.oldest_wait(a), Duration::from_secs(5));

        lanes.finished(a);
        assert_eq!(
            lanes.oldest_wait(a),
            Duration::from_secs(2),
            "once the first job is done, the second is the oldest"
        );
        lanes.finished(a);
        assert_eq!(
            lanes.oldest_wait(a),
            Duration::ZERO,
            "a drained lane waits on nothing"
        );
    }
}
