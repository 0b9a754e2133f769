//! AWS's glue between services, for running the functions outside Lambda
//! (`wenu serve --backend aws`, on ECS or EC2, and the end-to-end tests on
//! an emulator that has no Lambda or Firehose): the same handlers are called
//! with the same event shapes, and their answers acted on as AWS acts on
//! them.
//!
//! * [`kinesis`]: an event source mapping on the stream: batches of one
//!   shard, checkpoint past each batch answered without failures, retry
//!   from the first failed record;
//! * [`firehose`]: a delivery stream: records of every shard buffered by
//!   size or time, transformed, the `Ok` rows written as Parquet under their
//!   partition keys (what Firehose's format conversion and dynamic
//!   partitioning do), the `ProcessingFailed` ones under `processing-failed/`;
//! * [`sqs`]: an event source mapping on a queue: the messages the function
//!   does not report failed are deleted, the others come back after their
//!   visibility timeout.
//!
//! They read the stream and the queue through the ports, so they run on
//! the embedded log and queue as well.

pub mod firehose;
pub mod kinesis;
mod shards;
pub mod sqs;

pub use shards::ShardReader;
