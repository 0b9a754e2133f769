//! Processing: the enrich function reads the stream, normalises readings
//! with the registry, and queues one stats job per series on a FIFO queue;
//! jobs that keep failing go to its dead-letter queue. Positions of stream
//! batches that keep failing (enrich's or alarms') go to a failures queue.

use serde_json::json;
use stratosphere::services::aws::sqs;
use stratosphere::template::LogicalResourceName;
use stratosphere::value::ExpString;

use crate::functions::{Function, FunctionSpec, Platform, function};
use crate::iam;
use crate::lake::LakeBucket;
use crate::registry::Registry;
use crate::stack::{Stack, arn};
use crate::stream::{Consumer, Stream, consume, consumer_statements};

pub struct Processing {
    pub enrich: Function,
    pub jobs: LogicalResourceName,
    pub jobs_dead_letters: LogicalResourceName,
    pub stream_failures: LogicalResourceName,
}

/// A message's longest stay in a dead-letter queue: SQS's maximum, 14 days.
const DEAD_LETTER_RETENTION_SECS: i32 = 14 * 24 * 3600;

/// The stats function's timeout; SQS hides a received job six times as long,
/// as Lambda advises for its SQS mappings.
pub const STATS_TIMEOUT_SECS: i32 = 30;

/// The queue where stream mappings put the positions of batches that kept
/// failing (for replay from the stream within its retention).
pub fn stream_failures(stack: &mut Stack) -> LogicalResourceName {
    stack.resource(
        "StreamFailuresQueue",
        sqs::Queue! {
            queue_name: stack.name("stream-failures").as_str(),
            message_retention_period: DEAD_LETTER_RETENTION_SECS,
            sqs_managed_sse_enabled: true,
            tags: stack.tags(),
        },
    )
}

pub fn processing(
    stack: &mut Stack,
    platform: &Platform,
    stream: &Stream,
    bucket: &LakeBucket,
    registry: &Registry,
    stream_failures: LogicalResourceName,
) -> Processing {
    let max_receives = stack.parameter(
        "JobsMaxReceiveCount",
        json!({
            "Type": "Number",
            "Default": 5,
            "MinValue": 1,
            "MaxValue": 1000,
            "Description": "Deliveries of a stats job before it goes to the dead-letter queue",
        }),
    );
    // Enrich sends one stats job per series and batch, and each job costs
    // DynamoDB writes (three rollups, transactionally): how long a batch
    // gathers is the largest cost knob of the deployment (docs/aws.md).
    let batching = stack.parameter(
        "StatsBatchingSeconds",
        json!({
            "Type": "Number",
            "Default": 60,
            "MinValue": 0,
            "MaxValue": 300,
            "Description": "How long enrich gathers readings before sending stats jobs: dashboards lag by up to this, stats writes shrink with it (seconds)",
        }),
    );
    let jobs_dead_letters = stack.resource(
        "JobsDeadLetterQueue",
        sqs::Queue! {
            queue_name: format!("{}.fifo", stack.name("jobs-dlq")).as_str(),
            fifo_queue: true,
            message_retention_period: DEAD_LETTER_RETENTION_SECS,
            sqs_managed_sse_enabled: true,
            tags: stack.tags(),
        },
    );
    let jobs = stack.resource(
        "JobsQueue",
        sqs::Queue! {
            queue_name: format!("{}.fifo", stack.name("jobs")).as_str(),
            fifo_queue: true,
            // Each job carries its own deduplication id (`wenu-aws`'s SqsQueue).
            content_based_deduplication: false,
            visibility_timeout: (6 * STATS_TIMEOUT_SECS),
            sqs_managed_sse_enabled: true,
            redrive_policy: json!({
                "deadLetterTargetArn": crate::stack::value(&arn(&jobs_dead_letters)),
                "maxReceiveCount": 5,
            }),
            tags: stack.tags(),
        },
    );
    stack.set(&jobs, "/RedrivePolicy/maxReceiveCount", max_receives.value());

    let failures_arn = arn(&stream_failures);
    let mut statements = registry.read_statements();
    statements.extend(registry.keys_read_statements());
    statements.extend(consumer_statements(stream, &failures_arn));
    statements.push(iam::allow(&["sqs:SendMessage", "sqs:GetQueueAttributes"], &[arn(&jobs)]));
    statements.push(iam::allow(&["s3:PutObject"], &[bucket.objects("enrich-quarantine/*")]));
    let mut environment = registry.environment();
    environment.extend([
        ("WENU_JOBS_QUEUE_URL", ExpString::from(&jobs)),
        ("WENU_JOBS_DLQ_URL", ExpString::from(&jobs_dead_letters)),
        ("WENU_LAKE_BUCKET", ExpString::from(&bucket.logical)),
    ]);
    let enrich = function(
        stack,
        platform,
        FunctionSpec {
            id: "Enrich",
            binary: "wenu-enrich",
            description: "Normalises readings with the registry and queues one stats job per series",
            memory_mb: 512,
            timeout_secs: 300,
            in_vpc: true,
            environment,
            statements,
        },
    );
    let mapping = consume(
        stack,
        stream,
        &enrich,
        Consumer {
            id: "Enrich",
            // Kinesis' largest batch: a shard's minute fits while it takes
            // under 10,000 / 60 ≈ 170 records a second.
            batch_size: 10_000,
            batching_window_secs: 60,
            starting_position: "TRIM_HORIZON",
            maximum_retry_attempts: 10,
        },
        &failures_arn,
    );
    stack.set(&mapping, "/MaximumBatchingWindowInSeconds", batching.value());
    stack.output("JobsQueueUrl", "The stats jobs queue (FIFO)", ExpString::from(&jobs));
    stack.output(
        "JobsDeadLetterQueueUrl",
        "Stats jobs that kept failing",
        ExpString::from(&jobs_dead_letters),
    );
    Processing { enrich, jobs, jobs_dead_letters, stream_failures }
}
