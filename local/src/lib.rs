//! Wenu's embedded backends: the ports of `wenu-core` implemented on one
//! machine with no server to run.
//!
//! * [`SqliteStream`]: the durable stream log, standing in for Kinesis;
//! * [`consumer`]: the runtime that feeds a stage from a named checkpoint, in
//!   batches closed by size or time ([`batcher`]), standing in for a Kinesis
//!   event source mapping or Firehose's buffering;
//! * [`ConsumerStore`]: consumers' checkpoints and stage state;
//! * [`SqliteQueue`]: the jobs queue, standing in for SQS;
//! * [`SqliteTable`]: the table store, standing in for DynamoDB.

pub mod batcher;
pub mod consumer;
mod consumer_store;
mod queue;
mod sqlite;
mod stream;
mod table;

pub use batcher::{BatchLimits, Batcher};
pub use consumer::{Consumer, ConsumerOptions, Stage};
pub use consumer_store::{ConsumerStore, SavedConsumer};
pub use queue::{QueueOptions, SqliteQueue};
pub use stream::{LogInspection, RetentionReport, SqliteStream, StreamOptions};
pub use table::SqliteTable;
