//! Wenu's Lambda functions, as handlers that take and return AWS's own
//! event shapes and call the same stage logic the embedded pipeline runs.
//!
//! * [`firehose`]: the lake's Firehose transformation: decrypts each record
//!   into Parquet-ready JSON rows with the dynamic-partitioning keys
//!   `company`, `date` and `hour`, or marks it `Dropped` (a duplicate) or
//!   `ProcessingFailed` (undecryptable, unknown device, …);
//! * [`kinesis`]: a stage on the stream as the event source mapping calls
//!   it, reporting the record to retry from; enrich runs this way, and
//!   [`alarms`] adds the delivery of the notifications a batch raised;
//! * [`sqs`]: the stats function on the jobs queue, reporting partial batch
//!   failures;
//! * [`devices`]: presence, reports and command results from IoT Core, and
//!   the downlink to devices through its data plane;
//! * the API (`src/bin/wenu-api.rs`): the same axum router as on one
//!   machine, behind API Gateway through `lambda_http`.
//!
//! [`event_sources`] plays AWS's part (event source mappings, Firehose)
//! where the functions run outside Lambda: `wenu serve --backend aws`.
//!
//! Each binary in `src/bin` is a few lines around one handler, its settings
//! read from the environment ([`settings`]); the handlers are tested in
//! process with event fixtures (`tests/`). Build them for Lambda with
//! `cargo lambda build --release --arm64 -p wenu-lambdas`.

pub mod alarms;
pub mod devices;
pub mod event_sources;
pub mod firehose;
pub mod kinesis;
pub mod settings;
pub mod sqs;
