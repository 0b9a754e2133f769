//! The DynamoDB tables of the stats and the alarms, in the shape
//! `wenu-aws`'s `DynamoTable` reads and writes: partition key `pk`
//! (string), sort key `sk` (number), and items expiring at `expires_at`
//! (DynamoDB's TTL), billed per request.

use stratosphere::services::aws::dynamodb;
use stratosphere::template::LogicalResourceName;

use crate::iam;
use crate::stack::{Stack, arn};

/// The attribute DynamoDB's TTL deletes expired items by.
pub const TTL_ATTRIBUTE: &str = "expires_at";

pub fn ttl_table(stack: &mut Stack, logical: &str, part: &str) -> LogicalResourceName {
    let production = stack.stage.is_production();
    let key = |name: &str, kind: &str| dynamodb::table::KeySchema! { attribute_name: name, key_type: kind };
    let attribute = |name: &str, kind: &str| dynamodb::table::AttributeDefinition! { attribute_name: name, attribute_type: kind };
    let table = stack.resource(
        logical,
        dynamodb::Table! {
            table_name: stack.name(part).as_str(),
            billing_mode: "PAY_PER_REQUEST",
            attribute_definitions: vec![attribute("pk", "S"), attribute("sk", "N")],
            key_schema: vec![key("pk", "HASH"), key("sk", "RANGE")],
            time_to_live_specification: dynamodb::table::TimeToLiveSpecification! {
                attribute_name: TTL_ATTRIBUTE,
                enabled: true,
            },
            sse_specification: dynamodb::table::SSESpecification! { sse_enabled: true },
            point_in_time_recovery_specification: dynamodb::table::PointInTimeRecoverySpecification! {
                point_in_time_recovery_enabled: production,
            },
            deletion_protection_enabled: production,
            tags: stack.tags(),
        },
    );
    stack.keep_on_delete(&table, "Retain");
    table
}

/// Reading a table (the API).
pub fn read(table: &LogicalResourceName) -> serde_json::Value {
    iam::allow(&["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"], &[arn(table)])
}

/// Reading and writing a table, conditionally and in transactions.
pub fn read_write(table: &LogicalResourceName) -> serde_json::Value {
    iam::allow(
        &[
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DescribeTable",
        ],
        &[arn(table)],
    )
}
