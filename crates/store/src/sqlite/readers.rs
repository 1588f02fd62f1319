//! The read connections of one process.
//!
//! A read runs on Tokio's blocking pool, on a connection of its own, so a long one (a list)
//! holds one connection and no runtime thread. A point read (one small row by its key, as the
//! dispatcher reads every delivery's endpoint) runs on the calling thread instead, when a quick
//! connection is free: the hop to the blocking pool and back costs more than the read (issue
//! 20: about a fifth of the dispatcher's CPU). A quick connection has no busy handler, so a
//! locked database fails the read at once (SQLite's own short retries while it starts a WAL
//! read aside); a read that fails there, or finds no quick connection free, runs again the
//! patient way and the caller gets what a patient read gives (a wait for the lock, its own
//! error). `hookstream_store_slow_point_reads_total` counts those.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;
use crate::metered::count_slow_point_read;

/// Patient connections: a slow read (a long list) holds one, not every read (key checks,
/// intake).
pub(super) const PATIENT: usize = 4;

/// The read connections: patient ones for the blocking pool, quick ones for point reads on
/// the calling thread (one per runtime worker thread, 2 to 8, so they are seldom all taken).
pub(super) struct Readers {
    patient: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    quick: Vec<Mutex<Connection>>,
}

impl Readers {
    /// Opens the connections (blocking).
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let patient = (0..PATIENT)
            .map(|_| super::connect(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let threads = tokio::runtime::Handle::try_current().map_or_else(
            |_| std::thread::available_parallelism().map_or(2, |n| n.get()),
            |runtime| runtime.metrics().num_workers(),
        );
        let quick = (0..threads.clamp(2, 8))
            .map(|_| {
                let conn = super::connect(path)?;
                // No busy handler: a lock fails the read at once, and it goes the patient way.
                conn.busy_timeout(Duration::ZERO)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            patient,
            next: AtomicUsize::new(0),
            quick,
        })
    }

    /// A free patient connection, or else the next in turn once it is free.
    pub(super) fn take(&self) -> MutexGuard<'_, Connection> {
        for conn in &self.patient {
            if let Ok(conn) = conn.try_lock() {
                return conn;
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.patient.len();
        // Reads change nothing a panic could leave halfway, so a poisoned lock is safe to
        // keep using.
        self.patient[turn]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `work` on a free quick connection, on this thread; `None` (counted) when none is free
    /// or the read failed there.
    fn try_quick<T>(&self, work: &impl Fn(&Connection) -> Result<T, StoreError>) -> Option<T> {
        let Some(conn) = self.quick.iter().find_map(|conn| match conn.try_lock() {
            Ok(conn) => Some(conn),
            // Reads change nothing a panic could leave halfway.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }) else {
            count_slow_point_read("none_free");
            return None;
        };
        // A panic goes the patient way too, where the blocking pool makes it an error, as it
        // did for every read before.
        match catch_unwind(AssertUnwindSafe(|| work(&conn))) {
            Ok(Ok(found)) => Some(found),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "a quick point read failed; reading the patient way");
                count_slow_point_read("failed");
                None
            }
            Err(_) => {
                count_slow_point_read("failed");
                None
            }
        }
    }
}

/// Runs a read on the blocking pool, off the async runtime.
pub(super) async fn read<T: Send + 'static>(
    readers: &Arc<Readers>,
    work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let readers = Arc::clone(readers);
    tokio::task::spawn_blocking(move || work(&readers.take()))
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// Runs a point read on this thread when it can, else as [`read`] does. Only for reads of a
/// row or a few by their key: a long read here would hold a runtime thread.
pub(super) async fn point_read<T: Send + 'static>(
    readers: &Arc<Readers>,
    work: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match readers.try_quick(&work) {
        Some(found) => {
            // It never waited, so it spent none of the task's scheduling budget: a loop of
            // point reads (a replay plan's endpoints) still lets the thread's other tasks run.
            tokio::task::consume_budget().await;
            Ok(found)
        }
        None => read(readers, work).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_readers(dir: &tempfile::TempDir) -> (std::path::PathBuf, Arc<Readers>) {
        let path = dir.path().join("store.db");
        let conn = super::super::connect(&path).expect("the database opens");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL journaling");
        conn.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7);")
            .expect("a table");
        let readers = Readers::open(&path).expect("the readers open");
        (path, Arc::new(readers))
    }

    fn read_n(conn: &Connection) -> Result<i64, StoreError> {
        Ok(conn.query_row("SELECT n FROM t", [], |row| row.get(0))?)
    }

    /// What a point read read, and on which thread.
    async fn point_read_where(readers: &Arc<Readers>) -> (i64, std::thread::ThreadId) {
        point_read(readers, |conn| {
            Ok((read_n(conn)?, std::thread::current().id()))
        })
        .await
        .expect("the read")
    }

    /// Issue 19, item 8: one read connection meant a long list held every other read (key
    /// checks, intake) until it finished.
    #[test]
    fn a_read_in_progress_leaves_the_other_connections_free() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_, readers) = open_readers(&dir);
        let busy: Vec<MutexGuard<'_, Connection>> =
            (0..PATIENT - 1).map(|_| readers.take()).collect();
        let free = readers.take();
        for held in &busy {
            assert!(
                !std::ptr::eq(&**held, &*free),
                "a connection in use was handed out"
            );
        }
        drop((busy, free));
        assert_eq!(
            read_n(&readers.take()).expect("a read"),
            7,
            "reads go on once connections are free"
        );
    }

    /// Issue 20: a point read on a free quick connection takes no trip to the blocking pool.
    #[tokio::test]
    async fn a_point_read_runs_on_the_calling_thread() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_, readers) = open_readers(&dir);
        let (n, thread) = point_read_where(&readers).await;
        assert_eq!(n, 7);
        assert_eq!(
            thread,
            std::thread::current().id(),
            "the read went to another thread"
        );
    }

    /// With every quick connection taken, a point read still runs, the patient way.
    #[tokio::test]
    async fn a_point_read_goes_the_patient_way_when_no_quick_connection_is_free() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_, readers) = open_readers(&dir);
        let taken: Vec<MutexGuard<'_, Connection>> = readers
            .quick
            .iter()
            .map(|conn| conn.lock().expect("a quick connection"))
            .collect();
        let (n, thread) = point_read_where(&readers).await;
        assert_eq!(n, 7);
        assert_ne!(
            thread,
            std::thread::current().id(),
            "a taken quick connection was used"
        );
        drop(taken);
    }

    /// A read that panics on the calling thread is read again the patient way, and the quick
    /// connection it ran on serves the next read.
    #[tokio::test]
    async fn a_point_read_that_panics_on_the_calling_thread_goes_the_patient_way() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_, readers) = open_readers(&dir);
        let here = std::thread::current().id();
        let (n, thread) = point_read(&readers, move |conn| {
            let thread = std::thread::current().id();
            assert_ne!(thread, here, "a read that panics where it runs first");
            Ok((read_n(conn)?, thread))
        })
        .await
        .expect("the read, from the patient way");
        assert_eq!(n, 7);
        assert_ne!(thread, here);

        let (_, thread) = point_read_where(&readers).await;
        assert_eq!(
            thread, here,
            "the quick connection was given up after the panic"
        );
    }

    /// A database locked by another process fails a quick read at once; the point read waits
    /// for the lock the patient way and then reads, instead of failing or holding the thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_point_read_waits_out_a_lock_instead_of_failing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (path, readers) = open_readers(&dir);
        // Another process holding the database whole (exclusive locking mode keeps even
        // readers out, as a recovery would).
        let other = super::super::connect(&path).expect("a second connection");
        other
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE t SET n = 8;")
            .expect("the other connection locks the database");
        let tried = std::time::Instant::now();
        assert!(
            readers.try_quick(&read_n).is_none(),
            "a quick read got past the lock"
        );
        // Failed, not waited out (a patient connection waits up to 10 s).
        assert!(
            tried.elapsed() < Duration::from_secs(2),
            "the quick read waited {:?} for the lock",
            tried.elapsed()
        );

        let mut read = tokio::spawn({
            let readers = Arc::clone(&readers);
            async move { point_read(&readers, read_n).await }
        });
        let early = tokio::time::timeout(Duration::from_millis(300), &mut read).await;
        assert!(early.is_err(), "the read ended under the lock: {early:?}");
        other
            .execute_batch("COMMIT")
            .expect("the other connection commits");
        // Closing lets go of the exclusive lock.
        drop(other);
        let n = read.await.expect("the read task").expect("the read");
        assert_eq!(n, 8, "the read saw the committed value");
    }
}
