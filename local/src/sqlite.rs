//! SQLite settings and error mapping shared by the embedded stores.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use wenu_core::Error;

/// Opens a database in WAL mode with `synchronous = FULL`: a commit returns
/// only after the WAL is fsynced, so a committed transaction survives a power
/// cut, and readers never block the writer.
pub(crate) fn open_durable(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Opens a database for reading only; works while another process writes it.
pub(crate) fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Maps SQLite failures onto the port's error: a full disk, a busy database or
/// an I/O error may go away, so callers may retry; anything else won't.
pub(crate) fn stream_error(err: rusqlite::Error) -> Error {
    let (message, retryable) = classify(err);
    Error::Stream { message, retryable }
}

/// The message of a SQLite failure and whether it may go away.
pub(crate) fn classify(err: rusqlite::Error) -> (String, bool) {
    use rusqlite::ErrorCode::*;
    let retryable = matches!(
        err.sqlite_error_code(),
        Some(DiskFull | DatabaseBusy | DatabaseLocked | SystemIoFailure | OutOfMemory | CannotOpen)
    );
    (err.to_string(), retryable)
}
