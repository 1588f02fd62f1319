//! The deliveries a lane has sent with success and not yet recorded. Their attempts are written
//! beside the lane, so the next request goes out while that write commits; but a dispatcher that
//! dies sends every one of them again (its store has no record of the success), so a lane may
//! run only so far ahead of its store. Unbounded, a slow or unreachable store would let a lane
//! keep sending while its successes piled up unrecorded, each a duplicate after a crash.

use std::sync::Arc;

use tokio::sync::watch;

use crate::claims_ahead;

/// How many successes a lane may have unrecorded for each request it may have out: as many
/// as it claims at once, so a crash sends again at most what one group of claims covered (and
/// the requests out). Measured (100 endpoints, batched ingest, SQLite): one per request cost
/// 30 % of the throughput (4,852 → 3,529 delivered a second; two: 3,332), eight none (4,718
/// beside 5,071 unbounded); a record waits for the store's group commit, several sends long.
pub const PER_REQUEST: usize = claims_ahead::MOST;

/// A count of a lane's successes still being recorded.
#[derive(Debug)]
pub struct Unrecorded {
    count: watch::Sender<usize>,
}

impl Default for Unrecorded {
    fn default() -> Self {
        Self {
            count: watch::Sender::new(0),
        }
    }
}

impl Unrecorded {
    /// Counts one success until the returned guard is dropped (once its record is written, or
    /// has failed for good).
    pub fn begin(self: &Arc<Self>) -> Recording {
        self.count.send_modify(|count| *count += 1);
        Recording {
            of: Arc::clone(self),
        }
    }

    /// Returns once at most `most` successes are still being recorded.
    pub async fn at_most(&self, most: usize) {
        let mut count = self.count.subscribe();
        // The sender lives in `self`, so the wait cannot end for want of one.
        let _ = count.wait_for(|count| *count <= most).await;
    }

    /// How many successes are still being recorded.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }
}

/// One success being recorded; dropping it ends the count of it.
#[derive(Debug)]
pub struct Recording {
    of: Arc<Unrecorded>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.of.count.send_modify(|count| {
            debug_assert!(*count > 0, "a success counted out twice");
            *count = count.saturating_sub(1);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_ends_only_when_enough_records_are_written() {
        let unrecorded = Arc::new(Unrecorded::default());
        unrecorded.at_most(0).await;
        let first = unrecorded.begin();
        let second = unrecorded.begin();
        assert_eq!(unrecorded.count(), 2);
        unrecorded.at_most(2).await;

        let waiting = tokio::spawn({
            let unrecorded = Arc::clone(&unrecorded);
            async move { unrecorded.at_most(1).await }
        });
        // Still two being recorded: the wait goes on (checked without a timer: the task has
        // had every chance to run and is not finished).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "a wait ended with two unrecorded");

        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends once a record is written")
            .expect("the waiting task");
        drop(second);
        assert_eq!(unrecorded.count(), 0);
    }
}
