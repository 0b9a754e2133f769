//! Wenu's embedded backends: the ports of `wenu-core` implemented on one
//! machine with no server to run.
//!
//! * [`SqliteStream`]: the durable stream log, standing in for Kinesis;
//! * [`ConsumerStore`]: consumers' checkpoints and stage state, the
//!   checkpoint port of `wenu-runtime`, whose consumers stand in for a
//!   Kinesis event source mapping or Firehose's buffering;
//! * [`SqliteQueue`]: the jobs queue, standing in for SQS;
//! * [`SqliteTable`]: the table store, standing in for DynamoDB;
//! * [`KeyringFile`]: the device keys, standing in for Secrets Manager.

mod consumer_store;
mod keyring_file;
mod queue;
mod sqlite;
mod stream;
mod table;

pub use consumer_store::ConsumerStore;
pub use keyring_file::{KeyringFile, LockedKeyring};
pub use queue::{QueueOptions, SqliteQueue};
pub use stream::{LogInspection, RetentionReport, SqliteStream, StreamOptions};
pub use table::SqliteTable;
