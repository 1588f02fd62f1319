//! Wakes librdkafka's fetchers after partitions are resumed.
//!
//! librdkafka does not wake a broker's thread when a partition is resumed: the partition joins
//! the fetches at that thread's next wakeup, which is the answer to a fetch in flight (at most
//! [`FETCH_WAIT`] away) or, when every partition it fetches was paused and no fetch is out,
//! its one-second idle timeout (confluentinc/confluent-kafka-go#630 shows the same). A held
//! partition of a busy endpoint is resumed many times a second, so each resume would cost up
//! to a second of that endpoint's throughput. Any request to a partition's leader wakes the
//! thread that fetches it; a `ListOffsets` for the resumed partitions is the cheapest one that
//! goes there, and what it answers is not needed (it moves no position, offset or pause).
//! With fetching from followers (`client.rack`) the thread woken would not be the fetching one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::{Sender, channel};

use crate::metrics;
use crate::rebalance::RebalanceListener;

/// How long the deliveries consumer's fetch waits for data that is not there yet: with a
/// fetch always out while anything is fetched, it bounds how late a resumed partition is read.
/// Each idle dispatcher asks each broker it fetches from this often (other consumers keep
/// 100 ms): on one machine with one broker and an idle `make run`, the broker used about 1 to 2
/// CPU seconds a minute more than at 100 ms (2026-12-05).
pub const FETCH_WAIT: Duration = Duration::from_millis(20);

/// A wakeup not answered in this long is given up: the thread wakes by itself within a second.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends the wakeups from a thread of its own (the request blocks until answered).
pub struct FetchWakeup {
    resumed: Arc<Resumed>,
    /// Holds a place while a wakeup waits to be sent: the one waiting takes every partition
    /// resumed before it is sent.
    requests: Sender<()>,
    thread: JoinHandle<()>,
}

/// The partitions resumed since the last wakeup was sent.
struct Resumed {
    topic: String,
    partitions: Mutex<BTreeSet<i32>>,
}

impl FetchWakeup {
    /// Starts the thread; [`FetchWakeup::stop`] ends it.
    pub fn start(
        consumer: Arc<StreamConsumer<RebalanceListener>>,
        topic: &str,
    ) -> std::io::Result<Self> {
        let (requests, mut pending) = channel::<()>(1);
        let resumed = Arc::new(Resumed {
            topic: topic.to_owned(),
            partitions: Mutex::default(),
        });
        let to_wake = Arc::clone(&resumed);
        // Not a strong hold between wakeups: the consumer must leave its group when the
        // dispatcher drops it at shutdown.
        let consumer = Arc::downgrade(&consumer);
        let thread = std::thread::Builder::new()
            .name("fetch-wakeup".into())
            .spawn(move || {
                while pending.blocking_recv().is_some() {
                    let Some(partitions) = to_wake.take() else {
                        continue;
                    };
                    let Some(consumer) = consumer.upgrade() else {
                        break;
                    };
                    let outcome = match consumer.offsets_for_times(partitions, ANSWER_TIMEOUT) {
                        Ok(_) => "sent",
                        Err(err) => {
                            tracing::debug!(error = %err, "fetch wakeup not answered");
                            "failed"
                        }
                    };
                    metrics::FETCH_WAKEUPS.with_label_values(&[outcome]).inc();
                }
            })?;
        Ok(Self {
            resumed,
            requests,
            thread,
        })
    }

    /// Wakes the threads fetching `partitions`, just resumed.
    pub fn resumed(&self, partitions: impl IntoIterator<Item = i32>) {
        self.resumed.partitions().extend(partitions);
        // Full: a wakeup waits to be sent, and takes these partitions with it.
        let _ = self.requests.try_send(());
    }

    /// Ends the thread, waiting for a wakeup under way (at most about [`ANSWER_TIMEOUT`]), so
    /// that the dispatcher's own drop of the consumer is the last and closes it.
    pub async fn stop(self) {
        let Self {
            requests, thread, ..
        } = self;
        drop(requests);
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(ANSWER_TIMEOUT * 2, joined)
            .await
            .is_err()
        {
            tracing::warn!("the fetch wakeup thread did not stop in time");
        }
    }
}

impl Resumed {
    fn partitions(&self) -> MutexGuard<'_, BTreeSet<i32>> {
        // A set of numbers: a panic elsewhere cannot leave it half changed.
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Option<TopicPartitionList> {
        let partitions = std::mem::take(&mut *self.partitions());
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            // The latest offset: any would do, and this one needs no index lookup.
            if let Err(err) = list.add_partition_offset(&self.topic, partition, Offset::End) {
                tracing::debug!(partition, error = %err, "partition left out of a fetch wakeup");
            }
        }
        (list.count() > 0).then_some(list)
    }
}
