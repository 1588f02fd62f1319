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
//!
//! Should the log be past a backstop after a commit (the checkpoint thread cannot keep up, or
//! fails, or readers keep it from starting over, which leaves it long though all copied), the
//! writer copies it back itself, as SQLite's own `wal_autocheckpoint` would inside the commit,
//! but only once that commit's writers have their answers, and timed apart from the lock.

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::hooks::Wal;
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
    /// Starts the writer thread on `conn`, which checkpoints after a commit that leaves the log
    /// at `backstop_pages` or more (0: never).
    pub(super) fn start(conn: Connection, backstop_pages: u32) -> Result<Self, StoreError> {
        Self::start_checkpointing_with(conn, backstop_pages, checkpoint_as_backstop)
    }

    fn start_checkpointing_with(
        conn: Connection,
        backstop_pages: u32,
        checkpoint: fn(&Connection),
    ) -> Result<Self, StoreError> {
        // The hook takes the place of SQLite's `wal_autocheckpoint` (1,000 pages by default),
        // which would checkpoint inside the commit, before its writers are answered. Setting
        // that pragma on this connection later would silently take the hook's place again.
        conn.wal_hook(Some(note_log_pages));
        // Registered now: a metric that failed to register must fail the open, not a commit.
        crate::metered::register_writer_metrics();
        let backstop = c_int::try_from(backstop_pages)
            .ok()
            .filter(|&pages| pages > 0)
            .unwrap_or(c_int::MAX);
        let (queue, writes) = channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || commit_until_closed(&conn, &writes, backstop, checkpoint))
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

thread_local! {
    /// The log's length in pages after the last commit on this thread, as SQLite's WAL hook
    /// reported it (0 when nothing was committed since it was read).
    static LOG_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// SQLite's WAL hook: runs on the committing thread, after the commit, its lock let go. It must
/// answer `Ok`: an error here would make SQLite report the commit, durable already, as failed,
/// and its writers would send again what is stored.
fn note_log_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    LOG_PAGES.set(pages);
    Ok(())
}

fn commit_until_closed(
    conn: &Connection,
    writes: &Receiver<Box<dyn PendingWrite>>,
    backstop: c_int,
    checkpoint: fn(&Connection),
) {
    while let Ok(first) = writes.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(conn, group);
        // `backstop` is at least 1, so a thread that committed nothing (0) never checkpoints.
        if LOG_PAGES.replace(0) >= backstop {
            checkpoint(conn);
        }
    }
}

/// Copies the log back into the database file, as a commit past `wal_autocheckpoint` would.
/// PASSIVE: it waits for no lock and blocks no other process, but this process's writes queue
/// behind it (the copy and its fsyncs). A failure is left to the next commit, and to the
/// checkpoint thread, which reports failing checkpoints.
fn checkpoint_as_backstop(conn: &Connection) {
    let started = Instant::now();
    let checkpointed = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(0)
    });
    let outcome = match &checkpointed {
        Ok(0) => "done",
        // Another checkpoint (this process's thread or another process) holds the lock for it.
        Ok(_) => "busy",
        Err(_) => "failed",
    };
    crate::metered::observe_backstop_checkpoint(outcome, started.elapsed());
    if let Err(err) = checkpointed {
        tracing::debug!(error = %err, "the store writer's backstop checkpoint failed");
    }
}

/// Applies a group of writes in one transaction and answers each of them.
fn commit_group(conn: &Connection, mut group: Vec<Box<dyn PendingWrite>>) {
    let asked = Instant::now();
    let mut locked = None;
    let committed = apply_and_commit(conn, &mut group, &mut locked);
    if committed.is_err() && !conn.is_autocommit() {
        // Leave the connection clean for the next group. Should this fail too, the next
        // group's BEGIN fails and reports it.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let released = Instant::now();
    let writes = group.len();
    for write in group {
        write.finish(committed.as_ref().map(|_| ()));
    }
    // Who holds the lock how long is the limit of the embedded store's throughput. Recorded
    // once every writer has its answer: nothing may stand between a commit and its answers.
    crate::metered::observe_write_transaction(
        locked.unwrap_or(released).duration_since(asked),
        locked.map(|at| released.duration_since(at)),
        committed.is_ok().then_some(writes),
    );
}

/// Sets `locked` to when the write lock was taken, if it was.
fn apply_and_commit(
    conn: &Connection,
    group: &mut [Box<dyn PendingWrite>],
    locked: &mut Option<Instant>,
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so another process's writer cannot deadlock us.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    *locked = Some(Instant::now());
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

    /// A writer that never checkpoints, on a new database with table `t`, and a reader.
    fn writer(dir: &tempfile::TempDir) -> (Writer, Connection) {
        writer_with_backstop(dir, u32::MAX)
    }

    fn writer_with_backstop(dir: &tempfile::TempDir, backstop: u32) -> (Writer, Connection) {
        writer_checkpointing_with(dir, backstop, checkpoint_as_backstop)
    }

    fn writer_checkpointing_with(
        dir: &tempfile::TempDir,
        backstop: u32,
        checkpoint: fn(&Connection),
    ) -> (Writer, Connection) {
        let path = dir.path().join("store.db");
        let conn = super::super::connect(&path).expect("the database opens");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)",
        )
        .expect("a table");
        let reader = super::super::connect(&path).expect("a reader");
        (
            Writer::start_checkpointing_with(conn, backstop, checkpoint)
                .expect("the writer starts"),
            reader,
        )
    }

    fn database_file_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("store.db"))
            .expect("the database file")
            .len()
    }

    /// Inserts 200 rows of 2,000 bytes: about 100 pages of log.
    fn two_hundred_rows(conn: &Connection) -> Result<(), StoreError> {
        rows_of_2000_bytes(conn, 1000..1200)
    }

    /// Inserts 2,400 rows of 2,000 bytes: about 1,200 pages of log, past SQLite's default
    /// `wal_autocheckpoint` of 1,000.
    fn past_sqlites_own_autocheckpoint(conn: &Connection) -> Result<(), StoreError> {
        rows_of_2000_bytes(conn, 1000..3400)
    }

    fn rows_of_2000_bytes(conn: &Connection, ns: std::ops::Range<i64>) -> Result<(), StoreError> {
        for n in ns {
            conn.execute("INSERT INTO t (n, pad) VALUES (?1, zeroblob(2000))", [n])?;
        }
        Ok(())
    }

    /// The sample count and sum of histogram `name` so far in this process, over its series
    /// with a label of value `label` (any, when `None`).
    fn histogram_totals(name: &str, label: Option<&str>) -> (u64, f64) {
        prometheus::gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| label.is_none_or(|v| m.get_label().iter().any(|l| l.value() == v)))
            .map(|m| m.get_histogram())
            .fold((0, 0.0), |(count, sum), h| {
                (count + h.get_sample_count(), sum + h.get_sample_sum())
            })
    }

    fn backstop_checkpoints() -> u64 {
        histogram_totals("hookstream_store_backstop_checkpoint_seconds", None).0
    }

    /// Holds the one test's backstop checkpoint until the test opens the gate.
    static CHECKPOINT_GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
        (std::sync::Mutex::new(false), std::sync::Condvar::new());

    fn checkpoint_once_the_gate_opens(conn: &Connection) {
        let (open, opened) = &CHECKPOINT_GATE;
        let mut is_open = open.lock().expect("the gate");
        while !*is_open {
            is_open = opened.wait(is_open).expect("the gate");
        }
        checkpoint_as_backstop(conn);
    }

    #[test]
    fn the_writers_have_their_answers_before_the_backstop_checkpoint_runs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, _reader) = writer_checkpointing_with(&dir, 50, checkpoint_once_the_gate_opens);
        let mut first = writer
            .queue_write(two_hundred_rows)
            .expect("the writer takes it");
        // The checkpoint waits for the gate, so the answer must come without it.
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let answered = loop {
            match first.try_recv() {
                Ok(answered) => break answered,
                Err(oneshot::error::TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "no answer while the checkpoint waits"
                    );
                    std::thread::yield_now();
                }
                Err(closed) => panic!("the writer stopped: {closed}"),
            }
        };
        answered.expect("the rows are written");
        let (open, opened) = &CHECKPOINT_GATE;
        *open.lock().expect("the gate") = true;
        opened.notify_all();
        answer(&writer, insert(1, Ends::Well)).expect("the next write, after the checkpoint");
    }

    #[test]
    fn past_its_backstop_the_writer_copies_the_log_back_after_the_commit() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, _reader) = writer_with_backstop(&dir, 50);
        let before = (database_file_len(&dir), backstop_checkpoints());
        answer(&writer, two_hundred_rows).expect("the rows are written");
        // The writer takes one write at a time: once this one is answered, whatever it did
        // after the first (its checkpoint) is done.
        answer(&writer, insert(1, Ends::Well)).expect("the next write");
        assert!(
            database_file_len(&dir) > before.0 + 200 * 2000,
            "the rows are in the database file"
        );
        assert!(
            backstop_checkpoints() > before.1,
            "the checkpoint is counted"
        );
    }

    #[test]
    fn under_its_backstop_the_writer_leaves_the_log_to_the_checkpoint_thread() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, _reader) = writer(&dir);
        let before = database_file_len(&dir);
        // Past SQLite's own 1,000 pages: its `wal_autocheckpoint` would have copied this.
        answer(&writer, past_sqlites_own_autocheckpoint).expect("the rows are written");
        answer(&writer, insert(1, Ends::Well)).expect("the next write");
        assert_eq!(database_file_len(&dir), before, "the log was not copied");
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

    /// (transactions holding the lock, writes in them) so far, from the process's metrics.
    fn lock_and_group_counts() -> (u64, f64) {
        (
            histogram_totals("hookstream_store_write_lock_seconds", Some("holding")).0,
            histogram_totals("hookstream_store_write_group_size", None).1,
        )
    }

    #[test]
    fn each_transaction_is_counted_with_its_writes_and_its_time_on_the_lock() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (writer, _reader) = writer(&dir);
        let (holding_before, writes_before) = lock_and_group_counts();
        let answers = queue_as_one_group(&writer, [insert(1, Ends::Well), insert(2, Ends::Well)]);
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        // A transaction is recorded after its answers; the writer takes one group at a time, so
        // once the next write is answered, the group before it is recorded.
        answer(&writer, insert(3, Ends::Well)).expect("the next write");
        let (holding_after, writes_after) = lock_and_group_counts();
        // The held write's transaction and the group's; other tests of this binary may add theirs.
        assert!(
            holding_after >= holding_before + 2,
            "{holding_before} → {holding_after}"
        );
        assert!(
            writes_after >= writes_before + 3.0,
            "{writes_before} → {writes_after}"
        );
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
