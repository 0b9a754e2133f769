//! SQLite settings and error mapping shared by the embedded stores.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// One connection shared by all handles on a store; each call runs on a
/// blocking thread, so the async workers never wait on SQLite.
#[derive(Clone)]
pub(crate) struct SharedConnection(Arc<Mutex<Connection>>);

impl SharedConnection {
    pub(crate) fn new(conn: Connection) -> Self {
        SharedConnection(Arc::new(Mutex::new(conn)))
    }

    /// Runs `f`; a task that panicked or was cancelled becomes `task_failed(why)`.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        task_failed: fn(String) -> Error,
    ) -> Result<T, Error> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| task_failed(e.to_string()))?
    }
}

/// Connections that only read, taken in turn: in WAL mode each reads the
/// last committed state while the writer commits, so queries wait neither
/// for writes nor for each other.
#[derive(Clone)]
pub(crate) struct ReadConnections {
    connections: Arc<[SharedConnection]>,
    next: Arc<AtomicUsize>,
}

impl ReadConnections {
    /// One per core (two to four), on a database another connection has
    /// already opened in WAL mode.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let count = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4);
        let connections = (0..count)
            .map(|_| open_read_only(path).map(SharedConnection::new))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ReadConnections { connections: connections.into(), next: Arc::new(AtomicUsize::new(0)) })
    }

    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        task_failed: fn(String) -> Error,
    ) -> Result<T, Error> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[turn].run(f, task_failed).await
    }
}

pub(crate) use wenu_core::clock::now_ms;
