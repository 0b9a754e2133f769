//! Alarms: a function with its own mapping on the stream (nothing else on
//! the stream delays it) and a one-minute schedule (for silent devices),
//! alarm state and history in a DynamoDB table, notifications to an SNS
//! topic that operators' channels subscribe to.

use serde_json::json;
use stratosphere::services::aws::sns;
use stratosphere::template::LogicalResourceName;
use stratosphere::value::{ExpBool, ExpString, equals_string};

use crate::functions::{Function, FunctionSpec, Platform, every_minute, function};
use crate::iam;
use crate::registry::Registry;
use crate::stack::{Stack, arn};
use crate::stream::{Consumer, Stream, consume, consumer_statements};
use crate::tables;

pub struct Alarms {
    pub function: Function,
    pub table: LogicalResourceName,
    pub topic: LogicalResourceName,
}

pub fn alarms(
    stack: &mut Stack,
    platform: &Platform,
    stream: &Stream,
    registry: &Registry,
    stream_failures: &LogicalResourceName,
) -> Alarms {
    let table = tables::ttl_table(stack, "AlarmsTable", "alarms");
    let topic = stack.resource(
        "AlarmsTopic",
        sns::Topic! {
            topic_name: stack.name("alarms").as_str(),
            display_name: "Wenu alarms",
            kms_master_key_id: "alias/aws/sns",
            tags: stack.tags(),
        },
    );
    // The operator's own copy of every alarm notification by e-mail (SNS
    // asks the address to confirm first). Companies' own e-mail channels go
    // through an SMTP relay (`WENU_SMTP_URL`), which the template does not set.
    let email = stack.parameter(
        "AlarmsEmail",
        json!({
            "Type": "String",
            "Default": "",
            "Description": "E-mail address subscribed to every alarm notification (empty: none)",
        }),
    );
    let has_email = stack.condition("HasAlarmsEmail", ExpBool::Not(Box::new(equals_string(email.exp(), ""))));
    stack.conditional_resource(
        "AlarmsEmailSubscription",
        &has_email,
        sns::Subscription! { topic_arn: (&topic), protocol: "email", endpoint: email.exp() },
    );
    let failures = arn(stream_failures);
    let mut statements = registry.read_statements();
    statements.extend(registry.keys_read_statements());
    statements.extend(consumer_statements(stream, &failures));
    statements.push(tables::read_write(&table));
    statements.push(iam::allow(&["sns:Publish"], &[ExpString::from(&topic)]));
    let mut environment = registry.environment();
    environment.extend([
        ("WENU_ALARMS_TABLE", ExpString::from(&table)),
        ("WENU_ALARMS_TOPIC_ARN", ExpString::from(&topic)),
    ]);
    let function = function(
        stack,
        platform,
        FunctionSpec {
            id: "Alarms",
            binary: "wenu-alarms",
            description: "Runs the alarm rules on every reading and notifies operators",
            memory_mb: 512,
            timeout_secs: 60,
            in_vpc: true,
            environment,
            statements,
        },
    );
    consume(
        stack,
        stream,
        &function,
        Consumer {
            id: "Alarms",
            batch_size: 100,
            batching_window_secs: 0,
            starting_position: "LATEST",
            maximum_retry_attempts: 5,
        },
        &failures,
    );
    // A device that goes silent must raise its alarm even when no batch
    // comes to invoke the function: a schedule invokes it every minute.
    every_minute(
        stack,
        "AlarmsTimers",
        "alarms-timers",
        "Invokes the alarms function every minute for the missing-data timers",
        &function,
    );
    stack.output(
        "AlarmsTopicArn",
        "Subscribe operators' channels to this SNS topic",
        ExpString::from(&topic),
    );
    Alarms { function, table, topic }
}
