//! WAL checkpoints off the commit path.
//!
//! In WAL mode SQLite copies the log back into the database file (a checkpoint) inside
//! whichever commit takes the log past `wal_autocheckpoint` pages: that commit, and every write
//! queued behind it in the group commit, waits for the copy and its two fsyncs (issue 20: a few
//! times a second in the dispatcher at 500 deliveries a second). Here a thread of each process
//! checkpoints every [`EVERY`] instead, in PASSIVE mode, which neither waits for nor blocks a
//! reader or a writer.
//!
//! The log starts over from its head only when a commit begins with all of it copied and no
//! reader on it; with the readers of several processes nearly always open that seldom happens,
//! and the log grows (to 100 MB and more in a minute of the throughput bench). So once it is
//! past [`RESTART_PAGES`] and a PASSIVE round has copied all of it, the thread tries a RESTART
//! checkpoint: it takes the write lock without waiting for it, syncs the log and the database
//! file, and lets the next commit start the log over if no reader is on it then. That holds
//! every process's writes for two fsyncs, so a RESTART that a reader refused is not tried again
//! for a while ([`RestartBackoff`]). The writer keeps a checkpoint of its own after a commit as a
//! backstop, at [`BACKSTOP_PAGES`] (see `super::writer`).

use std::path::Path;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// How often the thread checkpoints: the log stays small without a checkpoint per commit.
pub(super) const EVERY: Duration = Duration::from_millis(100);
/// The log's size (pages of 4 KiB, 16 MiB) past which the thread tries to start it over.
pub(super) const RESTART_PAGES: u64 = 4_000;
/// The longest wait between two RESTART tries that readers refused.
const RESTART_BACKOFF_MAX: Duration = Duration::from_millis(1_600);
/// The log's size (pages, about 40 MiB) past which the writer checkpoints after a commit.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;
/// What the log file is cut back to when it starts over after growing past it.
pub(super) const LOG_FILE_LIMIT_BYTES: i64 = 16 * 1024 * 1024;

/// What a round of checkpointing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// SQLite could not take a lock it needed (another process checkpointing, or a writer
    /// caught halfway): nothing was learnt.
    Busy,
    /// The log's size in pages and how many of them a reader kept from being copied.
    Done {
        log_pages: u64,
        left: u64,
        restart: Restart,
    },
}

/// Whether the round tried to start the log over, and how that went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart {
    NotTried,
    /// The next commit starts the log over (unless a reader came back meanwhile).
    Done,
    /// A writer or a reader was in the way.
    Refused,
}

/// Connection settings for checkpointing: durable (the database file is synced before the log
/// is counted as copied) and never waiting for a lock.
pub(super) fn connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = super::connect(path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::ZERO)?;
    Ok(conn)
}

/// The checkpointing thread; it ends when this is dropped (with the last clone of the store).
pub(super) struct Checkpointer {
    _running: Sender<()>,
}

impl Checkpointer {
    /// Checkpoints on `conn` (from [`connection`]) every `every`, telling `checked` what each
    /// round found.
    pub(super) fn start(
        conn: Connection,
        every: Duration,
        mut checked: impl FnMut(Result<Checked, StoreError>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (running, stopped) = channel::<()>();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let mut backoff = RestartBackoff::new(every);
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let now = Instant::now();
                    let round = checkpoint_round(&conn, RESTART_PAGES, backoff.allows(now));
                    if let Ok(Checked::Done { restart, .. }) = &round {
                        backoff.after(*restart, now);
                    }
                    checked(round);
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self { _running: running })
    }
}

/// Spaces out RESTART tries that readers keep refusing: each refusal doubles the wait, up to
/// [`RESTART_BACKOFF_MAX`]; one that works resets it.
struct RestartBackoff {
    shortest: Duration,
    wait: Duration,
    not_before: Option<Instant>,
}

impl RestartBackoff {
    fn new(shortest: Duration) -> Self {
        Self {
            shortest,
            wait: shortest,
            not_before: None,
        }
    }

    fn allows(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| now >= at)
    }

    fn after(&mut self, restart: Restart, now: Instant) {
        match restart {
            Restart::NotTried => {}
            Restart::Done => {
                self.wait = self.shortest;
                self.not_before = None;
            }
            Restart::Refused => {
                self.not_before = Some(now + self.wait);
                self.wait = (self.wait * 2).min(RESTART_BACKOFF_MAX);
            }
        }
    }
}

/// A PASSIVE checkpoint, then a RESTART one when `may_restart`, the log has grown to
/// `restart_at` pages and the PASSIVE copied all of it (else the RESTART would copy the rest
/// while holding the write lock). `conn` comes from [`connection`]: neither waits for a lock.
pub(super) fn checkpoint_round(
    conn: &Connection,
    restart_at: u64,
    may_restart: bool,
) -> Result<Checked, StoreError> {
    let passive = checkpoint(conn, "PASSIVE")?;
    let Checked::Done {
        log_pages, left: 0, ..
    } = passive
    else {
        return Ok(passive);
    };
    if !may_restart || log_pages < restart_at {
        return Ok(passive);
    }
    Ok(match checkpoint(conn, "RESTART")? {
        // If it could not take the write lock, SQLite did a PASSIVE one instead.
        Checked::Busy => Checked::Done {
            log_pages,
            left: 0,
            restart: Restart::Refused,
        },
        Checked::Done { log_pages, .. } => Checked::Done {
            log_pages,
            left: 0,
            restart: Restart::Done,
        },
    })
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
        restart: Restart::NotTried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Connection {
        connection(&dir.path().join("store.db")).expect("the database opens")
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

        let checked = checkpoint_round(&open(&dir), u64::MAX, true).expect("the checkpoint");

        assert!(matches!(
            checked,
            Checked::Done { left: 0, restart: Restart::NotTried, log_pages } if log_pages > 100
        ));
        assert!(
            database_file_len(&dir) > before + 200 * 2000,
            "the rows are in the database file now"
        );
    }

    #[test]
    fn a_reader_on_the_log_keeps_it_from_starting_over_until_it_ends() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let writer = logged_database(&dir, 200);
        let checkpointing = open(&dir);
        let reader = open(&dir);
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .expect("a reader on the log");

        let refused = checkpoint_round(&checkpointing, 100, true).expect("the checkpoint");
        assert!(matches!(
            refused,
            Checked::Done {
                left: 0,
                restart: Restart::Refused,
                ..
            }
        ));
        reader.execute_batch("COMMIT").expect("the reader ends");
        let restarted = checkpoint_round(&checkpointing, 100, true).expect("the checkpoint");
        assert!(matches!(
            restarted,
            Checked::Done {
                left: 0,
                restart: Restart::Done,
                ..
            }
        ));
        write_rows(&writer, 1);

        let after = checkpoint_round(&checkpointing, u64::MAX, true).expect("the next checkpoint");
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
        let started = Instant::now();

        let checked = checkpoint_round(&open(&dir), 1, true).expect("the checkpoint");

        // The PASSIVE part copied what was committed; the RESTART part gave way to the writer,
        // at once (a connection that waited would wait up to its 10 s busy timeout).
        assert!(matches!(
            checked,
            Checked::Done {
                left: 0,
                restart: Restart::Refused,
                ..
            }
        ));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        other.execute_batch("COMMIT").expect("the writer goes on");
    }

    #[test]
    fn a_refused_restart_waits_longer_each_time_and_a_done_one_resets_the_wait() {
        let step = Duration::from_millis(100);
        let start = Instant::now();
        let mut backoff = RestartBackoff::new(step);
        assert!(backoff.allows(start));

        backoff.after(Restart::Refused, start);
        assert!(!backoff.allows(start + step / 2));
        assert!(backoff.allows(start + step));
        backoff.after(Restart::Refused, start + step);
        assert!(!backoff.allows(start + step * 2));
        assert!(backoff.allows(start + step * 3));
        for _ in 0..10 {
            backoff.after(Restart::Refused, start);
        }
        assert!(
            backoff.allows(start + RESTART_BACKOFF_MAX),
            "the wait is capped"
        );

        backoff.after(Restart::Done, start);
        assert!(backoff.allows(start));
        backoff.after(Restart::Refused, start);
        assert!(backoff.allows(start + step), "the wait starts short again");
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
        let deadline = Instant::now() + Duration::from_secs(10);
        let ended = loop {
            match checked.recv_timeout(Duration::from_secs(1)) {
                Err(RecvTimeoutError::Disconnected) => break true,
                _ if Instant::now() > deadline => break false,
                _ => {}
            }
        };
        assert!(ended, "the thread still ran 10 s after it was dropped");
    }
}
