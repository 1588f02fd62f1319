//! Marking events published, gathered across requests.
//!
//! A client is answered once Kafka has its event's tasks; the mark that follows only keeps the
//! outbox sweep from publishing the event again. Written one request at a time, each mark was a
//! store write of its own (a savepoint in SQLite's group commit, a queue entry and a thread hop;
//! on ScyllaDB its own statements). Gathered for a few milliseconds, the marks of many requests
//! go to the store in one call. A mark that is lost (a crash, a store error) only has the
//! outbox sweep republish the event after its grace period, under the same delivery ids, which
//! the dispatcher skips once they are delivered.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use hookstream_model::ids::EventId;
use hookstream_store::Store;

/// How long the first mark of a group waits for others: short beside the outbox's grace period,
/// long enough that a busy ingest writes a handful of marks a second, not one per request.
const GATHER: Duration = Duration::from_millis(20);
/// The most events one call marks (give or take the last request's): keeps that write, and
/// those queued behind it, short, and bounds what one failure sends back to the sweep.
const MOST_PER_WRITE: usize = 500;

/// Takes the ids of events Kafka has the tasks of, and marks them published in groups. Cheap
/// to clone; the gathering task ends once every clone is dropped and the last group is written.
#[derive(Clone)]
pub struct PublishedMarks {
    queue: mpsc::UnboundedSender<Vec<EventId>>,
}

impl PublishedMarks {
    /// Starts the gathering task (on the current Tokio runtime). The handle ends once every
    /// clone is dropped and every mark taken has been written (or failed).
    pub fn start(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        let (queue, marks) = mpsc::unbounded_channel();
        let written = tokio::spawn(gather_and_write(store, marks));
        (Self { queue }, written)
    }

    /// Has `ids` marked published soon; does not wait for the write.
    pub fn mark(&self, ids: Vec<EventId>) {
        if ids.is_empty() {
            return;
        }
        // Only fails once the gathering task is gone (the runtime is shutting down): the
        // events stay `publishing` and the sweep republishes them after the restart.
        if self.queue.send(ids).is_err() {
            tracing::debug!(
                "the published marks' task has stopped; the outbox sweep will republish"
            );
        }
    }
}

async fn gather_and_write(store: Arc<dyn Store>, mut marks: mpsc::UnboundedReceiver<Vec<EventId>>) {
    let mut writes = JoinSet::new();
    while let Some(first) = marks.recv().await {
        // Each request's ids kept apart, so a group that fails is written again request by
        // request and one bad id leaves only its own request's events to the sweep.
        let mut group = vec![first];
        let mut ids = group[0].len();
        let gathered = tokio::time::sleep(GATHER);
        tokio::pin!(gathered);
        let mut open = true;
        while open && ids < MOST_PER_WRITE {
            tokio::select! {
                more = marks.recv() => match more {
                    Some(more) => {
                        ids += more.len();
                        group.push(more);
                    }
                    None => open = false,
                },
                () = &mut gathered => break,
            }
        }
        // Written on a task of its own, so a slow write does not hold the next group back
        // (stores that write one row at a time run several groups at once).
        writes.spawn(write_group(Arc::clone(&store), group));
        while writes.try_join_next().is_some() {}
        if !open {
            break;
        }
    }
    while writes.join_next().await.is_some() {}
}

async fn write_group(store: Arc<dyn Store>, group: Vec<Vec<EventId>>) {
    if group.len() == 1 {
        mark_or_warn(&store, &group[0]).await;
        return;
    }
    let all: Vec<EventId> = group.iter().flatten().copied().collect();
    if store.mark_events_published(&all).await.is_err() {
        // Written again request by request: a bad id holds back only its own request's events.
        for ids in &group {
            mark_or_warn(&store, ids).await;
        }
    }
}

async fn mark_or_warn(store: &Arc<dyn Store>, ids: &[EventId]) {
    if let Err(err) = store.mark_events_published(ids).await {
        tracing::warn!(events = ids.len(), error = %err,
            "tasks are on Kafka but the events could not be marked published; the outbox sweep will republish");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use time::OffsetDateTime;

    use hookstream_model::event::{Event, IdempotencyWindow};
    use hookstream_model::names::{EventType, Tenant};
    use hookstream_store::sqlite::SqliteStore;
    use hookstream_store::{NewEvent, SecretSealer};

    use super::*;

    /// A store with `n` events stored as publishing (in the outbox), and their ids.
    async fn store_with_events(n: usize) -> (tempfile::TempDir, Arc<dyn Store>, Vec<EventId>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("store.db"), SecretSealer::plaintext())
                .await
                .expect("the store opens"),
        );
        let now = OffsetDateTime::now_utc();
        let news: Vec<NewEvent> = (0..n)
            .map(|n| NewEvent {
                event: Event {
                    id: EventId::generate(),
                    tenant: Tenant::parse("acme", "tenant").expect("a tenant"),
                    event_type: EventType::parse("order.created", "type").expect("a type"),
                    payload: json!({ "n": n }),
                    idempotency_key: None,
                    created_at: now,
                },
                deliveries: Vec::new(),
            })
            .collect();
        store
            .create_events(&news, IdempotencyWindow(Duration::from_secs(60)))
            .await
            .expect("the events are stored");
        let ids = news.iter().map(|new| new.event.id).collect();
        (dir, store, ids)
    }

    /// The ids of the events the outbox sweep would publish again.
    async fn unmarked(store: &Arc<dyn Store>) -> Vec<EventId> {
        let later = OffsetDateTime::now_utc() + Duration::from_secs(1);
        let mut ids: Vec<EventId> = store
            .unpublished_events(later, 100)
            .await
            .expect("the outbox reads")
            .into_iter()
            .map(|(event, _)| event.id)
            .collect();
        ids.sort();
        ids
    }

    /// Marks of many requests sent side by side, the handle dropped straight after: every
    /// event ends up published, none left for the outbox sweep to send again.
    #[tokio::test]
    async fn marks_sent_together_are_all_written_before_the_task_ends() {
        let (_dir, store, ids) = store_with_events(50).await;
        assert_eq!(unmarked(&store).await.len(), 50, "stored as publishing");

        let (marks, written) = PublishedMarks::start(Arc::clone(&store));
        for &id in &ids {
            let marks = marks.clone();
            tokio::spawn(async move { marks.mark(vec![id]) });
        }
        drop(marks);
        written.await.expect("the gathering task ends");

        let left = unmarked(&store).await;
        assert!(left.is_empty(), "{} events left unmarked", left.len());
    }

    /// A group whose write fails (one request names an event the store does not have) is
    /// written again request by request: the other requests' events are marked, and only the
    /// failing request's are left to the outbox sweep. On this single-threaded runtime the
    /// three marks, taken before the gathering task first runs, are one group.
    #[tokio::test]
    async fn a_group_that_fails_is_written_again_request_by_request() {
        let (_dir, store, ids) = store_with_events(3).await;
        let (marks, written) = PublishedMarks::start(Arc::clone(&store));
        marks.mark(vec![ids[0]]);
        marks.mark(vec![EventId::generate(), ids[1]]);
        marks.mark(vec![ids[2]]);
        drop(marks);
        written.await.expect("the gathering task ends");

        assert_eq!(
            unmarked(&store).await,
            vec![ids[1]],
            "only the failing request's event is left to the sweep"
        );
    }
}
