//! Leaving Kafka at shutdown without hanging when the broker is already gone.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};

/// How long committing the final offsets and leaving the group may take together.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Commits the stored offsets synchronously, then closes the consumer (leaving its group).
///
/// Both block while the broker does not answer, so they run off the async workers, one after
/// the other on one blocking thread, with one bounded wait: a slow commit leaves the close the
/// rest of the time. What is not committed is re-consumed by the next owner, which is safe for
/// every Hookstream consumer. Returns false if they did not finish in time: the blocking
/// thread still holds the consumer, and the runtime's shutdown would wait for it (up to
/// librdkafka's socket timeout), so the caller should exit the process instead.
pub async fn commit_and_close<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
) -> bool {
    let leave = tokio::task::spawn_blocking(move || {
        let committed = consumer.commit_consumer_state(CommitMode::Sync);
        // Closes the consumer when this is its last handle.
        drop(consumer);
        committed
    });
    match tokio::time::timeout(LEAVE_TIMEOUT, leave).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!("final offsets committed");
            true
        }
        Ok(Ok(Err(err))) => {
            tracing::warn!(error = %err, "final offset commit failed; the last messages will be re-consumed");
            true
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "final offset commit task failed; the last messages will be re-consumed");
            false
        }
        Err(_) => {
            tracing::warn!(
                "final offset commit and leaving the consumer group timed out; the last messages will be re-consumed"
            );
            false
        }
    }
}
