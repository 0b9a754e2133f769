//! Wenu's embedded backends: the ports of `wenu-core` implemented on one
//! machine with no server to run.
//!
//! * [`SqliteStream`]: the durable stream log, standing in for Kinesis.

mod sqlite;
mod stream;

pub use stream::{LogInspection, RetentionReport, SqliteStream, StreamOptions};
