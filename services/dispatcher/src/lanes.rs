//! Per-endpoint lanes: an endpoint's tasks go out one after another, in partition order, while
//! different endpoints' tasks go out side by side.

use std::collections::HashMap;

use tokio::sync::mpsc::error::SendError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use hookstream_model::ids::EndpointId;

struct Lane<J> {
    queue: UnboundedSender<J>,
    pending: usize,
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
                    lane.pending += 1;
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
        self.lanes.insert(endpoint, Lane { queue, pending: 1 });
        Some(receiver)
    }

    /// Notes that one job of `endpoint` finished; the lane closes when none is left, which ends
    /// its worker.
    pub fn finished(&mut self, endpoint: EndpointId) {
        if let Some(lane) = self.lanes.get_mut(&endpoint) {
            lane.pending -= 1;
            if lane.pending == 0 {
                self.lanes.remove(&endpoint);
            }
        }
    }

    /// How many of the endpoint's jobs are unfinished (waiting or being worked on).
    pub fn pending(&self, endpoint: EndpointId) -> usize {
        self.lanes.get(&endpoint).map_or(0, |lane| lane.pending)
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
}
