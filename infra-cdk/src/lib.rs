//! Wenu's AWS deployment as code. [`synth`] builds the CloudFormation
//! template of one stage (environment) with the typed resources of the
//! `stratosphere` crate; `infra-cdk synth --stage dev` prints it.
//!
//! One module per part of the pipeline, wired in [`synth`] in the order
//! data flows:
//!
//! | module | what |
//! |---|---|
//! | [`network`] | the VPC the registry database and the functions that reach it live in |
//! | [`stream`] | the Kinesis stream (24 h of replay), and how functions consume it |
//! | [`edge`] | IoT Core: the device policy and the topic rule onto the stream |
//! | [`registry`] | RDS PostgreSQL, its credentials and the device keys in Secrets Manager |
//! | [`lake`] | the S3 bucket, Glue table (partition projection), Athena workgroup, Firehose with the decrypt function |
//! | [`alarms`] | the alarms function on the stream, its table and SNS topic |
//! | [`devices`] | the devices function: presence, reports and results from IoT Core; the downlink to devices |
//! | [`processing`] | the enrich function, the FIFO jobs queue and its dead-letter queue |
//! | [`stats`] | the stats function on the queue and the TTL'd stats table |
//! | [`api`] | the API function behind an HTTP API |
//! | [`monitoring`] | CloudWatch alarms to an operations topic |
//!
//! [`functions`], [`iam`], [`tables`] and [`stack`] are what those share.

pub mod alarms;
pub mod api;
pub mod devices;
pub mod edge;
pub mod functions;
pub mod iam;
pub mod lake;
pub mod monitoring;
pub mod network;
pub mod processing;
pub mod registry;
pub mod stack;
pub mod stage;
pub mod stats;
pub mod stream;
pub mod tables;

use serde_json::{Value, json};

pub use stage::Stage;

/// This crate's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stage name {0:?}: use 1-12 lower-case letters, digits or dashes, starting with a letter")]
    StageName(String),
}

/// The template of `stage`.
pub fn synth(stage: Stage) -> Value {
    let mut stack = stack::Stack::new(stage);
    let artifacts_bucket = stack.parameter(
        "ArtifactsBucket",
        json!({
            "Type": "String",
            "Description": "S3 bucket (same region) holding the function zips from `cargo lambda build`",
            "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        }),
    );
    let platform = functions::Platform { artifacts_bucket, network: network::network(&mut stack) };

    let stream = stream::stream(&mut stack);
    let bucket = lake::bucket(&mut stack);
    edge::edge(&mut stack, &stream, &bucket);
    let registry = registry::registry(&mut stack, &platform.network);
    let lake = lake::lake(&mut stack, &platform, &stream, &bucket, &registry);
    let stream_failures = processing::stream_failures(&mut stack);
    let alarms = alarms::alarms(&mut stack, &platform, &stream, &registry, &stream_failures);
    devices::devices(&mut stack, &platform, &registry);
    let processing =
        processing::processing(&mut stack, &platform, &stream, &bucket, &registry, stream_failures);
    let stats = stats::stats(&mut stack, &platform, &processing);
    let api = api::api(&mut stack, &platform, &registry, &stats, &alarms);
    registry::device_keys_key(&mut stack, &[&lake.decrypt, &processing.enrich, &alarms.function, &api], &api);

    let delivery_stream_name = stack.name("lake");
    monitoring::monitoring(
        &mut stack,
        monitoring::Watched {
            stream_name: (&stream.name),
            functions: vec![
                (&lake.decrypt, None),
                (&processing.enrich, Some(60_000.0)),
                (&alarms.function, Some(10_000.0)),
                (&stats.function, None),
                (&api, None),
            ],
            delivery_stream_name,
            dead_letter_queues: vec![&processing.jobs_dead_letters, &processing.stream_failures],
            database: (&registry.database),
        },
    );
    stack.render()
}
