//! Stats: the stats function folds each job from the queue into rollups in
//! a DynamoDB table whose items expire (TTL), reporting the jobs it could
//! not fold so that only they come back.

use stratosphere::services::aws::lambda;
use stratosphere::template::LogicalResourceName;
use stratosphere::value::ExpString;

use crate::functions::{Function, FunctionSpec, Platform, function};
use crate::iam;
use crate::processing::{Processing, STATS_TIMEOUT_SECS};
use crate::stack::{Stack, arn};
use crate::tables;

pub struct Stats {
    pub function: Function,
    pub table: LogicalResourceName,
}

pub fn stats(stack: &mut Stack, platform: &Platform, processing: &Processing) -> Stats {
    let table = tables::ttl_table(stack, "StatsTable", "stats");
    let function = function(
        stack,
        platform,
        FunctionSpec {
            id: "Stats",
            binary: "wenu-stats",
            description: "Folds stats jobs into the rollups of the stats table",
            memory_mb: 256,
            timeout_secs: STATS_TIMEOUT_SECS,
            in_vpc: false,
            environment: vec![("WENU_STATS_TABLE", ExpString::from(&table))],
            statements: vec![
                iam::allow(
                    &[
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    &[arn(&processing.jobs)],
                ),
                tables::read_write(&table),
            ],
        },
    );
    let mapping = stack.resource(
        "StatsQueueMapping",
        lambda::EventSourceMapping! {
            event_source_arn: arn(&processing.jobs),
            function_name: function.arn(),
            // A FIFO queue gives at most 10 messages per batch.
            batch_size: 10,
            function_response_types: vec!["ReportBatchItemFailures".into()],
        },
    );
    stack.depends_on(&mapping, &function.role);
    stack.output("StatsTableName", "The DynamoDB table of the stats rollups", ExpString::from(&table));
    Stats { function, table }
}
