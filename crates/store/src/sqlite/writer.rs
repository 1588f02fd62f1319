//! Group commit. One thread owns the write connection. Writes that queue up while a commit is
//! syncing to disk are applied together in the next transaction and share its one fsync, so
//! many concurrent writers (dispatcher lanes, ingest requests) do not each wait for their own.
//!
//! Each write runs inside its own savepoint: one that fails is rolled back alone and reports its
//! own error, while the others in the group still commit. Nobody hears back before the commit
//! that holds their write is on disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;

/// The most writes one transaction takes; keeps any one commit, and the wait behind it, short.
const MAX_GROUP: usize = 512;

/// Hands writes to the writer thread. Cheap to clone; the thread ends when the last clone is
/// dropped.
#[derive(Clone)]
pub(super) struct Writer {
    queue: Sender<Box<dyn PendingWrite>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (queue, writes) = channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || commit_until_closed(&conn, &writes))
            .map_err(|e| StoreError::Backend(format!("starting the store writer: {e}")))?;
        Ok(Self { queue })
    }

    /// Runs `work` inside a write transaction and answers once that transaction is committed.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let write = Write {
            work: Some(work),
            result: None,
            reply,
        };
        self.queue
            .send(Box::new(write))
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the store writer stopped before answering".into()))?
    }
}

/// A queued write, its result type erased so writes of every kind share one queue.
trait PendingWrite: Send {
    /// Runs the write in a savepoint of the open transaction and keeps its result. An error
    /// here means the savepoint itself failed and the transaction can no longer be trusted.
    fn apply(&mut self, conn: &Connection) -> Result<(), StoreError>;
    /// Answers the caller: its own result if the transaction committed, else why it did not.
    fn finish(self: Box<Self>, committed: Result<(), &StoreError>);
}

struct Write<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> PendingWrite for Write<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> Result<(), StoreError> {
        let Some(work) = self.work.take() else {
            return Ok(());
        };
        conn.execute_batch("SAVEPOINT write")?;
        // A panicking write must not take the thread, and every later write, down with it.
        let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(StoreError::Backend("a store write panicked".into())));
        if result.is_err() {
            conn.execute_batch("ROLLBACK TO write")?;
        }
        conn.execute_batch("RELEASE write")?;
        self.result = Some(result);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), &StoreError>) {
        let answer = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Backend(
                "a store write was never applied".into(),
            )),
            (Err(err), _) => Err(StoreError::Backend(format!("store commit failed: {err}"))),
        };
        // The caller may have given up waiting (shutdown); the write stands either way.
        let _ = self.reply.send(answer);
    }
}

fn commit_until_closed(conn: &Connection, writes: &Receiver<Box<dyn PendingWrite>>) {
    while let Ok(first) = writes.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(conn, group);
    }
}

/// Applies a group of writes in one transaction and answers each of them.
fn commit_group(conn: &Connection, mut group: Vec<Box<dyn PendingWrite>>) {
    let committed = apply_and_commit(conn, &mut group);
    if committed.is_err() && !conn.is_autocommit() {
        // Leave the connection clean for the next group. Should this fail too, the next
        // group's BEGIN fails and reports it.
        let _ = conn.execute_batch("ROLLBACK");
    }
    for write in group {
        write.finish(committed.as_ref().map(|_| ()));
    }
}

fn apply_and_commit(
    conn: &Connection,
    group: &mut [Box<dyn PendingWrite>],
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so another process's writer cannot deadlock us.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for write in group.iter_mut() {
        write.apply(conn)?;
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}
