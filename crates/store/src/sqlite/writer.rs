//! Group commit. One thread owns the write connection. Writes that queue up while a commit is
//! syncing to disk are applied together in the next transaction and share its one fsync, so
//! many concurrent writers (dispatcher lanes, ingest requests) do not each wait for their own.
//!
//! In a group of several, each write runs inside its own savepoint: one that fails is rolled back
//! alone and reports its own error, while the others in the group still commit. A write alone in
//! its transaction takes no savepoint: when it fails, the transaction is rolled back. A savepoint
//! copies every page it changes to a journal first, and a group of one is the common case of a
//! process writing little at a time. Nobody hears back before the commit that holds their write
//! is on disk.

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
        self.queue_write(work)?
            .await
            .map_err(|_| StoreError::Backend("the store writer stopped before answering".into()))?
    }

    /// Queues `work` for the writer thread; the answer comes once its transaction is committed.
    fn queue_write<T, F>(
        &self,
        work: F,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
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
        Ok(answer)
    }
}

/// A queued write, its result type erased so writes of every kind share one queue.
trait PendingWrite: Send {
    /// Runs the write in a savepoint of the open transaction and keeps its result. An error
    /// here means the savepoint itself failed and the transaction can no longer be trusted.
    fn apply(&mut self, conn: &Connection) -> Result<(), StoreError>;
    /// Runs the write in the open transaction as it stands (alone in it, no savepoint needed)
    /// and keeps its result. Answers whether it succeeded: if not, the caller rolls back.
    fn run(&mut self, conn: &Connection) -> bool;
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
        conn.execute_batch("SAVEPOINT write")?;
        if !self.run(conn) {
            if conn.is_autocommit() {
                // SQLite ended the whole transaction (a full disk, an I/O error): the group
                // fails, with this write's error rather than a missing savepoint's.
                let why = match &self.result {
                    Some(Err(err)) => err.to_string(),
                    _ => String::new(),
                };
                return Err(StoreError::Backend(format!(
                    "a write ended the transaction: {why}"
                )));
            }
            conn.execute_batch("ROLLBACK TO write")?;
        }
        conn.execute_batch("RELEASE write")?;
        Ok(())
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return true;
        };
        let result = run_caught(work, conn);
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
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

/// Runs one write's work. A panicking write must not take the thread, and every later write,
/// down with it.
fn run_caught<T, F>(work: F, conn: &Connection) -> Result<T, StoreError>
where
    F: FnOnce(&Connection) -> Result<T, StoreError>,
{
    catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a store write panicked".into())))
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
    if let [alone] = group {
        if alone.run(conn) {
            conn.execute_batch("COMMIT")?;
        } else if !conn.is_autocommit() {
            // Its failure leaves nothing to commit; it answers with its own error, as in a
            // group. (An error SQLite ends the transaction for leaves nothing to roll back.)
            conn.execute_batch("ROLLBACK")?;
        }
        return Ok(());
    }
    for write in group.iter_mut() {
        write.apply(conn)?;
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn writer(dir: &tempfile::TempDir) -> (Writer, Connection) {
        let path = dir.path().join("store.db");
        let conn = super::super::connect(&path).expect("the database opens");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .expect("a table");
        let reader = super::super::connect(&path).expect("a reader");
        (Writer::start(conn).expect("the writer starts"), reader)
    }

    fn rows(reader: &Connection) -> Vec<i64> {
        let mut statement = reader
            .prepare("SELECT n FROM t ORDER BY n")
            .expect("the query");
        statement
            .query_map([], |row| row.get(0))
            .expect("the rows")
            .collect::<Result<_, _>>()
            .expect("each row")
    }

    /// A write that inserts `n`, then fails or panics if asked.
    fn insert(n: i64, ends: Ends) -> impl FnOnce(&Connection) -> Result<i64, StoreError> {
        move |conn| {
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
            match ends {
                Ends::Well => Ok(n),
                Ends::Failing => Err(StoreError::NotFound(format!("row {n}"))),
                Ends::Panicking => panic!("a write that panics after its insert"),
                Ends::EndingTheTransaction => {
                    conn.execute_batch("ROLLBACK")?;
                    Err(StoreError::NotFound(format!("row {n}")))
                }
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Ends {
        Well,
        Failing,
        Panicking,
        /// Fails after the transaction has ended under it, as SQLite ends it on a full disk
        /// or an I/O error.
        EndingTheTransaction,
    }

    fn answer<T>(
        writer: &Writer,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
    {
        writer
            .queue_write(work)
            .expect("the writer takes it")
            .blocking_recv()
            .expect("the writer answers")
    }

    fn is_own_failure<T: std::fmt::Debug>(answer: &Result<T, StoreError>, n: i64) -> bool {
        matches!(answer, Err(StoreError::NotFound(what)) if *what == format!("row {n}"))
    }

    fn is_panic<T: std::fmt::Debug>(answer: &Result<T, StoreError>) -> bool {
        matches!(answer, Err(StoreError::Backend(why)) if why.contains("panicked"))
    }

    #[test]
    fn a_write_alone_that_fails_or_panics_answers_for_itself_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, reader) = writer(&dir);
        let failed = answer(&writer, insert(1, Ends::Failing));
        assert!(is_own_failure(&failed, 1), "{failed:?}");
        let panicked = answer(&writer, insert(2, Ends::Panicking));
        assert!(is_panic(&panicked), "{panicked:?}");
        let ended = answer(&writer, insert(4, Ends::EndingTheTransaction));
        assert!(is_own_failure(&ended, 4), "{ended:?}");
        assert_eq!(answer(&writer, insert(3, Ends::Well)).ok(), Some(3));
        assert_eq!(rows(&reader), vec![3]);
    }

    #[test]
    fn in_a_group_a_write_that_fails_or_panics_is_rolled_back_alone() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, reader) = writer(&dir);
        let group = queue_as_one_group(
            &writer,
            [
                insert(1, Ends::Well),
                insert(2, Ends::Failing),
                insert(3, Ends::Well),
                insert(4, Ends::Panicking),
                insert(5, Ends::Well),
            ],
        );
        let [one, two, three, four, five] = group;
        assert_eq!(
            (one.ok(), three.ok(), five.ok()),
            (Some(1), Some(3), Some(5))
        );
        assert!(is_own_failure(&two, 2), "{two:?}");
        assert!(is_panic(&four), "{four:?}");
        assert_eq!(answer(&writer, insert(6, Ends::Well)).ok(), Some(6));
        assert_eq!(rows(&reader), vec![0, 1, 3, 5, 6]);
    }

    #[test]
    fn in_a_group_a_write_that_ends_the_transaction_fails_the_group_with_its_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, reader) = writer(&dir);
        let [one, two, three] = queue_as_one_group(
            &writer,
            [
                insert(1, Ends::Well),
                insert(2, Ends::EndingTheTransaction),
                insert(3, Ends::Well),
            ],
        );
        for answer in [&one, &two, &three] {
            assert!(
                matches!(answer, Err(StoreError::Backend(why))
                    if why.contains("commit failed") && why.contains("row 2")),
                "{answer:?}"
            );
        }
        assert_eq!(answer(&writer, insert(6, Ends::Well)).ok(), Some(6));
        assert_eq!(rows(&reader), vec![0, 6]);
    }

    /// Queues `works` behind a write that holds the writer thread until they are all queued,
    /// so they are taken as one group; answers theirs once the held write (inserting 0) is in.
    fn queue_as_one_group<const N: usize>(
        writer: &Writer,
        works: [impl FnOnce(&Connection) -> Result<i64, StoreError> + Send + 'static; N],
    ) -> [Result<i64, StoreError>; N] {
        let (started, has_started) = mpsc::channel::<()>();
        let (release, gate) = mpsc::channel::<()>();
        let held = writer
            .queue_write(move |conn| {
                let _ = started.send(());
                let _ = gate.recv();
                insert(0, Ends::Well)(conn)
            })
            .expect("the writer takes it");
        has_started.recv().expect("the held write starts");
        let answers = works.map(|work| writer.queue_write(work).expect("the writer takes it"));
        release.send(()).expect("the held write waits");
        assert_eq!(held.blocking_recv().expect("an answer").ok(), Some(0));
        answers.map(|answer| answer.blocking_recv().expect("an answer"))
    }
}
