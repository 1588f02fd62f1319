//! Telling operational events (see [`hookstream_model::ops_event`]) from the replay service.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookstream_kafka::ops_events::OpsEventPublisher;
use hookstream_model::ops_event::OpsEvent;
use hookstream_runtime::shutdown::CancellationToken;

/// How telling an operational event ended.
pub enum Told {
    Published,
    /// Kafka did not take it.
    Failed,
    Shutdown,
}

/// Tries per event while the topic takes events.
const TRIES: u32 = 3;

/// After an event was given up on, the next ones get one try each for this long, so dead
/// letters are not held up by a topic that cannot be written.
const AFTER_A_FAILURE: Duration = Duration::from_secs(60);

/// Publishes operational events, shared by the indexer and the batch runner.
#[derive(Clone)]
pub struct Teller {
    publisher: OpsEventPublisher,
    last_failure: Arc<Mutex<Option<Instant>>>,
}

impl Teller {
    pub fn new(publisher: OpsEventPublisher) -> Self {
        Self {
            publisher,
            last_failure: Arc::default(),
        }
    }

    /// Publishes `event`: up to [`TRIES`] tries a second apart, or one soon after a failure.
    pub async fn tell(&self, event: &OpsEvent, shutdown: &CancellationToken) -> Told {
        let tries = if self.failed_lately() { 1 } else { TRIES };
        for try_number in 1..=tries {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return Told::Shutdown,
                result = self.publisher.publish(event) => result,
            };
            match result {
                Ok(()) => {
                    *self.last_failure() = None;
                    return Told::Published;
                }
                Err(err) if try_number == tries => {
                    tracing::error!(error = %err, id = %event.id, "operational event not published; given up");
                }
                Err(err) => {
                    tracing::warn!(error = %err, id = %event.id, "operational event not published; trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Told::Shutdown,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        *self.last_failure() = Some(Instant::now());
        Told::Failed
    }

    fn failed_lately(&self) -> bool {
        self.last_failure()
            .is_some_and(|at| at.elapsed() < AFTER_A_FAILURE)
    }

    fn last_failure(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A plain time: a panic elsewhere cannot leave it half written.
        self.last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
