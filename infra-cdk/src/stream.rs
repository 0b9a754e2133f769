//! The stream every reading goes through: one Kinesis stream, its records
//! kept for replay (24 h by default), encrypted at rest. Firehose, the
//! enrich function and the alarms function each read it on their own.

use serde_json::json;
use stratosphere::services::aws::kinesis;
use stratosphere::template::LogicalResourceName;

use crate::stack::{Stack, arn};
use stratosphere::value::ExpString;

pub struct Stream {
    pub logical: LogicalResourceName,
    pub name: String,
}

impl Stream {
    pub fn arn(&self) -> ExpString {
        arn(&self.logical)
    }
}

pub fn stream(stack: &mut Stack) -> Stream {
    let retention = stack.parameter(
        "StreamRetentionHours",
        json!({
            "Type": "Number",
            "Default": 24,
            "MinValue": 24,
            "MaxValue": 8760,
            "Description": "How long the stream keeps readings for replay (hours)",
        }),
    );
    let shards = stack.parameter(
        "StreamShards",
        json!({
            "Type": "Number",
            "Default": if stack.stage.is_production() { 2 } else { 1 },
            "MinValue": 1,
            "MaxValue": 500,
            "Description": "Kinesis shards: each takes 1 MB/s or 1,000 records/s in (about 1,000 devices at one batch a second)",
        }),
    );
    let name = stack.name("readings");
    let logical = stack.resource(
        "ReadingsStream",
        kinesis::Stream! {
            name: name.as_str(),
            retention_period_hours: 24,
            shard_count: 1,
            stream_mode_details: kinesis::stream::StreamModeDetails! { stream_mode: "PROVISIONED" },
            stream_encryption: kinesis::stream::StreamEncryption! { encryption_type: "KMS", key_id: "alias/aws/kinesis" },
            tags: stack.tags(),
        },
    );
    stack.set(&logical, "/RetentionPeriodHours", retention.value());
    stack.set(&logical, "/ShardCount", shards.value());
    stack.output("StreamName", "The Kinesis stream of readings", (&logical).into());
    Stream { logical, name }
}

/// How a function reads the stream through its own event source mapping.
pub struct Consumer<'a> {
    pub id: &'a str,
    pub batch_size: i32,
    /// How long Lambda gathers a batch (0: every poll goes straight in).
    pub batching_window_secs: i32,
    pub starting_position: &'a str,
    /// Retries of a failing batch (halved each time, to the failing record)
    /// before its position goes to the failures queue.
    pub maximum_retry_attempts: i32,
}

/// The statements a function needs to be fed by the stream, with failed
/// batches' positions sent to `failures`.
pub fn consumer_statements(stream: &Stream, failures: &ExpString) -> Vec<serde_json::Value> {
    vec![
        crate::iam::allow(
            &[
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ],
            &[stream.arn()],
        ),
        crate::iam::allow(&["sqs:SendMessage"], std::slice::from_ref(failures)),
    ]
}

/// The event source mapping of `function` on the stream: the function
/// answers which records failed (`ReportBatchItemFailures`), a failing
/// batch is split to find the bad record, and after the retries its
/// position (not its data: that stays on the stream) goes to `failures`.
pub fn consume(
    stack: &mut Stack,
    stream: &Stream,
    function: &crate::functions::Function,
    consumer: Consumer,
    failures: &ExpString,
) -> LogicalResourceName {
    use stratosphere::services::aws::lambda;
    let mapping = stack.resource(
        &format!("{}StreamMapping", consumer.id),
        lambda::EventSourceMapping! {
            event_source_arn: stream.arn(),
            function_name: function.arn(),
            batch_size: consumer.batch_size,
            maximum_batching_window_in_seconds: consumer.batching_window_secs,
            starting_position: consumer.starting_position,
            function_response_types: vec!["ReportBatchItemFailures".into()],
            bisect_batch_on_function_error: true,
            maximum_retry_attempts: consumer.maximum_retry_attempts,
            parallelization_factor: 1,
            destination_config: lambda::eventsourcemapping::DestinationConfig! {
                on_failure: Box::new(lambda::eventsourcemapping::OnFailure! { destination: failures.clone() }),
            },
        },
    );
    // The mapping checks the function's role when it is created.
    stack.depends_on(&mapping, &function.role);
    mapping
}
