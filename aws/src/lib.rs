//! Wenu's AWS backends: the ports of `wenu-core` on AWS services, for the
//! deployment that outgrows one machine.
//!
//! * [`KinesisStream`]: the stream on Kinesis Data Streams, with consumers'
//!   checkpoints in a table store (DynamoDB), as the KCL keeps them;
//! * [`s3_store`]: the lake's object store on S3 (the `object_store`
//!   crate's backend, configured from aws-config);
//! * [`SecretsKeyring`]: device keys in Secrets Manager, cached and
//!   refreshed when a secret changes;
//! * [`SnsNotifier`]: alarm notifications on an SNS topic;
//! * [`SqsQueue`]: the jobs queue on an SQS FIFO queue with a dead-letter
//!   queue;
//! * [`IotDevices`]: devices registered with AWS IoT Core (thing,
//!   certificate, the device policy), and [`IotDataPublisher`]: the
//!   downlink to them through IoT Core's data plane;
//! * [`DynamoTable`]: the table store (stats rollups, alarm state) on
//!   DynamoDB with its TTL attribute.
//!
//! Every client is built from [`config::load`], aws-config's standard chain,
//! so `AWS_ENDPOINT_URL` points them all at an emulator. Failures map onto
//! the ports' own error kinds, retryable or not ([`error`]); the entries of
//! a batch call that AWS fails one by one are retried here with backoff
//! ([`retry`]). The same conformance suites run against these adapters (on
//! moto) and the embedded ones (`wenu-tests`).

pub mod config;
mod dynamodb;
pub mod error;
mod iot;
mod iot_data;
mod kinesis;
pub mod retry;
mod s3;
mod secrets;
mod sns;
mod sqs;

pub use dynamodb::{DynamoTable, TTL_ATTRIBUTE};
pub use iot::{DEVICE_POLICY, DeviceCertificate, IotDevices, device_policy_document};
pub use iot_data::IotDataPublisher;
pub use kinesis::KinesisStream;
pub use s3::s3_store;
pub use secrets::SecretsKeyring;
pub use sns::SnsNotifier;
pub use sqs::SqsQueue;
