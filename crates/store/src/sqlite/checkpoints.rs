//! WAL checkpoints off the commit path.
//!
//! In WAL mode SQLite copies the log back into the database file (a checkpoint) inside
//! whichever commit takes the log past `wal_autocheckpoint` pages: that commit, and every write
//! queued behind it in the group commit, waits for the copy and its two fsyncs (issue 20: a few
//! times a second in the dispatcher at 500 deliveries a second). Here a thread of each process
//! checkpoints every [`EVERY`] instead, in PASSIVE mode, which neither waits for nor blocks a
//! reader or a writer.
//!
//! A PASSIVE checkpoint copies the log as it was when it began; under steady writes (several
//! processes commit meanwhile) it seldom finishes the whole log, and a log starts over from its
//! head only once it is finished, so it would keep growing. Past [`RESTART_PAGES`] the thread
//! also tries a RESTART checkpoint: it takes the write lock, without waiting for it, for the few
//! pages written since, so the next commit starts the log over. The commits keep their own
//! checkpoint as a backstop, at [`BACKSTOP_PAGES`], should neither work.

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the thread checkpoints: the log stays small without a checkpoint per commit.
pub(super) const EVERY: Duration = Duration::from_millis(100);
/// The log's size (pages of 4 KiB, 16 MiB) past which the thread starts it over.
pub(super) const RESTART_PAGES: u64 = 4_000;
/// The log's size (pages, about 40 MiB) at which a commit checkpoints itself.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;
/// What the log file is cut back to when it starts over after growing past it.
pub(super) const LOG_FILE_LIMIT_BYTES: i64 = 16 * 1024 * 1024;

/// What a round of checkpointing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// Another connection (another process) was checkpointing: nothing was done or learnt.
    Busy,
    /// The log's size in pages and how many of them are still to be copied (a reader still on
    /// them, or written meanwhile); `restarted` when the next commit starts the log over.
    Done {
        log_pages: u64,
        left: u64,
        restarted: bool,
    },
}

/// The checkpointing thread; it ends when this is dropped (with the last clone of the store).
pub(super) struct Checkpointer {
    _running: Sender<()>,
}

impl Checkpointer {
    /// Checkpoints on `conn` every `every`, telling `checked` what each round found.
    pub(super) fn start(
        conn: Connection,
        every: Duration,
        mut checked: impl FnMut(Result<Checked, StoreError>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (running, stopped) = channel::<()>();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    checked(checkpoint_round(&conn, RESTART_PAGES));
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self { _running: running })
    }
}

/// A PASSIVE checkpoint, then a RESTART one when the log has grown past `restart_at` pages.
/// `conn` must have no busy handler, so that neither ever waits for a lock.
pub(super) fn checkpoint_round(conn: &Connection, restart_at: u64) -> Result<Checked, StoreError> {
    let passive = checkpoint(conn, "PASSIVE")?;
    match passive {
        Checked::Done { log_pages, .. } if log_pages >= restart_at => {
            match checkpoint(conn, "RESTART")? {
                // A writer or a reader was in the way: the next round tries again.
                Checked::Busy => Ok(passive),
                Checked::Done { log_pages, .. } => Ok(Checked::Done {
                    log_pages,
                    left: 0,
                    restarted: true,
                }),
            }
        }
        other => Ok(other),
    }
}

/// One checkpoint in `mode`. SQLite answers a lock it could not take (another checkpointer; for
/// RESTART a writer or a reader) with a row saying busy, not with an error.
fn checkpoint(conn: &Connection, mode: &str) -> Result<Checked, StoreError> {
    let (busy, log, copied): (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if busy != 0 {
        return Ok(Checked::Busy);
    }
    Ok(Checked::Done {
        log_pages: u64::try_from(log).unwrap_or(0),
        left: u64::try_from(log - copied).unwrap_or(0),
        restarted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("store.db")).expect("the database opens");
        conn.busy_timeout(Duration::ZERO).expect("no busy handler");
        conn
    }

    /// A WAL database whose commits never checkpoint themselves, with `rows` rows written.
    fn logged_database(dir: &tempfile::TempDir, rows: i64) -> Connection {
        let conn = open(dir);
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL journaling");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no checkpoint on commit");
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (n INTEGER, pad BLOB)")
            .expect("a table");
        write_rows(&conn, rows);
        conn
    }

    fn write_rows(conn: &Connection, rows: i64) {
        for n in 0..rows {
            conn.execute("INSERT INTO t VALUES (?1, zeroblob(2000))", [n])
                .expect("a row");
        }
    }

    fn database_file_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("store.db"))
            .expect("the database file")
            .len()
    }

    fn log_pages(checked: Checked) -> u64 {
        match checked {
            Checked::Done { log_pages, .. } => log_pages,
            Checked::Busy => panic!("no other checkpointer here"),
        }
    }

    #[test]
    fn a_checkpoint_copies_the_whole_log_into_the_database_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let _writer = logged_database(&dir, 200);
        let before = database_file_len(&dir);

        let checked = checkpoint_round(&open(&dir), u64::MAX).expect("the checkpoint");

        assert!(matches!(
            checked,
            Checked::Done { left: 0, restarted: false, log_pages } if log_pages > 100
        ));
        assert!(
            database_file_len(&dir) > before + 200 * 2000,
            "the rows are in the database file now"
        );
    }

    #[test]
    fn past_its_size_limit_the_log_starts_over_at_the_next_commit() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let writer = logged_database(&dir, 200);
        let checkpointing = open(&dir);

        let checked = checkpoint_round(&checkpointing, 100).expect("the checkpoint");
        assert!(matches!(
            checked,
            Checked::Done {
                left: 0,
                restarted: true,
                ..
            }
        ));
        write_rows(&writer, 1);

        let after = checkpoint_round(&checkpointing, u64::MAX).expect("the next checkpoint");
        assert!(
            log_pages(after) < 10,
            "the commit wrote at the log's head: {after:?}"
        );
    }

    #[test]
    fn a_round_never_waits_for_a_writer() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let _writer = logged_database(&dir, 200);
        let other = open(&dir);
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (-1, NULL);")
            .expect("another connection holds the write lock");

        let checked = checkpoint_round(&open(&dir), 1).expect("the checkpoint");

        // The PASSIVE part copied what was committed; the RESTART part gave way to the writer.
        assert!(matches!(
            checked,
            Checked::Done {
                left: 0,
                restarted: false,
                ..
            }
        ));
        other.execute_batch("COMMIT").expect("the writer goes on");
    }

    #[test]
    fn the_thread_checkpoints_what_the_writer_logs_and_ends_when_dropped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let _writer = logged_database(&dir, 100);
        let before = database_file_len(&dir);
        let (results, checked) = channel();
        let checkpointer = Checkpointer::start(open(&dir), Duration::from_millis(5), move |r| {
            let _ = results.send(r.map_err(|e| e.to_string()));
        })
        .expect("the thread starts");

        let first = checked
            .recv_timeout(Duration::from_secs(10))
            .expect("a checkpoint within 10 s");

        assert!(
            matches!(first, Ok(Checked::Done { left: 0, .. })),
            "{first:?}"
        );
        assert!(database_file_len(&dir) > before + 100 * 2000);
        drop(checkpointer);
        // Once dropped the thread ends, and with it the sender of its results.
        while checked.recv_timeout(Duration::from_secs(10)).is_ok() {}
        assert_eq!(
            checked.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
