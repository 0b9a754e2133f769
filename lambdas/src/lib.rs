//! Wenu's Lambda functions, as handlers that take and return AWS's own
//! event shapes and call the same stage logic the embedded pipeline runs.
//!
//! * [`firehose`]: the lake's Firehose transformation: decrypts each record
//!   into Parquet-ready JSON rows with the dynamic-partitioning keys
//!   `company`, `date` and `hour`, or marks it `Dropped` (a duplicate) or
//!   `ProcessingFailed` (undecryptable, unknown device, …);
//! * [`sqs`]: the stats function on the jobs queue, reporting partial batch
//!   failures.
//!
//! Each binary in `src/bin` is a few lines around one handler, its settings
//! read from the environment ([`settings`]); the handlers are tested in
//! process with event fixtures (`tests/`). Build them for Lambda with
//! `cargo lambda build --release --arm64 -p wenu-lambdas`.

pub mod firehose;
pub mod settings;
pub mod sqs;
