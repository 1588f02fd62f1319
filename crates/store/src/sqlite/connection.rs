//! Connections to the database file: their settings, the busy handler, and the report of the
//! checkpoint rounds.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::checkpoints::{self, Checked};
use crate::StoreError;

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a write waiting for that lock tries again. SQLite's own busy timeout backs off to
/// 100 ms between tries, so a waiting process sleeps through the short gaps between another
/// process's commits and can lose the lock to it for long stretches (issue 20: ingest's writes
/// waited behind the dispatcher's).
const BUSY_RETRY: Duration = Duration::from_micros(500);

/// How much of a savepoint's journal SQLite keeps in memory before moving it to a temporary
/// file. A savepoint (each write of a group commit runs in one) copies every page it changes
/// there first; at SQLite's default of 64 KiB a batch of events went to a file, and ingest wrote
/// as many pages to those files as to the log (issue 20). Past this bound (a purge of large
/// replay batches, say) the journal still goes to a file, so memory stays bounded.
const SAVEPOINT_JOURNAL_IN_MEMORY_BYTES: i32 = 16 << 20;

/// Raises [`SAVEPOINT_JOURNAL_IN_MEMORY_BYTES`] for the process. SQLite takes this setting only
/// before its first connection, so every connection of ours is opened after it (see
/// [`connect`]); should SQLite have been used before, journals past 64 KiB go to temporary
/// files as before (slower, nothing else changes).
pub(super) fn keep_savepoint_journals_in_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` with `SQLITE_CONFIG_STMTJRNL_SPILL` takes one `int`, and must
        // not run while another thread uses SQLite: every connection of this crate is opened
        // through `connect`, which waits for this `Once`, and the services open no other. (A
        // test program that also opens connections of its own could overlap this call; all it
        // does is check SQLite's initialised flag and store one `int` that SQLite reads only
        // when it opens a journal.) Once SQLite is initialised the call answers SQLITE_MISUSE.
        let code = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL,
                SAVEPOINT_JOURNAL_IN_MEMORY_BYTES,
            )
        };
        if code != rusqlite::ffi::SQLITE_OK {
            tracing::info!(
                code,
                "SQLite was set up before the store opened: savepoint journals past 64 KiB go to temporary files"
            );
        }
    });
}

/// Opens a connection to the database file with the settings every connection needs.
pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    keep_savepoint_journals_in_memory();
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(retry_while_busy))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Keeps the log's metrics up to date from the checkpoint rounds, and warns when checkpoints
/// start failing (once, not every round): the writer then checkpoints after its commits past
/// [`checkpoints::BACKSTOP_PAGES`].
pub(super) fn checkpoint_reporter() -> impl FnMut(Result<Checked, StoreError>) + Send + 'static {
    let mut failing = false;
    move |checked| match checked {
        Ok(Checked::Done {
            log_pages, left, ..
        }) => {
            failing = false;
            crate::metered::set_wal_pages(log_pages, left);
        }
        Ok(Checked::Busy) => {}
        Err(err) => {
            if !failing {
                tracing::warn!(
                    error = %err,
                    backstop_pages = checkpoints::BACKSTOP_PAGES,
                    "WAL checkpoints fail; the writer checkpoints after its commits once the log is past the backstop"
                );
            }
            failing = true;
        }
    }
}

/// SQLite's busy handler: waits [`BUSY_RETRY`] and tries again, `retries` times so far, for up
/// to [`BUSY_TIMEOUT`] in all (at least: a sleep can run long).
pub(super) fn retry_while_busy(retries: i32) -> bool {
    let most = BUSY_TIMEOUT.as_micros() / BUSY_RETRY.as_micros();
    if u128::try_from(retries).unwrap_or(0) >= most {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_handler_gives_up_after_the_timeout() {
        let most = (BUSY_TIMEOUT.as_micros() / BUSY_RETRY.as_micros()) as i32;
        assert!(retry_while_busy(0), "the first wait retries");
        assert!(
            retry_while_busy(most - 1),
            "the last wait within the timeout retries"
        );
        assert!(!retry_while_busy(most), "past the timeout the write fails");
    }
}
