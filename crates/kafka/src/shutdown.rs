//! Leaving Kafka at shutdown without hanging when the broker is already gone.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};

/// How long each step of leaving may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits the stored offsets synchronously, then closes the consumer (leaving its group).
///
/// Both block while the broker is unreachable, so each runs off the async workers with a bounded
/// wait. What is not committed is re-consumed by the next owner, which is safe for every
/// Hookstream consumer. Returns false if the close did not finish in time: the caller should
/// then exit the process rather than wait on librdkafka's threads.
pub async fn commit_and_close<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
) -> bool {
    let committer = Arc::clone(&consumer);
    let commit =
        tokio::task::spawn_blocking(move || committer.commit_consumer_state(CommitMode::Sync));
    match tokio::time::timeout(STEP_TIMEOUT, commit).await {
        Ok(Ok(Ok(()))) => tracing::info!("final offsets committed"),
        Ok(Ok(Err(err))) => {
            tracing::warn!(error = %err, "final offset commit failed; the last messages will be re-consumed")
        }
        Ok(Err(err)) => tracing::warn!(error = %err, "final offset commit task failed"),
        Err(_) => {
            tracing::warn!("final offset commit timed out; the last messages will be re-consumed")
        }
    }
    let close = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(STEP_TIMEOUT * 2, close).await.is_err() {
        tracing::warn!("leaving the consumer group timed out");
        return false;
    }
    true
}
