//! WAL checkpoints off the commit path.
//!
//! In WAL mode SQLite copies the log back into the database file (a checkpoint) inside
//! whichever commit takes the log past `wal_autocheckpoint` pages: that commit, and every write
//! queued behind it in the group commit, waits for the copy and its two fsyncs (issue 20: a few
//! times a second in the dispatcher at 500 deliveries a second). Here a thread of each process
//! checkpoints every [`EVERY`] instead, in PASSIVE mode, which neither waits for nor blocks a
//! reader or a writer. The commit path keeps its checkpoint as a backstop, at
//! [`BACKSTOP_PAGES`], should this thread fall far behind.

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the thread checkpoints: the log stays small without a checkpoint per commit.
pub(super) const EVERY: Duration = Duration::from_millis(100);
/// The log size (pages of 4 KiB) at which a commit checkpoints itself: about 40 MiB, ten times
/// SQLite's default, reached only when the thread cannot keep up.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;

/// The checkpointing thread; it ends when this is dropped (with the last clone of the store).
pub(super) struct Checkpointer {
    _running: Sender<()>,
}

impl Checkpointer {
    /// Checkpoints on `conn` every `every`, telling `checked` what each one left behind.
    pub(super) fn start(
        conn: Connection,
        every: Duration,
        mut checked: impl FnMut(Result<u64, StoreError>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (running, stopped) = channel::<()>();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    checked(checkpoint(&conn));
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self { _running: running })
    }
}

/// One PASSIVE checkpoint; answers how many of the log's pages are still to be copied (those a
/// reader still needs, or written meanwhile). Fails when another process is checkpointing.
pub(super) fn checkpoint(conn: &Connection) -> Result<u64, StoreError> {
    let (log, copied): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })?;
    Ok(u64::try_from(log - copied).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database whose commits never checkpoint themselves, with `rows` rows written.
    fn logged_database(dir: &tempfile::TempDir, rows: i64) -> Connection {
        let conn = Connection::open(dir.path().join("store.db")).expect("the database opens");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL journaling");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no checkpoint on commit");
        conn.execute_batch("CREATE TABLE t (n INTEGER, pad TEXT)")
            .expect("a table");
        for n in 0..rows {
            conn.execute("INSERT INTO t VALUES (?1, zeroblob(2000))", [n])
                .expect("a row");
        }
        conn
    }

    fn database_file_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("store.db"))
            .expect("the database file")
            .len()
    }

    #[test]
    fn a_checkpoint_copies_the_whole_log_into_the_database_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let writer = logged_database(&dir, 200);
        let before = database_file_len(&dir);
        let other = Connection::open(dir.path().join("store.db")).expect("a second connection");

        assert_eq!(checkpoint(&other).expect("the checkpoint"), 0);

        assert!(
            database_file_len(&dir) > before + 200 * 2000,
            "the rows are in the database file now"
        );
        drop(writer);
    }

    #[test]
    fn the_thread_checkpoints_what_the_writer_logs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let writer = logged_database(&dir, 100);
        let before = database_file_len(&dir);
        let (results, checked) = channel();
        let conn = Connection::open(dir.path().join("store.db")).expect("a second connection");
        let checkpointer = Checkpointer::start(conn, Duration::from_millis(5), move |result| {
            let _ = results.send(result.map_err(|e| e.to_string()));
        })
        .expect("the thread starts");

        let left = checked
            .recv_timeout(Duration::from_secs(10))
            .expect("a checkpoint within 10 s");

        assert_eq!(left, Ok(0));
        assert!(database_file_len(&dir) > before + 100 * 2000);
        drop(checkpointer);
        // Once dropped the thread ends, and with it the sender of its results.
        while checked.recv_timeout(Duration::from_secs(10)).is_ok() {}
        assert_eq!(
            checked.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
        drop(writer);
    }
}
